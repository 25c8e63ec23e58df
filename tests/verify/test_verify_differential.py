"""Differential test against dcap-qvl (Phala's Rust verifier, PyPI ``dcap-qvl``).

Thousands of seeded mutations of the real ``dcap-qvl`` SGX and TDX samples (single-bit flips
across the quote and every collateral field, truncations, appended bytes, fields swapped in from
the other TEE's bundle) plus minted SGX and TD scenarios (``verify_with_root_ca``) must get the
same accept/reject from both verifiers and, when both accept, the same status and advisory IDs;
confnode must never raise anything but its own errors. Accept means: a result whose status is
not ``Revoked`` (the CLI's exit 0).

Every disagreement must fall under one of the NAMED_DIFFERENCES (accept/reject) or
VERDICT_DIFFERENCES (status/advisories), each documented in docs/adr/0002-verifier-semantics.md,
and each must actually occur (so the list cannot rot).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from verify_testpki import (
    LOW_SVNS,
    NOW,
    PCK_PCESVN,
    PCK_SVNS,
    TDX,
    TDX_LOW,
    TDX_MODULE,
    TDX_RELAUNCH,
    TDX_UP,
    TEE_TCB_SVN,
    Scenario,
    key,
    module_identity,
    qe_level,
    raw_sign,
    tcb_level,
)

from confnode.cli._vectors import VectorSet
from confnode.collateral import Collateral, TcbStatus
from confnode.errors import ConfnodeError
from confnode.sgx import parse_quote
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
    # TDX: QVL leaves TD attributes (DEBUG, reserved bits, SEPT_VE_DISABLE) and MRSERVICETD to
    # policy and reports them; dcap-qvl rejects a debug TD, reserved bits, SEPT_VE_DISABLE off
    # and a non-zero MRSERVICETD.
    "td-attributes-reported": (True, False),
    # TDX: QVL requires SEAMATTRIBUTES all zero and equal to the module's attributes, unmasked;
    # dcap-qvl compares them under attributesMask.
    "seam-attributes-unmasked": (False, True),
    # A declared size (signature data, type-6 container, certification data) larger than what
    # its parts occupy: QVL and the codec reject the left-over bytes (QVL
    # verifyCertificationData: parsed size != declared size); dcap-qvl ignores them.
    "sizes-consumed-exactly": (False, True),
    # QVL checks the TCB Info PCE-ID against the PCK certificate's; dcap-qvl only the FMSPC.
    "pce-id-checked": (False, True),
    # A Root CA CRL issued after the verification time: rejected like any collateral issued
    # after it (QVL and dcap-qvl accept it; dcap-qvl rejects the other documents' dates).
    "root-crl-this-update-checked": (False, True),
    # QVL ignores certificates' notBefore (only notAfter feeds expiry); dcap-qvl (webpki)
    # rejects a certificate that is not yet valid.
    "not-before-ignored": (True, False),
    # QVL's CRL profile requires CRL Number and Authority Key Identifier; dcap-qvl does not.
    "crl-profile-checked": (False, True),
    # TDX-only members in SGX TCB Info make it malformed here; dcap-qvl ignores them.
    "sgx-tcb-info-tdx-members-rejected": (False, True),
}


#: Verdict differences when both accept: name -> what differs.
VERDICT_DIFFERENCES = {
    # QvE reports the platform (and TDX module) level's advisory IDs; dcap-qvl adds the QE's.
    "qe-advisories-not-reported": "advisories",
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
    advisories: tuple[str, ...] = ()


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
    return Outcome(result.status is not TcbStatus.REVOKED, result.status.value, result.advisory_ids)


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
    return Outcome(True, report.status, tuple(report.advisory_ids))


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


def _size_fields(quote: bytes) -> set[int]:
    """Byte positions of the v4/v5 size fields: signature data, type-6 and inner cert data."""
    parsed = parse_quote(quote)
    if parsed.version == 3:
        return set()
    at = len(parsed.signed_region)
    inner = at + 4 + 128 + 6 + 384 + 64 + 2 + len(parsed.signature_data.qe_auth_data) + 2
    return {*range(at, at + 4), *range(at + 134, at + 138), *range(inner, inner + 4)}


def _chain_tag(text: bytes | str, pos: int) -> str | None:
    framing, root = _pem_regions(text)
    if pos in framing:
        return "pem-framing-strict"
    return "presented-root-checked" if pos >= root else None


def real_sample_cases(
    vs: VectorSet, other_bundle: str, seed: int = 20250704, flips: int = 1600
) -> list[Case]:
    """Mutations of one real sample; ``other_bundle`` is the other TEE's collateral (swaps)."""
    rng = random.Random(seed)
    quote, at = vs.quote, vs.midpoint
    doc = json.loads(vs.collateral_json)
    cases: list[Case] = []

    # Single-bit flips across the whole quote, a few per byte region.
    sizes = _size_fields(quote)
    for _ in range(flips):
        pos, bit = rng.randrange(len(quote)), rng.randrange(8)
        mutated = bytearray(quote)
        mutated[pos] ^= 1 << bit
        tag = "sizes-consumed-exactly" if pos in sizes else _chain_tag(quote, pos)
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

    # Collateral fields swapped in from the other TEE's bundle (same day, other platform).
    tdx = json.loads(other_bundle)
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
    cases.append(Case("swap whole bundle", quote, other_bundle, at))

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


