"""The verifier's speed-ups change no verdict: in-call signature reuse and the PCK fast path.

* A certificate signature is verified once per exact (child, issuer) certificate pair; a
  byte-different certificate anywhere in the collateral is still verified on its own.
* Certificate signatures are checked by a fast path only where it gives exactly
  ``verify_directly_issued_by``'s outcome.
* TCB Info levels are read by a fast path only when the checked reader returns the same level.
* The PCK extension fast path (:func:`confnode.sgx.pck._parse_canonical`) returns a value only
  when it equals what the strict reader returns, and otherwise defers to it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from verify_testpki import NOW, Scenario, key

from confnode.cli._vectors import VectorSet
from confnode.collateral import TcbLevel
from confnode.collateral import _models as models_module
from confnode.errors import InvalidCollateral, InvalidQuote
from confnode.sgx import (
    PCK_EXTENSION_OID,
    PckExtension,
    PckTcb,
    PlatformConfiguration,
    parse_quote,
)
from confnode.sgx import pck as pck_module
from confnode.sgx.pck import encode_pck_extension
from confnode.verify import CrlInvalid, SigningChainInvalid, clear_caches, verify_quote
from confnode.verify import _chain as chain_module
from confnode.verify import _verifier as verifier_module


def _tampered(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate with one signature bit flipped (same key, different DER)."""
    der = bytearray(cert.public_bytes(Encoding.DER))
    der[-1] ^= 1
    return x509.load_der_x509_certificate(bytes(der))


