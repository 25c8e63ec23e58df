"""Differential test against dcap-qvl (Phala's Rust verifier, PyPI ``dcap-qvl``).

Thousands of seeded mutations of the real ``dcap-qvl`` sample (single-bit flips across the quote
and every collateral field, truncations, appended bytes, fields swapped in from the TDX bundle)
plus minted scenarios (``verify_with_root_ca``) must get the same accept/reject from both
verifiers, and confnode must never raise anything but its own errors. Accept means: a result
whose status is not ``Revoked`` (the CLI's exit 0).

Every disagreement must fall under one of the NAMED_DIFFERENCES, each documented in
docs/adr/0002-verifier-semantics.md, and each must actually occur (so the list cannot rot).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest
from verify_testpki import LOW_SVNS, NOW, PCK_PCESVN, PCK_SVNS, Scenario, tcb_level

from confnode.cli._vectors import VectorSet
from confnode.collateral import Collateral, TcbStatus
from confnode.errors import ConfnodeError
from confnode.verify import verify_quote

dcap_qvl = pytest.importorskip("dcap_qvl")

#: name -> (confnode accepts?, dcap-qvl accepts?) for the cases tagged with that name.
NAMED_DIFFERENCES: dict[str, tuple[bool, bool]] = {
    # QvE validates the root certificate presented in a chain (self-signed, CN, pinned key);
    # dcap-qvl builds the path to its built-in anchor and never reads the presented root, nor
    # the PEM framing around it.
    "presented-root-checked": (False, True),
    # The quote codec requires type-5 data to be PEM CERTIFICATE blocks separated only by
    # whitespace (then NULs); dcap-qvl's PEM reader skips any text between blocks.
    "pem-framing-strict": (False, True),
    # QvE verifies the PCK CRL issuer chain; dcap-qvl ignores that collateral field.
    "pck-crl-issuer-chain-checked": (False, True),
    # Intel reports DEBUG enclaves and leaves them to policy; dcap-qvl rejects them.
    "debug-enclave-reported": (True, False),
    # QVL accepts any QE authentication data length; dcap-qvl requires exactly 32 bytes.
    "qe-auth-data-any-length": (True, False),
    # We also require the zero tail of the QE report data (sgx_quote_3.h); both QVL and
    # dcap-qvl compare only the first 32 bytes.
    "qe-report-data-zero-tail": (False, True),
    # QvE: collateral is expired when earliest expiration <= t; dcap-qvl only when t > it.
    "expiry-instant": (False, True),
}


@dataclass(frozen=True)
class Case:
    name: str
    quote: bytes
    collateral_json: str
    at: datetime
    root: bytes | None = None
    difference: str | None = None  # the named difference this case may show


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    detail: str


def confnode_outcome(case: Case) -> Outcome:
    try:
        result = verify_quote(
            case.quote,
            Collateral.from_json(case.collateral_json),
            at=case.at,
            trusted_root=case.root,
        )
    except ConfnodeError as error:  # anything else propagates and fails the test
        return Outcome(False, f"{type(error).__name__}: {error}")
    return Outcome(result.status is not TcbStatus.REVOKED, result.status.value)


def dcap_outcome(case: Case) -> Outcome:
    now = int(case.at.timestamp())
    try:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(case.collateral_json)
        if case.root is None:
            report = dcap_qvl.verify(case.quote, collateral, now)
        else:
            report = dcap_qvl.verify_with_root_ca(case.quote, collateral, case.root, now)
    except ValueError as error:
        return Outcome(False, str(error).splitlines()[0])
    return Outcome(True, report.status)


def _pem_regions(text: bytes | str) -> tuple[set[int], int]:
    """Positions between/after PEM blocks (framing), and where the last block (the root) starts."""
    data = text.encode() if isinstance(text, str) else text
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    first = data.index(begin)
    spans, pos = [], first
    while (start := data.find(begin, pos)) >= 0:
        stop = data.index(end, start) + len(end)
        spans.append((start, stop))
        pos = stop
    inside = {i for start, stop in spans for i in range(start, stop)}
    framing = {i for i in range(first, len(data)) if i not in inside}
    return framing, spans[-1][0]


def _chain_tag(text: bytes | str, pos: int) -> str | None:
    framing, root = _pem_regions(text)
    if pos in framing:
        return "pem-framing-strict"
    return "presented-root-checked" if pos >= root else None


def real_sample_cases(vs: VectorSet, tdx_bundle: str, seed: int = 20250704) -> list[Case]:
    rng = random.Random(seed)
    quote, at = vs.quote, vs.midpoint
    doc = json.loads(vs.collateral_json)
    cases: list[Case] = []

    # Single-bit flips across the whole quote, a few per byte region.
    for _ in range(1600):
        pos, bit = rng.randrange(len(quote)), rng.randrange(8)
        mutated = bytearray(quote)
        mutated[pos] ^= 1 << bit
        tag = _chain_tag(quote, pos)
        cases.append(
            Case(
                f"quote[{pos}]^{1 << bit:#x}",
                bytes(mutated),
                vs.collateral_json,
                at,
                difference=tag,
            )
        )

    # Single-bit flips in every collateral field (binary fields flipped in their DER/r||s bytes).
    binary = {"root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature"}
    for field, value in doc.items():
        for _ in range(90):
            changed = dict(doc)
            if field in binary:
                data = bytearray(bytes.fromhex(value))
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
                changed[field] = data.hex()
                tag = None
            else:
                pos = rng.randrange(len(value))
                flipped = chr(ord(value[pos]) ^ (1 << rng.randrange(7)))
                changed[field] = value[:pos] + flipped + value[pos + 1 :]
                tag = None
                if field == "pck_crl_issuer_chain":
                    tag = "pck-crl-issuer-chain-checked"
                elif field.endswith("issuer_chain"):
                    tag = _chain_tag(value, pos)
            cases.append(Case(f"{field}[{pos}]", quote, json.dumps(changed), at, difference=tag))

    # Collateral fields swapped in from the TDX bundle (same day, other platform/TEE).
    tdx = json.loads(tdx_bundle)
    for field in doc:
        swapped = dict(doc, **{field: tdx[field]})
        tag = "pck-crl-issuer-chain-checked" if field == "pck_crl_issuer_chain" else None
        cases.append(Case(f"swap {field}", quote, json.dumps(swapped), at, difference=tag))
    for group in (
        ("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain"),
        ("qe_identity", "qe_identity_signature", "qe_identity_issuer_chain"),
        ("pck_crl", "pck_crl_issuer_chain"),
    ):
        swapped = dict(doc, **{field: tdx[field] for field in group})
        cases.append(Case(f"swap {'+'.join(group)}", quote, json.dumps(swapped), at))
    cases.append(Case("swap whole bundle", quote, tdx_bundle, at))

    # Truncations and appended bytes.
    for length in sorted(
        {
            0,
            1,
            47,
            48,
            431,
            432,
            436,
            500,
            1012,
            1014,
            1050,
            2000,
            len(quote) - 2,
            len(quote) - 1,
            *rng.sample(range(len(quote)), 20),
        }
    ):
        cases.append(Case(f"truncate {length}", quote[:length], vs.collateral_json, at))
    for extra in (b"\0", b"\0" * 70, b"garbage"):
        cases.append(Case(f"append {extra[:4]!r}", quote + extra, vs.collateral_json, at))

    # Time: window edges (the exact expiry instant is a named difference).
    start, end = vs.window
    for moment, tag in ((start, None), (end, "expiry-instant")):
        cases.append(
            Case(f"at {moment.isoformat()}", quote, vs.collateral_json, moment, difference=tag)
        )
    return cases


def scenario_cases(seed: int = 7) -> list[Case]:
    """Minted scenarios through ``verify_with_root_ca``: the semantic differences."""
    rng = random.Random(seed)
    configured: list[tuple[str, Scenario, str | None]] = [
        ("baseline", Scenario(), None),
        ("debug enclave", Scenario(debug=True), "debug-enclave-reported"),
        ("auth data 16 B", Scenario(auth_data=bytes(16)), "qe-auth-data-any-length"),
        ("auth data 0 B", Scenario(auth_data=b""), "qe-auth-data-any-length"),
        ("report data tail", Scenario(report_data_tail=b"\x01" * 32), "qe-report-data-zero-tail"),
        ("pck revoked", Scenario(pck_revoked=(0x1234,)), None),
        ("qe out of date", Scenario(qe_isv_svn=6), None),
        ("qe below levels", Scenario(qe_isv_svn=5), None),
        ("no tcb level", Scenario(pck_svns=(0,) * 16), None),
        ("pcesvn lower", Scenario(pck_pcesvn=PCK_PCESVN - 1), None),
        (
            "levels ascending",
            Scenario(
                levels=(
                    tcb_level(LOW_SVNS, 5, "OutOfDate"),
                    tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate"),
                )
            ),
            None,
        ),
        ("platform CRL for processor quote", Scenario(platform_crl=True), None),
        ("misc select mismatch", Scenario(qe_misc_select=1), None),
        ("qe mrsigner", Scenario(qe_mrsigner=bytes(32)), None),
        ("fmspc", Scenario(tcb_fmspc=bytes(6)), None),
    ]
    cases: list[Case] = []
    for name, scenario, tag in configured:
        quote, collateral, root = scenario.build()
        bundle = collateral.to_json()
        cases.append(Case(name, quote, bundle, NOW, root, tag))
        if name == "baseline":
            for _ in range(150):
                pos, bit = rng.randrange(len(quote)), rng.randrange(8)
                mutated = bytearray(quote)
                mutated[pos] ^= 1 << bit
                tag2 = _chain_tag(quote, pos)
                cases.append(Case(f"{name} quote[{pos}]", bytes(mutated), bundle, NOW, root, tag2))
    return cases


def _check(cases: list[Case], outcome: Callable[[Case], Outcome]) -> Counter[str]:
    seen: Counter[str] = Counter()
    problems = []
    for case in cases:
        ours, theirs = confnode_outcome(case), outcome(case)
        if ours.accepted == theirs.accepted:
            seen["agree"] += 1
            continue
        expected = NAMED_DIFFERENCES.get(case.difference or "")
        if expected == (ours.accepted, theirs.accepted):
            seen[case.difference or ""] += 1
            continue
        problems.append(f"{case.name}: confnode {ours.detail} | dcap-qvl {theirs.detail}")
    assert not problems, f"{len(problems)} unexplained disagreements:\n" + "\n".join(problems[:20])
    return seen


def test_differential_real_sample(dcapqvl: VectorSet, vectors) -> None:  # type: ignore[no-untyped-def]
    tdx = (vectors / "Phala-Network_dcap-qvl" / "sample" / "tdx_quote_collateral.json").read_text()
    cases = real_sample_cases(dcapqvl, tdx)
    assert len(cases) > 2000
    seen = _check(cases, dcap_outcome)
    assert seen["agree"] > 1800
    assert seen["presented-root-checked"] > 0
    assert seen["pck-crl-issuer-chain-checked"] > 0
    assert seen["pem-framing-strict"] > 0
    assert seen["expiry-instant"] == 1


def test_differential_minted_scenarios() -> None:
    seen = _check(scenario_cases(), dcap_outcome)
    for name in ("debug-enclave-reported", "qe-auth-data-any-length", "qe-report-data-zero-tail"):
        assert seen[name] >= 1, name
    assert seen["agree"] > 100


def test_both_accept_the_sample_with_the_same_verdict(dcapqvl: VectorSet) -> None:
    case = Case("sample", dcapqvl.quote, dcapqvl.collateral_json, dcapqvl.midpoint)
    ours, theirs = confnode_outcome(case), dcap_outcome(case)
    assert ours == theirs == Outcome(True, "ConfigurationAndSWHardeningNeeded")