QE_LEVELS_WITH_ADVISORY = (qe_level(8, "UpToDate"), qe_level(6, "OutOfDate", ("Q-1",)))


def _svn(module_svn: int, version: int, microcode: int) -> bytes:
    return bytes([module_svn, version, microcode]) + bytes(13)


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
        (
            "qe level advisories",
            Scenario(
                qe_isv_svn=6,
                qe_levels=QE_LEVELS_WITH_ADVISORY,
            ),
            "qe-advisories-not-reported",
        ),
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
        ("pce-id", Scenario(tcb_pce_id=b"\x00\x01"), "pce-id-checked"),
        (
            "root CRL issued after at",
            Scenario(root_crl_this_update=NOW + timedelta(days=1)),
            "root-crl-this-update-checked",
        ),
        ("tcb info issued after at", Scenario(tcb_issue=NOW + timedelta(days=1)), None),
        (
            "pck leaf not yet valid",
            Scenario(leaf_not_before=NOW + timedelta(days=1)),
            "not-before-ignored",
        ),
        *(
            (f"{item} without {omit}", Scenario(crl_omits=((item, omit),)), tag)
            for item in ("root_ca_crl", "pck_crl")
            for omit, tag in (
                ("next_update", None),
                ("crl_number", "crl-profile-checked"),
                ("aki", "crl-profile-checked"),
            )
        ),
    ]
    cases: list[Case] = []
    for name, scenario, tag in configured:
        quote, collateral, root = scenario.build()
        bundle = collateral.to_json()
        cases.append(Case(name, quote, bundle, NOW, root, tag))
        if name == "baseline":
            cases += _resigned_tcb_info_cases(quote, bundle, root)
            for _ in range(150):
                pos, bit = rng.randrange(len(quote)), rng.randrange(8)
                mutated = bytearray(quote)
                mutated[pos] ^= 1 << bit
                tag2 = _chain_tag(quote, pos)
                cases.append(Case(f"{name} quote[{pos}]", bytes(mutated), bundle, NOW, root, tag2))
    return cases


def _resigned(bundle: str, field: str, edit: Callable[[dict[str, Any]], None]) -> str:
    """The bundle with one signed document edited and re-signed by the minted TCB Signing key
    (the collateral parser would refuse to build these documents)."""
    doc = json.loads(bundle)
    body = json.loads(doc[field])
    edit(body)
    text = json.dumps(body, separators=(",", ":"))
    return json.dumps(dict(doc, **{field: text, f"{field}_signature": _tcb_signed(text)}))


def _tcb_signed(text: str) -> str:
    return raw_sign(key(15), text.encode()).hex()


