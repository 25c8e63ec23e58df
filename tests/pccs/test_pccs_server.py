"""The simulated PCS/PCCS serves Intel's routes, headers and encodings."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote

import dcap_qvl
import httpx
import pytest
from cryptography import x509

from confnode.collateral import Collateral, parse_pem_chain
from confnode.sim import SimPlatform

V4 = "/sgx/certification/v4"


def _get(url: str, params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, params=params, trust_env=False)  # straight to 127.0.0.1, no proxy


def _quote(platform: SimPlatform) -> bytes:
    return platform.quote(platform.enclave().report(platform.quoting_enclave.target_info(), b"p"))


def test_tcb_info_route(live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime) -> None:
    r = _get(f"{live_pccs}{V4}/tcb", params={"fmspc": pccs_platform.fmspc.hex()})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    expected = pccs_platform.pcs_responses(pccs_at)
    assert r.text == expected.tcb_info
    chain = r.headers["TCB-Info-Issuer-Chain"]
    assert "%0A" in chain and " " not in chain  # percent-encoded PEM, like Intel's
    assert unquote(chain) == expected.tcb_info_issuer_chain


def test_qe_identity_route(live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime) -> None:
    r = _get(f"{live_pccs}{V4}/qe/identity")
    assert r.status_code == 200
    assert r.text == pccs_platform.pcs_responses(pccs_at).qe_identity
    certs = parse_pem_chain(r.headers["SGX-Enclave-Identity-Issuer-Chain"])
    assert certs[0] == pccs_platform.pki.tcb_signing_cert


@pytest.mark.parametrize("ca", ["processor", "platform"])
def test_pck_crl_route_pem_and_der(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime, ca: str
) -> None:
    der = pccs_platform.pcs_responses(pccs_at).pck_crls[ca]
    pem = _get(f"{live_pccs}{V4}/pckcrl", params={"ca": ca})
    assert pem.status_code == 200 and pem.text.startswith("-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem.content) == x509.load_der_x509_crl(der)
    raw = _get(f"{live_pccs}{V4}/pckcrl", params={"ca": ca.upper(), "encoding": "der"})
    assert raw.content == der
    issuer = parse_pem_chain(raw.headers["SGX-PCK-CRL-Issuer-Chain"])[0]
    assert issuer == pccs_platform.pki.intermediate(ca)[1]  # type: ignore[arg-type]


def test_root_ca_crl_is_hex_like_pccs(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    r = _get(f"{live_pccs}{V4}/rootcacrl")
    assert r.status_code == 200
    assert bytes.fromhex(r.text) == pccs_platform.pcs_responses(pccs_at).root_ca_crl


def test_pck_certificate_by_platform_identifiers(
    live_pccs: str, pccs_platform: SimPlatform
) -> None:
    ext = pccs_platform.pck_extension
    params = {
        "qeid": pccs_platform.qe_id.hex(),
        "cpusvn": ext.tcb.cpusvn.hex(),
        "pcesvn": ext.tcb.pcesvn.to_bytes(2, "little").hex(),
        "pceid": "0000",
    }
    r = _get(f"{live_pccs}{V4}/pckcert", params=params)
    assert r.status_code == 200
    assert x509.load_pem_x509_certificate(r.content) == pccs_platform.pck_certificate
    assert r.headers["SGX-FMSPC"] == pccs_platform.fmspc.hex().upper()
    assert r.headers["SGX-PCK-Certificate-CA-Type"] == "platform"
    tcbm = bytes.fromhex(r.headers["SGX-TCBm"])
    assert tcbm == ext.tcb.cpusvn + ext.tcb.pcesvn.to_bytes(2, "little")
    issuers = parse_pem_chain(r.headers["SGX-PCK-Certificate-Issuer-Chain"])
    assert issuers[-1] == pccs_platform.pki.root_cert
    unknown = _get(f"{live_pccs}{V4}/pckcert", params={**params, "qeid": "00" * 16})
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/tcb", {"fmspc": "00A067110000"}, 404),
        ("/tcb", {"fmspc": "xyz"}, 400),
        ("/tcb", {}, 400),
        (
            "/tcb",
            {"fmspc": "53494D000000", "update": "early", "tcbEvaluationDataNumber": "17"},
            400,
        ),
        ("/tcb", {"fmspc": "53494D000000", "tcbEvaluationDataNumber": "3"}, 404),
        ("/pckcrl", {"ca": "root"}, 400),
        ("/pckcrl", {"ca": "processor", "encoding": "base64"}, 400),
        ("/pckcert", {"qeid": "00"}, 400),
        ("/pckcert", {"qeid": "", "cpusvn": "00" * 16, "pcesvn": "0000", "pceid": "0000"}, 400),
        (
            "/pckcert",
            {"encrypted_ppid": "zz", "cpusvn": "00" * 16, "pcesvn": "0000", "pceid": "0000"},
            400,
        ),
        ("/tcb", {"fmspc": "53494D000000", "tcbEvaluationDataNumber": "\u0661\u0667"}, 400),
        ("/nonexistent", {}, 404),
    ],
)
def test_bad_requests_get_intel_status_codes(
    live_pccs: str, pccs_platform: SimPlatform, path: str, params: dict[str, str], status: int
) -> None:
    if pccs_platform.fmspc.hex().upper() != "53494D000000":
        pytest.fail("test table assumes the default simulated FMSPC")
    r = _get(f"{live_pccs}{V4}{path}", params=params)
    assert r.status_code == status
    if path != "/nonexistent":
        assert r.headers.get("Error-Code")


async def test_dcap_qvl_fetches_and_verifies_from_the_simulated_pccs(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    """An independent client (dcap-qvl's PCCS fetcher) understands the simulated service."""
    quote = _quote(pccs_platform)
    fetched = await dcap_qvl.get_collateral(live_pccs, quote)
    ours = Collateral.from_json(fetched.to_json())
    assert ours == pccs_platform.collateral(pccs_at)
    report = dcap_qvl.verify_with_root_ca(
        quote, fetched, pccs_platform.root_certificate(), int(pccs_at.timestamp())
    )
    assert report.status == "SWHardeningNeeded"
