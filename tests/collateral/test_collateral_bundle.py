"""The 9-part bundle: dcap-qvl JSON, raw PCS responses, Fortanix wrappers, faithful to_json."""

from __future__ import annotations

import json
import urllib.parse
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode import InvalidCollateral
from confnode.collateral import (
    Collateral,
    SignedQeIdentity,
    SignedTcbInfo,
    parse_signature_der,
)

BUNDLES = ["sgx_quote", "tdx_quote", "tdx_quote_outdated"]

#: Windows from the vector README: (latest issue, earliest nextUpdate) over TCB Info, QE Identity
#: and both CRLs.
WINDOWS = {
    "sgx_quote": ("2025-06-19T10:56:11Z", "2025-07-19T10:01:18Z"),
    "tdx_quote": ("2025-06-19T10:32:27Z", "2025-07-19T10:00:35Z"),
    "tdx_quote_outdated": ("2026-02-18T10:58:51Z", "2026-03-20T10:41:15Z"),
}


def _dt(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _bundle_text(directory: Path, name: str) -> str:
    return (directory / f"{name}_collateral.json").read_text()


# ------------------------------------------------------------------------------- dcap-qvl JSON


@pytest.mark.parametrize("name", BUNDLES)
def test_dcap_qvl_bundle_loads_with_all_parts(dcap_qvl_dir: Path, name: str) -> None:
    text = _bundle_text(dcap_qvl_dir, name)
    raw = json.loads(text)
    bundle = Collateral.from_json(text)
    assert bundle.tee == ("SGX" if name == "sgx_quote" else "TDX")
    assert bundle.qe_identity.identity.id == ("QE" if name == "sgx_quote" else "TD_QE")
    assert bundle.tcb_info.body == raw["tcb_info"].encode()
    assert bundle.qe_identity.body == raw["qe_identity"].encode()
    assert bundle.tcb_info.signature.hex() == raw["tcb_info_signature"]
    assert bundle.qe_identity.signature.hex() == raw["qe_identity_signature"]
    assert bundle.pck_crl is not None and bundle.root_ca_crl is not None
    assert bundle.pck_crl.public_bytes(Encoding.DER) == bytes.fromhex(raw["pck_crl"])
    assert bundle.root_ca_crl.public_bytes(Encoding.DER) == bytes.fromhex(raw["root_ca_crl"])
    for chain in (
        bundle.pck_crl_issuer_chain,
        bundle.tcb_info_issuer_chain,
        bundle.qe_identity_issuer_chain,
    ):
        assert len(chain) == 2
        assert "SGX Root CA" in chain[1].subject.rfc4514_string()
    issued, expires = WINDOWS[name]
    assert bundle.latest_issue_date == _dt(issued)
    assert bundle.earliest_next_update == _dt(expires)
    assert set(bundle.next_update_dates()) == {"tcb_info", "qe_identity", "pck_crl", "root_ca_crl"}


@pytest.mark.parametrize("name", BUNDLES)
def test_to_json_is_faithful_and_round_trips(dcap_qvl_dir: Path, name: str) -> None:
    text = _bundle_text(dcap_qvl_dir, name)
    bundle = Collateral.from_json(text)
    out = bundle.to_json()
    assert json.loads(out) == json.loads(text)
    again = Collateral.from_json(out)
    assert again == bundle
    assert hash(again) == hash(bundle)
    assert again.tcb_info.body == bundle.tcb_info.body
    assert again.qe_identity.body == bundle.qe_identity.body


def test_dcap_qvl_accepts_our_json_and_verifies_with_it(dcap_qvl_dir: Path) -> None:
    bundle = Collateral.from_json(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    theirs = dcap_qvl.QuoteCollateralV3.from_json(bundle.to_json())
    assert theirs.tcb_info.encode() == bundle.tcb_info.body
    assert theirs.qe_identity.encode() == bundle.qe_identity.body
    assert bundle.pck_crl is not None
    assert theirs.pck_crl == bundle.pck_crl.public_bytes(Encoding.DER)
    quote = (dcap_qvl_dir / "sgx_quote").read_bytes()
    at = int(datetime(2025, 7, 1, tzinfo=UTC).timestamp())
    report = dcap_qvl.verify(quote, theirs, at)
    assert report.status == "ConfigurationAndSWHardeningNeeded"


def test_bundle_is_weak_referenceable_and_hashable(dcap_qvl_dir: Path) -> None:
    bundle = Collateral.from_json(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    assert weakref.ref(bundle)() is bundle
    assert {bundle: 1}[Collateral.from_json(bundle.to_json())] == 1


def test_chains_given_as_lists_are_frozen(dcap_qvl_dir: Path) -> None:
    """Verifiers cache per bundle object, so its chains must not change after construction."""
    parsed = Collateral.from_json(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    chain = list(parsed.tcb_info_issuer_chain)
    bundle = Collateral(
        pck_crl_issuer_chain=list(parsed.pck_crl_issuer_chain),  # type: ignore[arg-type]
        root_ca_crl=parsed.root_ca_crl,
        pck_crl=parsed.pck_crl,
        tcb_info_issuer_chain=chain,  # type: ignore[arg-type]
        tcb_info=parsed.tcb_info,
        qe_identity_issuer_chain=list(parsed.qe_identity_issuer_chain),  # type: ignore[arg-type]
        qe_identity=parsed.qe_identity,
    )
    chain.reverse()
    assert bundle.tcb_info_issuer_chain == parsed.tcb_info_issuer_chain
    assert isinstance(bundle.pck_crl_issuer_chain, tuple)
    assert bundle == parsed and hash(bundle) == hash(parsed)


def test_from_json_accepts_der_pem_and_byte_arrays_for_crls(dcap_qvl_dir: Path) -> None:
    text = _bundle_text(dcap_qvl_dir, "sgx_quote")
    reference = Collateral.from_json(text)
    assert reference.pck_crl is not None and reference.root_ca_crl is not None
    doc = json.loads(text)
    doc["pck_crl"] = reference.pck_crl.public_bytes(Encoding.PEM).decode()
    doc["root_ca_crl"] = list(reference.root_ca_crl.public_bytes(Encoding.DER))
    doc["tcb_info_signature"] = list(reference.tcb_info.signature)
    assert Collateral.from_json(json.dumps(doc)) == reference


def test_from_json_accepts_whole_pcs_bodies(dcap_qvl_dir: Path) -> None:
    text = _bundle_text(dcap_qvl_dir, "tdx_quote")
    reference = Collateral.from_json(text)
    doc = json.loads(text)
    doc["tcb_info"] = reference.tcb_info.to_pcs_body().decode()
    doc["qe_identity"] = reference.qe_identity.to_pcs_body().decode()
    del doc["tcb_info_signature"], doc["qe_identity_signature"]
    assert Collateral.from_json(json.dumps(doc)) == reference


@pytest.mark.parametrize("value", [None, "", "absent"])
def test_absent_crls_are_none_and_survive_round_trip(dcap_qvl_dir: Path, value: str | None) -> None:
    doc = json.loads(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    for key in ("pck_crl", "root_ca_crl", "pck_crl_issuer_chain"):
        if value == "absent":
            del doc[key]
        else:
            doc[key] = value
    bundle = Collateral.from_json(json.dumps(doc))
    assert bundle.pck_crl is None and bundle.root_ca_crl is None
    assert bundle.pck_crl_issuer_chain == ()
    assert set(bundle.next_update_dates()) == {"tcb_info", "qe_identity"}
    out = json.loads(bundle.to_json())
    assert (out["pck_crl"], out["root_ca_crl"], out["pck_crl_issuer_chain"]) == ("", "", "")
    assert Collateral.from_json(bundle.to_json()) == bundle


def _mutate(doc: dict[str, Any], key: str, value: Any) -> str:
    changed = dict(doc)
    if value is _DELETE:
        del changed[key]
    else:
        changed[key] = value
    return json.dumps(changed)


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tcb_info", _DELETE, "missing member 'tcb_info'"),
        ("tcb_info", 5, "'tcb_info' must be a string, found int"),
        ("tcb_info", "{", "TCB Info: not valid JSON"),
        ("tcb_info", "[]", "TCB Info: expected a JSON object, found list"),
        ("tcb_info", '{"version": 1}', "TCB Info: unsupported version 1"),
        ("tcb_info_signature", "00", "'tcb_info_signature': expected 128 hex digits"),
        ("tcb_info_signature", [1, 2], "must be 64 bytes raw r||s, found 2"),
        ("qe_identity_signature", {"r": 1}, "must be a string or an array of byte values"),
        ("qe_identity", '{"version": 3}', "Enclave Identity: unsupported version 3"),
        ("tcb_info_issuer_chain", "", "TCB Info issuer chain: missing"),
        ("qe_identity_issuer_chain", _DELETE, "missing member 'qe_identity_issuer_chain'"),
        ("qe_identity_issuer_chain", "PEM?", "QE Identity issuer chain: unexpected text"),
        ("pck_crl", "zz", "PCK CRL: expected DER"),
        ("root_ca_crl", [300], "'root_ca_crl' must be a string or an array of byte values"),
        ("pck_crl_issuer_chain", 7, "'pck_crl_issuer_chain' must be a string"),
    ],
)
def test_from_json_errors_are_precise(
    dcap_qvl_dir: Path, key: str, value: Any, message: str
) -> None:
    doc = json.loads(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    with pytest.raises(InvalidCollateral, match=message.replace("|", r"\|")):
        Collateral.from_json(_mutate(doc, key, value))


def test_from_json_rejects_non_objects_and_duplicates() -> None:
    with pytest.raises(InvalidCollateral, match="collateral JSON: expected a JSON object"):
        Collateral.from_json("[]")
    with pytest.raises(InvalidCollateral, match="duplicate key 'pck_crl'"):
        Collateral.from_json('{"pck_crl": "", "pck_crl": ""}')
    with pytest.raises(InvalidCollateral, match="not valid UTF-8"):
        Collateral.from_json(b"\xff")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_from_json_on_arbitrary_input_only_raises_invalid_collateral(data: str | bytes) -> None:
    try:
        Collateral.from_json(data)
    except InvalidCollateral:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_bundle_with_one_member_replaced_parses_or_raises_invalid_collateral(
    dcap_qvl_dir: Path, data: st.DataObject
) -> None:
    doc = json.loads(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    key = data.draw(st.sampled_from(sorted(doc)))
    original = doc[key]
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(original) - 1))
        value: Any = original[:index] + data.draw(st.text(max_size=3)) + original[index + 1 :]
    else:
        value = data.draw(json_values)
    try:
        Collateral.from_json(_mutate(doc, key, value))
    except InvalidCollateral:
        pass


# ------------------------------------------------------------------------------ raw PCS bodies


def _oasis_kwargs(oasis: Path) -> dict[str, Any]:
    chain = (oasis / "tcb_info_v3_fmspc_00606A000000_certs.pem").read_text()
    return {
        "tcb_info_body": (oasis / "tcb_info_v3_fmspc_00606A000000.json").read_bytes(),
        "tcb_info_issuer_chain": chain,
        "qe_identity_body": (oasis / "qe_identity_v2.json").read_bytes(),
        "qe_identity_issuer_chain": chain,
    }


def test_oasis_pcs_responses_without_crls(oasis_dir: Path) -> None:
    kwargs = _oasis_kwargs(oasis_dir)
    bundle = Collateral.from_pcs_responses(**kwargs)
    assert bundle.pck_crl is None and bundle.root_ca_crl is None
    assert bundle.pck_crl_issuer_chain == ()
    assert bundle.tcb_info.info.fmspc == bytes.fromhex("00606A000000")
    assert bundle.qe_identity.identity.tcb_levels[0].isvsvn == 6
    assert bundle.tcb_info_issuer_chain[0].not_valid_after_utc.year == 2025
    raw = kwargs["tcb_info_body"]
    assert bundle.tcb_info.body in raw
    out = json.loads(bundle.to_json())
    assert out["tcb_info_issuer_chain"] == kwargs["tcb_info_issuer_chain"]
    assert Collateral.from_json(bundle.to_json()) == bundle


def test_percent_encoded_header_chains_equal_plain_ones(oasis_dir: Path) -> None:
    kwargs = _oasis_kwargs(oasis_dir)
    plain = Collateral.from_pcs_responses(**kwargs)
    encoded = dict(kwargs)
    encoded["tcb_info_issuer_chain"] = urllib.parse.quote(kwargs["tcb_info_issuer_chain"])
    encoded["qe_identity_issuer_chain"] = urllib.parse.quote(
        kwargs["qe_identity_issuer_chain"]
    ).encode()
    bundle = Collateral.from_pcs_responses(**encoded)
    assert bundle == plain
    assert (
        json.loads(bundle.to_json())["qe_identity_issuer_chain"]
        == kwargs["qe_identity_issuer_chain"]
    )


def test_pcs_responses_with_crls_in_every_encoding(
    oasis_dir: Path, fortanix_dir: Path, dcap_qvl_dir: Path
) -> None:
    kwargs = _oasis_kwargs(oasis_dir)
    processor = json.loads((fortanix_dir / "processor.crl").read_text())
    root_der = (fortanix_dir / "IntelSGXRootCA.der").read_bytes()
    bundle = Collateral.from_pcs_responses(
        **kwargs,
        pck_crl=processor["crl"],
        pck_crl_issuer_chain=urllib.parse.quote("".join(processor["ca_chain"])),
        root_ca_crl=root_der.hex(),
    )
    assert bundle.root_ca_crl is not None and bundle.pck_crl is not None
    assert bundle.root_ca_crl.public_bytes(Encoding.DER) == root_der
    assert len(bundle.pck_crl_issuer_chain) == 2
    assert Collateral.from_json(bundle.to_json()) == bundle


def test_bad_chain_file_still_parses_as_certificates(oasis_dir: Path) -> None:
    kwargs = _oasis_kwargs(oasis_dir)
    kwargs["tcb_info_issuer_chain"] = (
        oasis_dir / "tcb_info_v3_fmspc_00606A000000_certs_bad.pem"
    ).read_text()
    good = Collateral.from_pcs_responses(**_oasis_kwargs(oasis_dir))
    bad = Collateral.from_pcs_responses(**kwargs)
    assert bad.tcb_info_issuer_chain != good.tcb_info_issuer_chain
    assert bad != good


# ----------------------------------------------------------------------------- Fortanix wrappers


def test_fortanix_wrappers_through_general_constructor(fortanix_dir: Path) -> None:
    tcb = json.loads((fortanix_dir / "00906ea10000.tcb").read_text())
    qe = json.loads((fortanix_dir / "qe3_identity.id").read_text())
    processor = json.loads((fortanix_dir / "processor.crl").read_text())
    bundle = Collateral.from_parts(
        tcb_info=SignedTcbInfo.from_parts(
            tcb["raw_tcb_info"], parse_signature_der(tcb["signature"])
        ),
        tcb_info_issuer_chain="\n".join(tcb["ca_chain"]),
        qe_identity=SignedQeIdentity.from_parts(
            qe["raw_enclave_identity"], parse_signature_der(qe["signature"])
        ),
        qe_identity_issuer_chain="\n".join(qe["ca_chain"]),
        pck_crl=processor["crl"],
        pck_crl_issuer_chain="\n".join(processor["ca_chain"]),
        root_ca_crl=(fortanix_dir / "IntelSGXRootCA.der").read_bytes(),
    )
    assert bundle.tcb_info.info.version == 2
    assert bundle.tcb_info.body == tcb["raw_tcb_info"].encode()
    assert bundle.issue_dates()["pck_crl"] == datetime(2020, 5, 18, 17, 49, 21, tzinfo=UTC)
    assert bundle.next_update_dates()["root_ca_crl"].year == 2027
    again = Collateral.from_json(bundle.to_json())
    assert again == bundle
    with_certs = Collateral.from_parts(
        tcb_info=bundle.tcb_info,
        tcb_info_issuer_chain=bundle.tcb_info_issuer_chain,
        qe_identity=bundle.qe_identity,
        qe_identity_issuer_chain=list(bundle.qe_identity_issuer_chain),
        pck_crl=bundle.pck_crl,
        pck_crl_issuer_chain=bundle.pck_crl_issuer_chain,
        root_ca_crl=bundle.root_ca_crl,
    )
    assert with_certs == bundle
    assert Collateral.from_json(with_certs.to_json()) == bundle


def test_fortanix_raw_pcs_files(fortanix_dir: Path, oasis_dir: Path) -> None:
    chain = (oasis_dir / "tcb_info_v3_fmspc_00606A000000_certs.pem").read_text()
    bundle = Collateral.from_pcs_responses(
        tcb_info_body=(fortanix_dir / "tcb-json" / "tcb-sgx.json").read_text(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=(fortanix_dir / "qe-identity" / "qeid-sgx.json").read_text(),
        qe_identity_issuer_chain=chain,
        root_ca_crl=(fortanix_dir / "IntelSGXRootCA.crl").read_text(),
    )
    assert bundle.tcb_info.info.fmspc == bytes.fromhex("00A06D080000")
    assert bundle.tcb_info.info.tcb_evaluation_data_number == 18
    assert bundle.qe_identity.identity.tcb_evaluation_data_number == 18


def test_from_parts_type_checks_inputs(dcap_qvl_dir: Path) -> None:
    bundle = Collateral.from_json(_bundle_text(dcap_qvl_dir, "sgx_quote"))
    with pytest.raises(InvalidCollateral, match="tcb_info: expected SignedTcbInfo"):
        Collateral.from_parts(
            tcb_info=bundle.qe_identity,  # type: ignore[arg-type]
            tcb_info_issuer_chain=bundle.tcb_info_issuer_chain,
            qe_identity=bundle.qe_identity,
            qe_identity_issuer_chain=bundle.qe_identity_issuer_chain,
        )
    with pytest.raises(InvalidCollateral, match="expected PEM text or a sequence of certificates"):
        Collateral.from_parts(
            tcb_info=bundle.tcb_info,
            tcb_info_issuer_chain=["not a cert"],  # type: ignore[list-item]
            qe_identity=bundle.qe_identity,
            qe_identity_issuer_chain=bundle.qe_identity_issuer_chain,
        )