def _resigned_tcb_info_cases(quote: bytes, bundle: str, root: bytes) -> list[Case]:
    def tdx_module(info: dict[str, Any]) -> None:
        info["tdxModule"] = TDX_MODULE

    def tdx_components(info: dict[str, Any]) -> None:
        for level in info["tcbLevels"]:
            level["tcb"]["tdxtcbcomponents"] = [{"svn": 0}] * 16

    def qe_swh(identity: dict[str, Any]) -> None:
        identity["tcbLevels"][0]["tcbStatus"] = "SWHardeningNeeded"

    tag = "sgx-tcb-info-tdx-members-rejected"
    return [
        Case(
            "sgx tcb info + tdxModule",
            quote,
            _resigned(bundle, "tcb_info", tdx_module),
            NOW,
            root,
            tag,
        ),
        Case(
            "sgx tcb info + tdx components",
            quote,
            _resigned(bundle, "tcb_info", tdx_components),
            NOW,
            root,
            tag,
        ),
        Case(
            "qe level SWHardeningNeeded", quote, _resigned(bundle, "qe_identity", qe_swh), NOW, root
        ),
    ]


def tdx_scenario_cases(seed: int = 11) -> list[Case]:
    """Minted TD quotes through ``verify_with_root_ca``: the TDX steps and their differences."""
    rng = random.Random(seed)
    one_module = (module_identity("TDX_01", qe_level(4, "UpToDate"), qe_level(2, "OutOfDate")),)
    configured: list[tuple[str, Scenario, str | None]] = [
        ("tdx baseline", TDX, None),
        ("td 1.5", TDX_RELAUNCH.replace(tee_tcb_svn=TEE_TCB_SVN), None),
        ("td relaunch advised", TDX_RELAUNCH, None),
        ("tdx module out of date", TDX.replace(tee_tcb_svn=_svn(3, 1, 7)), None),
        ("tdx module below levels", TDX.replace(tee_tcb_svn=_svn(1, 1, 7)), None),
        ("tdx module version 2", TDX.replace(tee_tcb_svn=_svn(5, 2, 7)), None),
        ("tdx module version 0", TDX.replace(tee_tcb_svn=_svn(5, 0, 7)), None),
        ("tdx no tdx level", TDX.replace(tee_tcb_svn=_svn(5, 1, 4)), None),
        ("tdx no sgx level", TDX.replace(pck_svns=(0,) * 16), None),
        ("mrsignerseam", TDX.replace(mr_signer_seam=b"\x01" * 48), None),
        ("seam attributes", TDX.replace(seam_attributes=b"\x01" + bytes(7)), None),
        (
            "seam attributes equal but non-zero",
            TDX.replace(
                seam_attributes=b"\x01" + bytes(7),
                tdx_module_identities=(one_module[0] | {"attributes": "0100000000000000"},),
            ),
            "seam-attributes-unmasked",
        ),
        ("tdx qe identity QE", TDX.replace(qe_id="QE"), None),
        ("tdx qe out of date", TDX.replace(qe_isv_svn=6), None),
        (
            "tdx qe level advisories",
            TDX.replace(
                qe_isv_svn=6,
                qe_levels=QE_LEVELS_WITH_ADVISORY,
            ),
            "qe-advisories-not-reported",
        ),
        (
            "td relaunch, configuration needed",
            TDX_RELAUNCH.replace(
                levels=(
                    tcb_level(PCK_SVNS, PCK_PCESVN, "ConfigurationNeeded", tdx=TDX_UP),
                    tcb_level(LOW_SVNS, 5, "OutOfDate", tdx=TDX_LOW),
                )
            ),
            None,
        ),
        (
            "td relaunch, module version 0",
            TDX_RELAUNCH.replace(tee_tcb_svn2=_svn(5, 0, 7)),
            None,
        ),
        ("td relaunch, qe out of date", TDX_RELAUNCH.replace(qe_isv_svn=6), None),
        (
            "tdx module older, version 1",
            TDX.replace(tee_tcb_svn=_svn(4, 1, 7), tdx_module_identities=one_module),
            None,
        ),
        ("tdx level by microcode", TDX.replace(tee_tcb_svn=_svn(5, 1, 6)), None),
        (
            "tdx module revoked",
            TDX.replace(
                tee_tcb_svn=_svn(3, 1, 7),
                tdx_module_identities=(
                    module_identity("TDX_01", qe_level(4, "UpToDate"), qe_level(2, "Revoked")),
                ),
            ),
            None,
        ),
        (
            "tdx levels tie-broken by tdx components",
            TDX.replace(
                levels=(
                    tcb_level(PCK_SVNS, PCK_PCESVN, "OutOfDate", tdx=TDX_LOW),
                    tcb_level(PCK_SVNS, PCK_PCESVN, "UpToDate", tdx=TDX_UP),
                )
            ),
            None,
        ),
        ("tdx pck revoked", TDX.replace(pck_revoked=(0x1234,)), None),
        ("debug td", TDX.replace(td_attributes=bytes.fromhex("0100001000000000")), None),
        ("sept_ve_disable off", TDX.replace(td_attributes=bytes(8)), None),
        ("service td", TDX_RELAUNCH.replace(mr_servicetd=b"\x01" * 48), None),
    ]
    reported = {"debug td", "sept_ve_disable off", "service td"}
    cases: list[Case] = []
    for name, scenario, tag in configured:
        quote, collateral, root = scenario.build()
        bundle = collateral.to_json()
        cases.append(
            Case(
                name,
                quote,
                bundle,
                NOW,
                root,
                "td-attributes-reported" if name in reported else tag,
            )
        )
        if name == "tdx baseline":
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
            if not ours.accepted or ours == theirs:
                seen["agree"] += 1
                continue
            if case.difference in VERDICT_DIFFERENCES and ours.detail == theirs.detail:
                seen[case.difference] += 1
                continue
            problems.append(f"{case.name}: confnode {ours} | dcap-qvl {theirs}")
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
    for name in (
        "debug-enclave-reported",
        "qe-auth-data-any-length",
        "qe-report-data-zero-tail",
        "pce-id-checked",
        "root-crl-this-update-checked",
        "not-before-ignored",
    ):
        assert seen[name] >= 1, name
    assert seen["crl-profile-checked"] == 4
    assert seen["qe-advisories-not-reported"] == 1
    assert seen["sgx-tcb-info-tdx-members-rejected"] == 2
    assert seen["agree"] > 100


