"""``attestation serve``'s wiring of ``/attest/TdxVm``: TDX collateral from a PCCS (its ``/tdx``
routes, CRLs from ``/sgx``) or from offline bundles, and a TdxVm policy file of its own."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from attestation_testlib import b64url, token_payload
from cryptography import x509

from confnode.attestation import unsigned_policy_jws
from confnode.attestation._server import Settings, build_service
from confnode.attestation._tdx import tdx_policy_file
from confnode.pccs import FetchResponse, TdxRoutes
from confnode.pccs.server import create_app
from confnode.sim import SimPlatform
from confnode.sim.tdx import SimTdxPlatform

TDX = "/attest/TdxVm?api-version=2025-06-01"


@pytest.fixture(scope="module")
def platform() -> SimPlatform:
    return SimPlatform(seed="tdx serve", tcb="SWHardeningNeeded", ca="platform")


@pytest.fixture(scope="module")
def pccs(
    platform: SimPlatform, serve_app: Callable[..., AbstractContextManager[str]]
) -> Iterator[str]:
    with serve_app(create_app(platform)) as url:
        yield url


def _settings(tmp_path: Path, platform: SimPlatform, **kwargs: Any) -> Settings:
    root = tmp_path / "root.der"
    root.write_bytes(platform.root_certificate())
    options: dict[str, Any] = {
        "signing_key_dir": str(tmp_path / "signing"),
        "insecure_http": True,
        "trust_root": str(root),
        "allow_simulated": True,
        "policy_file": str(tmp_path / "policy.json"),
        "insecure_unsigned_policy_changes": True,
    }
    options.update(kwargs)
    return Settings(**options)


async def _attest(settings: Settings, quote: bytes) -> httpx.Response:
    app = build_service(settings).app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(TDX, json={"quote": b64url(quote)})


async def test_serve_attests_a_td_with_collateral_from_the_pccs(
    tmp_path: Path, platform: SimPlatform, pccs: str
) -> None:
    tdx = SimTdxPlatform(platform)
    settings = _settings(tmp_path, platform, pccs_url=pccs, collateral_dir=str(tmp_path / "c"))
    response = await _attest(settings, tdx.quote(tdx.td_report(b"served")))
    assert response.status_code == 200, response.text
    claims = token_payload(response.json()["token"])
    assert claims["attester_tcb_status"] == "SWHardeningNeeded"
    assert claims["x-confnode-fmspc"] == tdx.fmspc.hex().upper()
    # The TDX collateral is cached apart from the SGX collateral.
    assert list((tmp_path / "c" / "tdx").iterdir())


async def test_a_revoked_td_pck_is_on_the_pccs_crl_and_refused(
    tmp_path: Path, serve_app: Callable[..., AbstractContextManager[str]]
) -> None:
    """The simulated PCCS serves one PCK CRL per CA for the whole host: it lists the TDX host's
    revoked PCK (Platform CA) even when the SGX platform's PCK is under the Processor CA. It
    used to be only in the TDX collateral bundle, so a TD on a revoked host attested through
    the PCCS."""
    revoked = SimPlatform(seed="tdx revoked", ca="processor", revoked_pck=True)
    tdx = SimTdxPlatform(revoked)
    settings = _settings(tmp_path, revoked, collateral_dir=str(tmp_path / "c"))
    with serve_app(create_app(revoked)) as url:
        crl = httpx.get(
            f"{url}/sgx/certification/v4/pckcrl", params={"ca": "platform"}, trust_env=False
        )
        response = await _attest(
            replace(settings, pccs_url=url), tdx.quote(tdx.td_report(b"revoked"))
        )
    listed = x509.load_pem_x509_crl(crl.content)
    assert listed.get_revoked_certificate_by_serial_number(tdx.pck_certificate.serial_number)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["innererror"]["code"] == "QuoteRevoked"


async def test_serve_attests_a_td_from_offline_bundles(
    tmp_path: Path, platform: SimPlatform
) -> None:
    tdx = SimTdxPlatform(platform)
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    now = datetime.now(UTC)
    (bundles / "sgx.json").write_text(platform.collateral_json(now))
    (bundles / "tdx.json").write_text(tdx.collateral_json(now))
    settings = _settings(tmp_path, platform, collateral_dir=str(bundles))
    response = await _attest(settings, tdx.quote(tdx.td_report(b"offline")))
    assert response.status_code == 200, response.text
    (bundles / "tdx.json").unlink()  # without the TDX bundle: collateral unavailable
    response = await _attest(settings, tdx.quote(tdx.td_report(b"offline")))
    assert response.status_code == 503


async def test_offline_sgx_and_tdx_bundles_of_one_fmspc_do_not_mix(
    tmp_path: Path, platform: SimPlatform
) -> None:
    """On real hardware SGX and TDX share the platform's PCK certificate, hence its FMSPC: the
    TDX bundle in the same offline directory must not take the SGX bundle's place."""
    tdx = SimTdxPlatform(platform, fmspc=platform.fmspc.hex())
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    now = datetime.now(UTC)
    (bundles / "a-sgx.json").write_text(platform.collateral_json(now))
    (bundles / "b-tdx.json").write_text(tdx.collateral_json(now))
    service = build_service(_settings(tmp_path, platform, collateral_dir=str(bundles)))
    enclave = platform.enclave()
    quote = platform.quote(enclave.report(platform.quoting_enclave.target_info()))
    transport = httpx.ASGITransport(app=service.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        sgx = await client.post(
            "/attest/SgxEnclave?api-version=2025-06-01", json={"quote": b64url(quote)}
        )
        td = await client.post(TDX, json={"quote": b64url(tdx.quote(tdx.td_report()))})
    assert sgx.status_code == 200, sgx.text
    assert td.status_code == 200, td.text


async def test_the_tdxvm_policy_has_its_own_file(
    tmp_path: Path, platform: SimPlatform, pccs: str
) -> None:
    settings = _settings(tmp_path, platform, pccs_url=pccs)
    strict = "version=1.0; authorizationrules { => deny(); }; issuancerules { };"
    transport = httpx.ASGITransport(app=build_service(settings).app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        put = await client.put("/policies/TdxVm", content=unsigned_policy_jws(strict))
    assert put.status_code == 200, put.text
    tdx_file = tdx_policy_file(settings.policy_file)
    assert tdx_file == tmp_path / "policy.TdxVm.json"
    assert json.loads(tdx_file.read_text())["text"] == strict
    assert not (tmp_path / "policy.json").exists()  # the SgxEnclave policy is untouched
    # Another replica (a new service on the same files) sees the TdxVm policy.
    tdx = SimTdxPlatform(platform)
    response = await _attest(settings, tdx.quote(tdx.td_report()))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PolicyEvaluationError"


class _Recorder:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
        self.urls.append(url)
        return FetchResponse(200, {}, b"")


def test_tdx_routes_redirect_only_tcb_info_and_qe_identity() -> None:
    inner = _Recorder()
    routes = TdxRoutes(inner, "https://pccs.example/sgx/certification/v4")
    for route in ("/tcb", "/qe/identity", "/pckcrl", "/rootcacrl"):
        routes.get(f"https://pccs.example/sgx/certification/v4{route}", {})
    assert inner.urls == [
        "https://pccs.example/tdx/certification/v4/tcb",
        "https://pccs.example/tdx/certification/v4/qe/identity",
        "https://pccs.example/sgx/certification/v4/pckcrl",
        "https://pccs.example/sgx/certification/v4/rootcacrl",
    ]
