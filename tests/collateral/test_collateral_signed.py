"""Exact signed bytes: Intel's TCB Signing key verifies every real TCB Info / QE Identity over the
bytes confnode extracts, and any single-bit change to body or signature breaks it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode import InvalidCollateral
from confnode.collateral import (
    Collateral,
    SignedQeIdentity,
    SignedTcbInfo,
    extract_signed_value,
    parse_pem_chain,
    parse_signature_der,
    signature_to_der,
)

Signed = SignedTcbInfo | SignedQeIdentity

#: Production Intel SGX Root CA public key (dcap-vectors README, QvE ``INTEL_ROOT_PUB_KEY``).
INTEL_ROOT_KEY = bytes.fromhex(
    "040ba9c4c0c0c86193a3fe23d6b02cda10a8bbd4e88e48b4458561a36e705525f5"
    "67918e2edc88e40d860bd0cc4ee26aacc988e505a953558c453f6b0904ae7394"
)


def _verifies(key: ec.EllipticCurvePublicKey, signed: Signed) -> bool:
    try:
        key.verify(signature_to_der(signed.signature), signed.body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _load_all(dcap_qvl: Path, oasis: Path, fortanix: Path) -> dict[str, Signed]:
    docs: dict[str, Signed] = {}
    for name in ("sgx_quote", "tdx_quote", "tdx_quote_outdated"):
        bundle = Collateral.from_json((dcap_qvl / f"{name}_collateral.json").read_text())
        docs[f"dcap-qvl {name} tcb_info"] = bundle.tcb_info
        docs[f"dcap-qvl {name} qe_identity"] = bundle.qe_identity
    for path in sorted(oasis.glob("tcb_info_v3*.json")):
        docs[f"oasis {path.name}"] = SignedTcbInfo.from_pcs_body(path.read_bytes())
    for path in sorted(oasis.glob("qe_identity_v2*.json")):
        docs[f"oasis {path.name}"] = SignedQeIdentity.from_pcs_body(path.read_bytes())
    docs["fortanix tcb-sgx.json"] = SignedTcbInfo.from_pcs_body(
        (fortanix / "tcb-json" / "tcb-sgx.json").read_bytes()
    )
    docs["fortanix qeid-sgx.json"] = SignedQeIdentity.from_pcs_body(
        (fortanix / "qe-identity" / "qeid-sgx.json").read_bytes()
    )
    tcb = json.loads((fortanix / "00906ea10000.tcb").read_text())
    docs["fortanix 00906ea10000.tcb"] = SignedTcbInfo.from_parts(
        tcb["raw_tcb_info"], parse_signature_der(tcb["signature"])
    )
    qe = json.loads((fortanix / "qe3_identity.id").read_text())
    docs["fortanix qe3_identity.id"] = SignedQeIdentity.from_parts(
        qe["raw_enclave_identity"], parse_signature_der(qe["signature"])
    )
    return docs


@pytest.fixture(scope="module")
def signed_docs(dcap_qvl_dir: Path, oasis_dir: Path, fortanix_dir: Path) -> dict[str, Signed]:
    return _load_all(dcap_qvl_dir, oasis_dir, fortanix_dir)


@pytest.fixture(scope="module")
def tcb_signing_key(dcap_qvl_dir: Path) -> ec.EllipticCurvePublicKey:
    bundle = Collateral.from_json((dcap_qvl_dir / "sgx_quote_collateral.json").read_text())
    leaf, root = bundle.tcb_info_issuer_chain
    root_key = root.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey)
    assert root_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == INTEL_ROOT_KEY
    leaf.verify_directly_issued_by(root)
    assert "SGX TCB Signing" in leaf.subject.rfc4514_string()
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def test_every_vector_chain_carries_the_same_tcb_signing_key(
    tcb_signing_key: ec.EllipticCurvePublicKey, oasis_dir: Path, fortanix_dir: Path
) -> None:
    point = tcb_signing_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    chains = [
        parse_pem_chain((oasis_dir / "tcb_info_v3_fmspc_00606A000000_certs.pem").read_bytes()),
        parse_pem_chain(
            "".join(json.loads((fortanix_dir / "00906ea10000.tcb").read_text())["ca_chain"])
        ),
    ]
    for chain in chains:
        key = chain[0].public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == point


def test_all_vector_documents_loaded(signed_docs: dict[str, Signed]) -> None:
    assert len(signed_docs) == 16


def test_intel_signature_verifies_over_extracted_bytes(
    signed_docs: dict[str, Signed], tcb_signing_key: ec.EllipticCurvePublicKey
) -> None:
    failed = [name for name, doc in signed_docs.items() if not _verifies(tcb_signing_key, doc)]
    assert failed == []


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_bit_flip_in_body_or_signature_fails(
    signed_docs: dict[str, Signed],
    tcb_signing_key: ec.EllipticCurvePublicKey,
    data: st.DataObject,
) -> None:
    name = data.draw(st.sampled_from(sorted(signed_docs)))
    doc = signed_docs[name]
    in_body = data.draw(st.booleans())
    target = doc.body if in_body else doc.signature
    bit = data.draw(st.integers(0, 8 * len(target) - 1))
    if in_body:
        mutated = dataclasses.replace(doc, body=_flip(doc.body, bit))
    else:
        mutated = dataclasses.replace(doc, signature=_flip(doc.signature, bit))
    assert not _verifies(tcb_signing_key, mutated)


def test_extracted_body_is_the_served_substring(oasis_dir: Path, fortanix_dir: Path) -> None:
    files: list[tuple[Path, Callable[[bytes], Signed], bytes]] = [
        (
            oasis_dir / "tcb_info_v3_fmspc_00606A000000.json",
            SignedTcbInfo.from_pcs_body,
            b"tcbInfo",
        ),
        (oasis_dir / "qe_identity_v2.json", SignedQeIdentity.from_pcs_body, b"enclaveIdentity"),
        (fortanix_dir / "tcb-json" / "tcb-sgx.json", SignedTcbInfo.from_pcs_body, b"tcbInfo"),
    ]
    for path, load, key in files:
        raw = path.read_bytes()
        doc = load(raw)
        prefix = b'{"' + key + b'":'
        assert raw.startswith(prefix + doc.body + b',"signature":"' + doc.signature.hex().encode())


def test_reordered_and_reindented_envelope_keeps_exact_body(
    signed_docs: dict[str, Signed], tcb_signing_key: ec.EllipticCurvePublicKey
) -> None:
    doc = signed_docs["oasis tcb_info_v3_fmspc_00606A000000.json"]
    assert isinstance(doc, SignedTcbInfo)
    envelope = (
        b'{\n  "signature" : "' + doc.signature.hex().encode() + b'",\n'
        b'  "note": "a } brace and an escaped \\" quote and \\\\",\n'
        b'  "tcbInfo" :\t' + doc.body + b"\r\n}\n"
    )
    again = SignedTcbInfo.from_pcs_body(envelope)
    assert again == doc
    assert _verifies(tcb_signing_key, again)


def test_to_pcs_body_round_trips(signed_docs: dict[str, Signed]) -> None:
    for doc in signed_docs.values():
        if isinstance(doc, SignedTcbInfo):
            assert SignedTcbInfo.from_pcs_body(doc.to_pcs_body()) == doc
        else:
            assert SignedQeIdentity.from_pcs_body(doc.to_pcs_body()) == doc


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'{"tcbInfo": {}, "tcbInfo": {}, "signature": ""}', "duplicate key 'tcbInfo'"),
        (b'{"signature": "00"}', "expected a top-level 'tcbInfo' member"),
        (b'{"tcbInfo": {"version": 3}} trailing', "extra data"),
        (b'[{"tcbInfo": {}}]', "expected '{'"),
        (b'{"tcbInfo": {"a": NaN}}', "NaN"),
        (b'{"tcbInfo": {"a": 1, "a": 2}}', "duplicate key 'a'"),
        (b'{"tcbInfo" {}}', "expected ':'"),
        (b'{"tcbInfo": {} "x": 1}', "expected ',' or '}'"),
        (b"\xff{}", "not valid UTF-8"),
    ],
)
def test_extraction_rejects_malformed_envelopes(document: bytes, message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        extract_signed_value(document, "tcbInfo")


def test_pcs_body_signature_must_be_present_and_hex(signed_docs: dict[str, Signed]) -> None:
    doc = signed_docs["oasis qe_identity_v2.json"]
    with pytest.raises(InvalidCollateral, match="no top-level 'signature'"):
        SignedQeIdentity.from_pcs_body(b'{"enclaveIdentity":' + doc.body + b"}")
    with pytest.raises(InvalidCollateral, match="'signature' must be a hex string"):
        SignedQeIdentity.from_pcs_body(b'{"enclaveIdentity":' + doc.body + b',"signature":1}')
    with pytest.raises(InvalidCollateral, match="128 hex digits"):
        SignedQeIdentity.from_pcs_body(b'{"enclaveIdentity":' + doc.body + b',"signature":"ab"}')


def test_from_parts_requires_64_byte_signature(signed_docs: dict[str, Signed]) -> None:
    doc = signed_docs["oasis qe_identity_v2.json"]
    with pytest.raises(InvalidCollateral, match="64 bytes"):
        SignedQeIdentity.from_parts(doc.body, doc.signature[:63])


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
separators = st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")])


@settings(max_examples=150, deadline=None)
@given(
    inner=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    others=st.dictionaries(
        st.text(max_size=6).filter(lambda k: k != "tcbInfo"), json_values, max_size=3
    ),
    position=st.integers(0, 3),
    indent=st.sampled_from([None, 0, 2]),
    seps=separators,
    ensure_ascii=st.booleans(),
)
def test_extraction_returns_exact_bytes_of_any_member(
    inner: dict[str, object],
    others: dict[str, object],
    position: int,
    indent: int | None,
    seps: tuple[str, str],
    ensure_ascii: bool,
) -> None:
    body = json.dumps(inner, indent=indent, separators=seps, ensure_ascii=ensure_ascii)
    members = [json.dumps(k) + ":" + json.dumps(v) for k, v in others.items()]
    members.insert(min(position, len(members)), '"tcbInfo" : ' + body)
    document = "{ " + " ,\n".join(members) + " }"
    extracted, value, _ = extract_signed_value(document.encode("utf-8"), "tcbInfo")
    assert extracted == body.encode("utf-8")
    assert value == inner


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_extraction_on_arbitrary_bytes_only_raises_invalid_collateral(data: bytes) -> None:
    try:
        extract_signed_value(data, "tcbInfo")
    except InvalidCollateral:
        pass


def test_lone_surrogates_in_text_input_are_rejected_not_crashing() -> None:
    with pytest.raises(InvalidCollateral, match="not encodable as UTF-8"):
        extract_signed_value('{"tcbInfo": {"a": "\ud800"}}', "tcbInfo")
    with pytest.raises(InvalidCollateral, match="not encodable as UTF-8"):
        SignedTcbInfo.from_parts('{"a": "\ud800"}', bytes(64))
    with pytest.raises(InvalidCollateral, match="not encodable as UTF-8"):
        Collateral.from_json(
            '{"tcb_info": "{\\"a\\": \\"\ud800\\"}", "tcb_info_signature": "' + "00" * 64 + '"}'
        )