def test_both_accept_the_sample_with_the_same_verdict(dcapqvl: VectorSet) -> None:
    case = Case("sample", dcapqvl.quote, dcapqvl.collateral_json, dcapqvl.midpoint)
    ours, theirs = confnode_outcome(case), dcap_outcome(case)
    assert ours == theirs
    assert ours.detail == "ConfigurationAndSWHardeningNeeded"


def test_differential_tdx_real_sample(dcapqvl_tdx: VectorSet, vectors) -> None:  # type: ignore[no-untyped-def]
    """≥ 1,000 mutations of the real TDX v4 sample: same accept/reject as dcap-qvl."""
    sgx = (vectors / "Phala-Network_dcap-qvl" / "sample" / "sgx_quote_collateral.json").read_text()
    cases = real_sample_cases(dcapqvl_tdx, sgx, seed=20250619, flips=700)
    assert len(cases) > 1500
    seen = _check(cases, dcap_outcome)
    assert seen["agree"] > 1300
    assert seen["presented-root-checked"] > 0
    assert seen["sizes-consumed-exactly"] > 0
    # A CRL's nextUpdate decides this window's end, and dcap-qvl's CRL check (webpki) treats
    # that instant as expired too: the difference is only for TCB Info / QE Identity times.
    assert seen["expiry-instant"] == 0


def test_differential_tdx_minted_scenarios() -> None:
    seen = _check(tdx_scenario_cases(), dcap_outcome)
    assert seen["qe-advisories-not-reported"] == 1
    assert seen["td-attributes-reported"] == 3
    assert seen["seam-attributes-unmasked"] == 1
    assert seen["agree"] > 140


def test_both_accept_the_tdx_sample_with_the_same_verdict(dcapqvl_tdx: VectorSet) -> None:
    vs = dcapqvl_tdx
    case = Case("tdx sample", vs.quote, vs.collateral_json, vs.midpoint)
    assert confnode_outcome(case) == dcap_outcome(case) == Outcome(True, "UpToDate", ())
