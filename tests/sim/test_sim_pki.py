"""The simulated PKI has Intel's shapes, says it is a simulation, and is deterministic."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.collateral import Collateral, parse_crl
from confnode.errors import InfrastructureError, InvalidInput
from confnode.sgx import parse_pck_extension
from confnode.sim import SimConfig, SimPlatform
from confnode.sim.tcb import platform_tcb


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    return cert.issuer == issuer.subject


def test_root_says_it_is_a_simulation(make_platform: Callable[..., SimPlatform]) -> None:
    root = make_platform().pki.root_cert
    assert root.subject == root.issuer
    assert "SGX Root CA" in _cn(root) and "SIMULATED" in _cn(root)
    orgs = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert "simulation" in str(orgs[0].value) and "Intel" not in _cn(root)
    assert _signed_by(root, root)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1


@pytest.mark.parametrize("ca", ["processor", "platform"])
def test_pck_chain_profiles_match_intel(make_platform: Callable[..., SimPlatform], ca: str) -> None:
    platform = make_platform(ca=ca)
    leaf, intermediate, root = x509.load_pem_x509_certificates(platform.pck_chain_pem.encode())
    assert "SGX PCK Certificate" in _cn(leaf)
    assert _cn(intermediate).endswith(f"PCK {ca.capitalize()} CA")
    assert _signed_by(leaf, intermediate) and _signed_by(intermediate, root)
    leaf_ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert leaf_ku.critical and leaf_ku.value.digital_signature and leaf_ku.value.content_commitment
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_ku = intermediate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign
    assert (
        intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        == 0
    )
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert f"pckcrl?ca={ca}" in str(cdp[0].full_name[0].value)  # type: ignore[index]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


@pytest.mark.parametrize("ca", ["processor", "platform"])
@pytest.mark.parametrize("status", ["UpToDate", "OutOfDate"])
def test_pck_extension_parses_with_confnode_and_dcap_qvl(
    make_platform: Callable[..., SimPlatform], ca: str, status: str
) -> None:
    platform = make_platform(ca=ca, tcb=status)
    comps, pcesvn = platform_tcb(status)
    ours = parse_pck_extension(platform.pck_certificate)
    theirs = dcap_qvl.parse_pck_extension_from_pem(platform.pck_chain_pem.encode())
    assert ours.tcb.comp_svns == comps and ours.tcb.pcesvn == pcesvn
    assert theirs.pce_svn == pcesvn and theirs.cpu_svn == bytes(comps)
    assert theirs.fmspc == ours.fmspc == platform.fmspc
    assert theirs.ppid == ours.ppid and len(ours.ppid) == 16
    assert theirs.sgx_type == ours.sgx_type == (1 if ca == "platform" else 0)
    if ca == "platform":
        assert theirs.platform_instance_id == ours.platform_instance_id is not None
        assert ours.configuration is not None
    else:
        assert theirs.platform_instance_id is None and ours.configuration is None


def test_tcb_signing_cert_signs_collateral_exact_bytes(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    responses = platform.pcs_responses(sim_at)
    signer = platform.pki.tcb_signing_cert
    assert "SGX TCB Signing" in _cn(signer) and _signed_by(signer, platform.pki.root_cert)
    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for body, sig in (
        (responses.tcb_info_body, responses.tcb_info_signature),
        (responses.qe_identity_body, responses.qe_identity_signature),
    ):
        from confnode.collateral import signature_to_der

        key.verify(signature_to_der(sig), body.encode(), ec.ECDSA(hashes.SHA256()))
        assert json.dumps(json.loads(body), separators=(",", ":")) == body  # compact, Intel-like
    wrapped = json.loads(responses.tcb_info)
    assert list(wrapped) == ["tcbInfo", "signature"]
    assert responses.tcb_info.startswith('{"tcbInfo":' + responses.tcb_info_body + ",")


def test_revoked_pck_is_listed_in_its_ca_crl_only(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform(revoked_pck=True)
    responses = platform.pcs_responses(sim_at)
    serial = platform.pck_certificate.serial_number
    processor = parse_crl(responses.pck_crls["processor"])
    platform_crl = parse_crl(responses.pck_crls["platform"])
    assert processor.get_revoked_certificate_by_serial_number(serial) is not None
    assert platform_crl.get_revoked_certificate_by_serial_number(serial) is None
    assert processor.issuer == platform.pki.processor_ca_cert.subject
    clean = make_platform()
    assert (
        parse_crl(
            clean.pcs_responses(sim_at).pck_crls["processor"]
        ).get_revoked_certificate_by_serial_number(clean.pck_certificate.serial_number)
        is None
    )


def test_same_seed_gives_identical_bytes(sim_at: datetime) -> None:
    a = SimPlatform(seed="determinism", tcb="OutOfDate", ca="platform")
    b = SimPlatform(seed="determinism", tcb="OutOfDate", ca="platform")
    assert a.pck_chain_pem == b.pck_chain_pem
    assert a.root_certificate() == b.root_certificate()
    assert a.collateral_json(sim_at) == b.collateral_json(sim_at)
    report = a.enclave().report(a.quoting_enclave.target_info(), b"x")
    assert b.enclave().report(b.quoting_enclave.target_info(), b"x") == report
    assert a.quote(report) == b.quote(report)  # RFC 6979 signatures: fully reproducible
    c = SimPlatform(seed="another seed", tcb="OutOfDate", ca="platform")
    assert c.root_certificate() != a.root_certificate()


def test_collateral_dates_follow_at_or_explicit_values(
    make_platform: Callable[..., SimPlatform], sim_at: datetime
) -> None:
    platform = make_platform()
    collateral = platform.collateral(sim_at)
    midnight = sim_at.replace(hour=0, minute=0, second=0)
    assert collateral.tcb_info.info.issue_date == midnight
    assert collateral.earliest_next_update == midnight + timedelta(days=30)
    assert collateral == Collateral.from_json(platform.collateral_json(sim_at))
    issued, expires = sim_at - timedelta(days=40), sim_at - timedelta(days=5)
    stale = platform.collateral(issue_date=issued, next_update=expires)
    assert stale.qe_identity.identity.issue_date == issued.replace(microsecond=0)
    assert stale.pck_crl is not None and stale.pck_crl.next_update_utc == expires
    with pytest.raises(InvalidInput):
        platform.collateral(issue_date=sim_at, next_update=sim_at)


def test_state_dir_survives_reload(tmp_path: Path, sim_at: datetime) -> None:
    state = tmp_path / "node"
    first = SimPlatform(state, seed="persist", tcb="SWHardeningNeeded", ca="platform")
    again = SimPlatform(state)
    assert again.config == first.config
    assert again.pck_chain_pem == first.pck_chain_pem
    assert again.quoting_enclave.pub_key_id == first.quoting_enclave.pub_key_id
    assert again.collateral_json(sim_at) == first.collateral_json(sim_at)
    report = first.enclave().report(again.quoting_enclave.target_info(), b"cross-restart")
    assert again.quote(report)[48:432] == report[:384]
    assert oct((state / "keys" / "pck.key.pem").stat().st_mode & 0o777) == "0o600"
    loaded = serialization.load_pem_private_key(
        (state / "keys" / "root-ca.key.pem").read_bytes(), None
    )
    assert loaded.public_key() == first.pki.root_cert.public_key()


def test_state_dir_refuses_conflicting_options(tmp_path: Path) -> None:
    SimPlatform(tmp_path, seed="conflict", tcb="UpToDate")
    assert SimPlatform(tmp_path, seed="conflict", tcb="UpToDate").tcb_status == "UpToDate"
    with pytest.raises(InvalidInput, match="tcb='UpToDate'"):
        SimPlatform(tmp_path, tcb="OutOfDate")
    with pytest.raises(InvalidInput, match="seed"):
        SimPlatform(tmp_path, seed="other")


def test_corrupt_or_missing_state_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="no simulated platform"):
        SimPlatform.load(tmp_path / "absent")
    SimPlatform(tmp_path, seed="corrupt")
    (tmp_path / "certs" / "pck.pem").write_text("not a certificate")
    with pytest.raises(InvalidInput, match="corrupt"):
        SimPlatform.load(tmp_path)
    (tmp_path / "config.json").write_text('{"tcb": "Sideways"}')
    with pytest.raises(InvalidInput, match="Sideways"):
        SimPlatform.load(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"tcb": "Great"}, {"ca": "root"}, {"fmspc": "XYZ"}, {"fmspc": "00"}, {"qe_svn": 70000}],
)
def test_bad_configuration_is_invalid_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        SimPlatform(**kwargs)  # type: ignore[arg-type]


_JSON_SCALARS = st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=30)
_CONFIG_KEYS = st.sampled_from([f.name for f in fields(SimConfig)] + ["extra"])


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(_CONFIG_KEYS, _JSON_SCALARS | st.sampled_from(["UpToDate", "platform"]))
    | st.lists(_JSON_SCALARS, max_size=3)
    | _JSON_SCALARS
)
def test_config_parser_accepts_valid_or_raises_invalid_input(document: object) -> None:
    text = json.dumps(document)
    try:
        config = SimConfig.from_json(text)
    except InvalidInput:
        return
    assert SimConfig.from_json(config.to_json()) == config
    assert isinstance(config.seed_bytes, bytes) and len(config.fmspc_bytes) == 6


def test_config_parser_rejects_non_json() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        SimConfig.from_json("{tcb: UpToDate")