def test_each_distinct_certificate_signature_is_verified_once(
    dcapqvl: VectorSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[tuple[bytes, bytes]] = []

    class Recording(chain_module.LruCache[tuple[bytes, bytes], bool]):
        def put(self, key: tuple[bytes, bytes], value: bool) -> None:
            checked.append(key)
            super().put(key, value)

    monkeypatch.setattr(chain_module, "_ISSUED", Recording(256))
    clear_caches()
    verify_quote(dcapqvl.quote, dcapqvl.collateral(), at=dcapqvl.midpoint)
    # Root self-signature, PCK CA by root, PCK leaf by CA, TCB Signing by root: the PCK CRL
    # issuer chain and the QE Identity issuer chain repeat certificates already checked.
    assert len(checked) == 4 == len(set(checked))


@pytest.mark.parametrize(
    "field", ["pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"]
)
def test_a_tampered_root_copy_is_checked_after_the_genuine_one(field: str) -> None:
    quote, collateral, root = Scenario().build()
    clear_caches()
    verify_quote(quote, collateral, at=NOW, trusted_root=root)  # genuine root checked
    leaf, genuine = getattr(collateral, field)
    bad = dataclasses.replace(collateral, **{field: (leaf, _tampered(genuine))})
    error = CrlInvalid if field == "pck_crl_issuer_chain" else SigningChainInvalid
    with pytest.raises(error, match="root certificate signature does not verify"):
        verify_quote(quote, bad, at=NOW, trusted_root=root)


def test_a_tampered_signing_certificate_is_checked_after_the_genuine_one() -> None:
    quote, collateral, root = Scenario().build()
    clear_caches()
    verify_quote(quote, collateral, at=NOW, trusted_root=root)
    leaf, root_cert = collateral.qe_identity_issuer_chain
    bad = dataclasses.replace(collateral, qe_identity_issuer_chain=(_tampered(leaf), root_cert))
    with pytest.raises(SigningChainInvalid, match="leaf certificate signature does not verify"):
        verify_quote(quote, bad, at=NOW, trusted_root=root)


# ------------------------------------------------------------------------ PCK extension fast path

_flags = st.none() | st.booleans()
_extensions = st.builds(
    PckExtension,
    ppid=st.binary(min_size=16, max_size=16),
    tcb=st.builds(
        PckTcb,
        comp_svns=st.tuples(*[st.integers(0, 255)] * 16),
        pcesvn=st.integers(0, 0xFFFF),
        cpusvn=st.binary(min_size=16, max_size=16),
    ),
    pce_id=st.binary(min_size=2, max_size=2),
    fmspc=st.binary(min_size=6, max_size=6),
    sgx_type=st.integers(0, 2),
    platform_instance_id=st.none() | st.binary(min_size=16, max_size=16),
    configuration=st.none() | st.builds(PlatformConfiguration, _flags, _flags, _flags),
)


def _strict(der: bytes) -> PckExtension | InvalidQuote:
    try:
        return pck_module._parse_strict(der)
    except InvalidQuote as error:
        return error


def _assert_fast_agrees(der: bytes) -> None:
    fast = pck_module._parse_canonical(der)
    if fast is not None:
        assert _strict(der) == fast


def test_real_extension_takes_the_fast_path(dcapqvl: VectorSet) -> None:
    pem = parse_quote(dcapqvl.quote).signature_data.certification.pck_chain_pem
    assert pem is not None
    leaf = x509.load_pem_x509_certificates(pem)[0]
    value = leaf.extensions.get_extension_for_oid(PCK_EXTENSION_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    fast = pck_module._parse_canonical(value.value)
    assert fast is not None and fast == pck_module._parse_strict(value.value)


@settings(max_examples=150, deadline=None)
@given(ext=_extensions)
def test_fast_path_equals_strict_reader_on_encoded_values(ext: PckExtension) -> None:
    der = encode_pck_extension(ext)
    assert pck_module._parse_canonical(der) == ext == pck_module._parse_strict(der)


@settings(max_examples=300, deadline=None)
@given(ext=_extensions, data=st.data())
def test_fast_path_defers_on_mutated_values(ext: PckExtension, data: st.DataObject) -> None:
    der = bytearray(encode_pck_extension(ext))
    for _ in range(data.draw(st.integers(1, 3))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    _assert_fast_agrees(bytes(der[: data.draw(st.integers(0, len(der)))]))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_fast_path_defers_on_arbitrary_bytes(data: bytes) -> None:
    _assert_fast_agrees(data)


# --------------------------------------------------------------- certificate signature fast path


def _outcome(check: Callable[..., None], *args: object) -> str:
    try:
        check(*args)
    except InvalidSignature:
        return "bad signature"
    except ValueError:
        return "issuer mismatch"
    return "valid"


def _sample_certificates(dcapqvl: VectorSet) -> list[x509.Certificate]:
    collateral = dcapqvl.collateral()
    pem = parse_quote(dcapqvl.quote).signature_data.certification.pck_chain_pem
    assert pem is not None
    quote_chain = x509.load_pem_x509_certificates(pem)
    _, pki_collateral, _ = Scenario().build()
    return [
        *quote_chain,
        *collateral.pck_crl_issuer_chain,
        *collateral.tcb_info_issuer_chain,
        *pki_collateral.pck_crl_issuer_chain,
        *pki_collateral.tcb_info_issuer_chain,
        _tampered(quote_chain[0]),
        _tampered(collateral.tcb_info_issuer_chain[1]),
    ]


def test_certificate_fast_path_matches_cryptography(dcapqvl: VectorSet) -> None:
    certs = _sample_certificates(dcapqvl)
    outcomes = set()
    for child in certs:
        for issuer in certs:
            ours = _outcome(chain_module._verify_issued, child, _der(child), issuer, _der(issuer))
            theirs = _outcome(child.verify_directly_issued_by, issuer)
            assert ours == theirs, (child.subject, issuer.subject)
            outcomes.add(ours)
    assert outcomes == {"valid", "bad signature", "issuer mismatch"}


def test_certificate_fast_path_defers_for_other_algorithms() -> None:
    issuer_key = key(31)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test SGX Root CA")])
    moment = NOW.replace(tzinfo=None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(issuer_key.public_key())
        .serial_number(7)
        .not_valid_before(moment)
        .not_valid_after(moment.replace(year=moment.year + 1))
        .sign(issuer_key, hashes.SHA384())
    )
    chain_module._verify_issued(cert, _der(cert), cert, _der(cert))
    bad = _tampered(cert)
    with pytest.raises(InvalidSignature):
        chain_module._verify_issued(bad, _der(bad), cert, _der(cert))


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# ------------------------------------------------------------------------- TCB level fast path


def _checked_level(value: object, tee: str) -> TcbLevel | InvalidCollateral:
    try:
        return models_module._tcb_level(models_module._Reader(value, "lvl", "TCB Info"), 3, tee)
    except InvalidCollateral as error:
        return error


def _real_levels(dcapqvl: VectorSet) -> list[dict[str, Any]]:
    info = json.loads(dcapqvl.collateral().tcb_info.body)
    levels: list[dict[str, Any]] = info["tcbLevels"]
    return levels


def test_real_tcb_levels_take_the_fast_path(dcapqvl: VectorSet) -> None:
    levels = _real_levels(dcapqvl)
    assert levels
    for value in levels:
        fast = models_module._fast_tcb_level(value, "SGX")
        assert fast is not None and fast == _checked_level(value, "SGX")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 300) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=17) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
_level_paths = st.sampled_from(
    [
        ("tcb",),
        ("tcb", "sgxtcbcomponents"),
        ("tcb", "sgxtcbcomponents", 3),
        ("tcb", "sgxtcbcomponents", 3, "svn"),
        ("tcb", "tdxtcbcomponents"),
        ("tcb", "pcesvn"),
        ("tcbDate",),
        ("tcbStatus",),
        ("advisoryIDs",),
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    path=_level_paths,
    value=_json_values,
    delete=st.booleans(),
    tee=st.sampled_from(["SGX", "TDX"]),
)
def test_tcb_level_fast_path_defers_on_mutated_levels(
    dcapqvl: VectorSet,
    data: st.DataObject,
    path: tuple[str | int, ...],
    value: object,
    delete: bool,
    tee: str,
) -> None:
    levels = _real_levels(dcapqvl)
    level = copy.deepcopy(levels[data.draw(st.integers(0, len(levels) - 1))])
    target: Any = level
    for step in path[:-1]:
        target = target[step]
    if delete and isinstance(path[-1], str):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    fast = models_module._fast_tcb_level(level, tee)
    if fast is not None:
        assert _checked_level(level, tee) == fast


def test_quote_chain_reuses_the_bundles_certificate_objects(dcapqvl: VectorSet) -> None:
    clear_caches()
    collateral = dcapqvl.collateral()
    pem = parse_quote(dcapqvl.quote).signature_data.certification.pck_chain_pem
    assert pem is not None
    _, ca, root = x509.load_pem_x509_certificates(pem)
    assert verifier_module._shared(root, _der(root)) is collateral.tcb_info_issuer_chain[1]
    assert verifier_module._shared(ca, _der(ca)) is collateral.pck_crl_issuer_chain[0]
    tampered = _tampered(root)
    shared = verifier_module._shared(tampered, _der(tampered))
    assert shared == tampered and shared != root
