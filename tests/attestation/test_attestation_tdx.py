"""``POST /attest/TdxVm``: simulated TDs and the real TDX vectors, MAA's request and claims, the
TdxVm policy and key release to a TD-bound key. The service runs in-process (ASGI) with the real
DCAP appraisers; requests are shaped as MAA documents them (REST ``Attestation - Attest Tdx Vm``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from attestation_testlib import ISSUER, SIM_ISSUER, attest_body, b64url, token_payload
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from confnode.attestation import AttestationService, KeyStore, PolicyStore, unsigned_policy_jws
from confnode.attestation._claims import incoming_claims, parse_attest_request
from confnode.attestation._dcap import DcapAppraiser
from confnode.attestation._tdx import (
    DEFAULT_TDX_POLICY,
    TDX_CLAIM_TYPES,
    TDX_CLAIMS,
    DcapTdAppraiser,
    TdEvidence,
    td_claims,
)
from confnode.attestation.client import runtime_data_for_key
from confnode.cli import main_group
from confnode.collateral import Collateral
from confnode.policy import DEFAULT_SGX_POLICY, policy_hash
from confnode.sgx import Quote, TdReportBody, parse_quote
from confnode.sim import SimPlatform
from confnode.sim.tdx import SimTdxPlatform
from confnode.tokens import KeyRing, unwrap, validate_token
from confnode.verify import VerifiedTd

TDX = "/attest/TdxVm?api-version=2025-06-01"
SGX = "/attest/SgxEnclave?api-version=2022-08-01"
AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def _claims(response: httpx.Response) -> dict[str, Any]:
    return token_payload(response.json()["token"])


class Td:
    """A simulated TD on a TDX host whose report_data binds the TD's key (JSON runtimeData)."""

    def __init__(self, tdx: SimTdxPlatform, key: RSAKey) -> None:
        self.tdx = tdx
        self.key = key
        self.runtime, self.report_data = runtime_data_for_key(
            {**key.as_dict(private=False), "kid": "td-key"}
        )

    def quote(self, **fields: Any) -> bytes:
        return self.tdx.quote(
            self.tdx.td_report(fields.pop("report_data", self.report_data), **fields)
        )

    def sgx_quote(self) -> bytes:
        """An SGX quote from the TDX host's SGX platform, with the same report_data."""
        platform = self.tdx.platform
        return platform.quote(
            platform.enclave().report(platform.quoting_enclave.target_info(), self.report_data)
        )

    def body(self, quote: bytes | None = None, **extra: Any) -> dict[str, Any]:
        return attest_body(quote if quote is not None else self.quote(), self.runtime, **extra)


@pytest.fixture(scope="module")
def td_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def tdx_hosts() -> Callable[..., SimTdxPlatform]:
    cache: dict[tuple[object, ...], SimTdxPlatform] = {}

    def make(tcb: str = "UpToDate", **kwargs: Any) -> SimTdxPlatform:
        key = (tcb, *sorted(kwargs.items()))
        if key not in cache:
            cache[key] = SimTdxPlatform(SimPlatform(tcb=tcb), **kwargs)
        return cache[key]

    return make


@pytest.fixture
def td_keys_dir(tmp_path: Path, tdx_hosts: Callable[..., SimTdxPlatform]) -> Path:
    """Key ``td-app``: released only to the simulated TD image (MRTD) on an up-to-date host."""
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "td-app.key").write_bytes(hashlib.sha256(b"td app key").digest())
    mr_td = tdx_hosts().td_report().mr_td.hex()
    conditions = [
        {"claim": "x-ms-attestation-type", "equals": "tdxvm-simulated"},
        {"claim": "tdx_mrtd", "equals": mr_td},
        {"claim": "tdx_td_attributes_debug", "equals": False},
        {"claim": "attester_tcb_status", "equals": "UpToDate"},
    ]
    policy = {"version": "1.0.0", "anyOf": [{"authority": SIM_ISSUER, "allOf": conditions}]}
    (directory / "td-app.policy.json").write_text(json.dumps(policy))
    return directory


@pytest.fixture
def td(tdx_hosts: Callable[..., SimTdxPlatform], td_key: RSAKey) -> Td:
    """A TD on the up-to-date simulated TDX host."""
    return Td(tdx_hosts(), td_key)


ServiceFor = Callable[..., AttestationService]


@pytest.fixture
def service_for(ring: KeyRing, td_keys_dir: Path) -> ServiceFor:
    """A service whose TDX collateral source returns ``collateral`` (trusting ``root``)."""

    def build(
        collateral: Collateral, root: bytes | None, *, now: datetime = AT, **kwargs: Any
    ) -> AttestationService:
        def lookup(quote: Quote) -> Collateral:
            return collateral

        options: dict[str, Any] = {
            "appraiser": DcapAppraiser(lookup, extra_root=root),
            "td_appraiser": DcapTdAppraiser(lookup, extra_root=root),
            "ring": ring,
            "issuer": ISSUER,
            "policies": PolicyStore(),
            "keys": KeyStore(td_keys_dir, ISSUER),
            "insecure_unsigned_policy_changes": True,
            "allow_simulated": True,
            "clock": lambda: now,
        }
        options.update(kwargs)
        return AttestationService(**options)

    return build


def _client(service: AttestationService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app()), base_url=ISSUER)


@pytest.fixture
def sim_client(
    service_for: ServiceFor, tdx_hosts: Callable[..., SimTdxPlatform]
) -> Callable[..., httpx.AsyncClient]:
    def make(tcb: str = "UpToDate", **kwargs: Any) -> httpx.AsyncClient:
        host = tdx_hosts(tcb, **kwargs)
        return _client(service_for(host.collateral(AT), host.root_certificate()))

    return make


# -- simulated TDs ----------------------------------------------------------------------------


async def test_a_simulated_td_gets_maa_tdx_claims(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
    tdx_hosts: Callable[..., SimTdxPlatform],
    ring: KeyRing,
) -> None:
    rtmr2 = hashlib.sha384(b"kernel command line").digest()
    quote = td.quote(rtmrs=(bytes(48), bytes(48), rtmr2, bytes(48)))
    body = parse_quote(quote).body
    assert isinstance(body, TdReportBody)
    async with sim_client() as client:
        response = await client.post(TDX, json=td.body(quote, nonce="n-1"))
    assert response.status_code == 200, response.text
    claims = validate_token(response.json()["token"], ring.jwks(AT), issuer=SIM_ISSUER, now=AT)
    assert claims["iss"] == SIM_ISSUER  # simulated evidence never gets the real issuer
    assert claims["x-ms-attestation-type"] == "tdxvm-simulated"
    assert claims["eat_profile"] == "https://aka.ms/maa-eat-profile-tdxvm"
    assert (claims["x-ms-ver"], claims["dbgstat"], claims["intuse"]) == (
        "1.0",
        "disabled",
        "generic",
    )
    assert claims["attester_tcb_status"] == "UpToDate"
    assert claims["tdx_mrtd"] == body.mr_td.hex()
    assert claims["tdx_rtmr2"] == rtmr2.hex() and claims["tdx_rtmr0"] == "00" * 48
    assert claims["tdx_report_data"] == td.report_data.hex()
    assert claims["tdx_mrseam"] == body.mr_seam.hex()
    assert claims["tdx_mrsignerseam"] == body.mrsigner_seam.hex()
    assert claims["tdx_tee_tcb_svn"] == body.tee_tcb_svn.hex()
    assert claims["tdx_seamsvn"] == body.tee_tcb_svn[0] + 256 * body.tee_tcb_svn[1]
    assert claims["tdx_td_attributes"] == body.td_attributes.hex()
    assert claims["tdx_td_attributes_septve_disable"] is True
    assert claims["tdx_td_attributes_debug"] is False
    assert claims["tdx_xfam"] == body.xfam.hex()
    assert claims["x-ms-runtime"] == json.loads(td.runtime)
    assert claims["x-confnode-simulated"] is True
    assert claims["x-confnode-fmspc"] == tdx_hosts().fmspc.hex().upper()
    assert claims["x-confnode-collateral"]["quotehash"] == hashlib.sha256(quote).hexdigest()
    assert claims["nonce"] == "n-1"
    assert claims["x-ms-policy-hash"] == policy_hash(DEFAULT_TDX_POLICY)
    assert claims["tee"] == "tdxvm-simulated"  # issued by the default TdxVm policy
    assert "tdx_mrservicetd" not in claims  # TD 1.0


async def test_a_td15_quote_adds_its_fields(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
    tdx_hosts: Callable[..., SimTdxPlatform],
) -> None:
    async with sim_client() as client:
        response = await client.post(TDX, json=td.body(td.quote(td15=True)))
    assert response.status_code == 200, response.text
    claims = _claims(response)
    assert claims["tdx_mrservicetd"] == "00" * 48
    assert claims["tdx_tee_tcb_svn2"] == tdx_hosts().tee_tcb_svn.hex()


@pytest.mark.parametrize(
    ("tcb", "kwargs", "status", "advisories"),
    [
        ("SWHardeningNeeded", {}, "SWHardeningNeeded", ["INTEL-SA-00615"]),
        ("ConfigurationNeeded", {}, "ConfigurationNeeded", ["INTEL-SA-00289"]),
        (
            "UpToDate",
            {"launch_module_svn": 4},
            "TDRelaunchAdvised",
            ["INTEL-SA-01036", "INTEL-SA-01099"],
        ),
    ],
)
async def test_tcb_status_and_advisories_are_in_the_token(
    sim_client: Callable[..., httpx.AsyncClient],
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
    tcb: str,
    kwargs: dict[str, Any],
    status: str,
    advisories: list[str],
) -> None:
    td = Td(tdx_hosts(tcb), td_key)
    quote = td.quote(td15=bool(kwargs), **kwargs)
    async with sim_client(tcb) as client:
        response = await client.post(TDX, json=td.body(quote))
    assert response.status_code == 200, response.text
    claims = _claims(response)
    assert claims["attester_tcb_status"] == claims["x-confnode-tcb-status"] == status
    assert claims["x-confnode-advisory-ids"] == advisories


async def test_the_default_policy_denies_an_out_of_date_platform(
    sim_client: Callable[..., httpx.AsyncClient],
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
) -> None:
    td = Td(tdx_hosts("OutOfDate"), td_key)
    async with sim_client("OutOfDate") as client:
        response = await client.post(TDX, json=td.body())
    # MAA answers a policy denial with 400 PolicyEvaluationError.
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PolicyEvaluationError"
    assert "attester_tcb_status" in response.json()["error"]["message"]


@pytest.mark.parametrize("tcb", ["Revoked", "TcbLevelNotFound"])
async def test_revoked_and_unknown_platforms_fail_attestation(
    sim_client: Callable[..., httpx.AsyncClient],
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
    tcb: str,
) -> None:
    td = Td(tdx_hosts(tcb), td_key)
    async with sim_client(tcb) as client:
        response = await client.post(TDX, json=td.body())
    assert response.status_code == 400  # MAA: evidence that does not verify
    inner = response.json()["error"]["innererror"]["code"]
    assert inner == {"Revoked": "QuoteRevoked", "TcbLevelNotFound": "TcbLevelNotFound"}[tcb]


async def test_runtime_data_must_match_the_report_data(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
) -> None:
    async with sim_client() as client:
        response = await client.post(TDX, json=td.body(td.quote(report_data=b"other")))
    assert response.status_code == 400
    assert "report_data[0:32]" in response.json()["error"]["message"]


async def test_init_time_data_binds_mrconfigid(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
) -> None:
    init = json.dumps({"policy": "allow-all"}).encode()
    quote = td.quote(mr_config_id=hashlib.sha384(init).digest())
    init_time = {"data": b64url(init), "dataType": "JSON"}
    async with sim_client() as client:
        good = await client.post(TDX, json=td.body(quote, initTimeData=init_time))
        bad = await client.post(TDX, json=td.body(td.quote(), initTimeData=init_time))
    assert good.status_code == 200, good.text
    assert _claims(good)["x-ms-inittime"] == {"policy": "allow-all"}
    assert _claims(good)["tdx_mrconfigid"] == hashlib.sha384(init).hexdigest()
    assert bad.status_code == 400 and "MRCONFIGID" in bad.json()["error"]["message"]


async def test_a_draft_policy_on_td_claims(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
    tdx_hosts: Callable[..., SimTdxPlatform],
) -> None:
    mr_td = tdx_hosts().td_report().mr_td.hex()
    draft = f"""version=1.0;
authorizationrules {{
    [type=="tdx_mrtd", value=="{mr_td}"] && [type=="tdx_td_attributes_debug", value==false]
        => permit();
}};
issuancerules {{
    c:[type=="tdx_rtmr1"] => issue(type="kernel", value=c.value);
}};"""
    async with sim_client() as client:
        permitted = await client.post(TDX, json=td.body(draftPolicyForAttestation=draft))
        debug = await client.post(
            TDX, json=td.body(td.quote(debug=True), draftPolicyForAttestation=draft)
        )
    assert permitted.status_code == 200, permitted.text
    assert _claims(permitted)["kernel"] == _claims(permitted)["tdx_rtmr1"]
    assert permitted.json()["trace"]
    assert debug.status_code == 400 and debug.json()["error"]["trace"]


async def test_tdxvm_has_its_own_policy(
    service_for: ServiceFor, tdx_hosts: Callable[..., SimTdxPlatform], td_key: RSAKey
) -> None:
    strict = """version=1.0;
authorizationrules { [type=="tdx_mrtd", value=="00"] => permit(); };
issuancerules { };"""
    host = tdx_hosts()
    service = service_for(host.collateral(AT), host.root_certificate())
    td = Td(host, td_key)
    async with _client(service) as client:
        put = await client.put("/policies/TdxVm", content=unsigned_policy_jws(strict))
        assert put.status_code == 200, put.text
        denied = await client.post(TDX, json=td.body())
        assert service.policies.current().text == DEFAULT_SGX_POLICY  # SgxEnclave's is apart
        reset = await client.post("/policies/TdxVm:reset", content=unsigned_policy_jws(None))
        assert reset.status_code == 200, reset.text
        permitted = await client.post(TDX, json=td.body())
        unknown = await client.get("/policies/SevSnpVm")
    assert denied.status_code == 400
    assert permitted.status_code == 200
    assert unknown.status_code == 400 and "TdxVm" in unknown.text


async def test_key_release_to_a_td_bound_key(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
    td_key: RSAKey,
) -> None:
    async with sim_client() as client:
        token = (await client.post(TDX, json=td.body())).json()["token"]
        released = await client.post("/keys/td-app/release", json={"target": token})
        debug_token = (await client.post(TDX, json=td.body(td.quote(debug=True)))).json()["token"]
        refused = await client.post("/keys/td-app/release", json={"target": debug_token})
    assert released.status_code == 200, released.text
    key = json.loads(unwrap(released.json()["value"], td_key))
    assert base64.urlsafe_b64decode(key["k"] + "=") == hashlib.sha256(b"td app key").digest()
    assert refused.status_code == 403 and "tdx_td_attributes_debug" in refused.text


async def test_new_key_with_mrtd_releases_to_that_td_only(
    service_for: ServiceFor,
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
    tmp_path: Path,
) -> None:
    """``confnode attestation new-key --mrtd/--rtmr``: a TD-bound key, from the CLI to a release."""
    host = tdx_hosts()
    td = Td(host, td_key)
    report = host.td_report()
    keys = tmp_path / "cli-keys"
    for name, extra in (("td", ["--allow-simulated"]), ("td-real-only", [])):
        created = CliRunner().invoke(
            main_group,
            ["attestation", "new-key", name, "--keys-dir", str(keys), "--authority", ISSUER,
             "--mrtd", report.mr_td.hex(), "--rtmr", f"1={report.rt_mr[1].hex().upper()}", *extra],
        )  # fmt: skip
        assert created.exit_code == 0, created.output
    service = service_for(host.collateral(AT), host.root_certificate(), keys=KeyStore(keys, ISSUER))
    sgx_quote = td.sgx_quote()
    other_rtmrs = (report.rt_mr[0], bytes(48), report.rt_mr[2], report.rt_mr[3])
    async with _client(service_for(host.platform.collateral(AT), host.root_certificate())) as sgx:
        sgx_token = await sgx.post(SGX, json=td.body(sgx_quote))  # same issuer and signing key
    assert sgx_token.status_code == 200, sgx_token.text
    async with _client(service) as client:

        async def token(path: str, quote: bytes) -> str:
            response = await client.post(path, json=td.body(quote))
            assert response.status_code == 200, response.text
            return str(response.json()["token"])

        good = await token(TDX, td.quote())
        tokens = {
            "sgx enclave": sgx_token.json()["token"],
            "debug td": await token(TDX, td.quote(debug=True)),
            "other mrtd": await token(TDX, td.quote(mr_td=bytes(48))),
            "other rtmr1": await token(TDX, td.quote(rtmrs=other_rtmrs)),
        }
        released = await client.post("/keys/td/release", json={"target": good})
        refused = {
            what: await client.post("/keys/td/release", json={"target": target})
            for what, target in tokens.items()
        }
        real_only = await client.post("/keys/td-real-only/release", json={"target": good})
    assert released.status_code == 200, released.text
    secret = json.loads(unwrap(released.json()["value"], td_key))
    assert base64.urlsafe_b64decode(secret["k"] + "=") == (keys / "td.key").read_bytes()
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.text)
    assert real_only.status_code == 403 and "does not match token issuer" in real_only.text
    policy = json.loads((keys / "td.policy.json").read_text())
    real, simulated = (rule["allOf"] for rule in policy["anyOf"])
    assert {"claim": "x-confnode-simulated", "equals": False} in real
    assert {"claim": "x-ms-attestation-type", "equals": "tdxvm-simulated"} in simulated


async def test_policies_cannot_issue_td_claims(
    sim_client: Callable[..., httpx.AsyncClient],
    service_for: ServiceFor,
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
) -> None:
    """Only the service asserts TD claims: an SGX policy issuing ``tdx_mrtd`` (which a TD-bound
    key's release policy may check) or a TD 1.0 policy issuing ``tdx_mrservicetd`` is ignored."""
    host = tdx_hosts()
    td = Td(host, td_key)
    forge = """version=1.0; authorizationrules { => permit(); };
issuancerules {
    => issue(type="tdx_mrtd", value="00");
    => issue(type="tdx_mrservicetd", value="00");
    => issue(type="kept", value="yes");
};"""
    sgx_quote = td.sgx_quote()
    async with _client(service_for(host.platform.collateral(AT), host.root_certificate())) as sgx:
        sgx_token = await sgx.post(SGX, json=td.body(sgx_quote, draftPolicyForAttestation=forge))
    async with sim_client() as client:
        td_token = await client.post(TDX, json=td.body(draftPolicyForAttestation=forge))
    for response in (sgx_token, td_token):
        assert response.status_code == 200, response.text
        assert _claims(response)["kept"] == "yes"
        assert "tdx_mrservicetd" not in _claims(response)
    assert "tdx_mrtd" not in _claims(sgx_token)
    assert _claims(td_token)["tdx_mrtd"] == host.td_report().mr_td.hex()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mrtd", "ab" * 48, "--mrsigner", "00" * 32], "cannot be combined"),
        (["--rtmr", "4=" + "00" * 48], "INDEX 0-3"),
        (["--mrtd", "abc"], "96 hex digits"),
    ],
)
def test_new_key_refuses_bad_td_options(tmp_path: Path, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(
        main_group,
        ["attestation", "new-key", "k", "--keys-dir", str(tmp_path), "--authority", ISSUER, *args],
    )
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not (tmp_path / "k.key").exists()


async def test_sgx_and_tdx_quotes_only_on_their_own_routes(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
) -> None:
    sgx_quote = td.sgx_quote()
    async with sim_client() as client:
        sgx_on_tdx = await client.post(TDX, json=td.body(sgx_quote))
        tdx_on_sgx = await client.post("/attest/SgxEnclave?api-version=2022-08-01", json=td.body())
        quote = td.quote()  # in an Open Enclave report header (v1, SGX remote): still a TD quote
        report = (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
        report += len(quote).to_bytes(8, "little") + quote
        tdx_on_oe = await client.post(
            "/attest/OpenEnclave?api-version=2022-08-01", json={"report": b64url(report)}
        )
    assert sgx_on_tdx.status_code == 400 and "TdxVm" in sgx_on_tdx.json()["error"]["message"]
    assert tdx_on_sgx.status_code == 400 and "SgxEnclave" in tdx_on_sgx.json()["error"]["message"]
    assert tdx_on_oe.status_code == 400 and "expected an SGX quote" in tdx_on_oe.text


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"allow_simulated": False}, "simulated"),  # simulated TDs are refused unless allowed
        ({"td_appraiser": None}, "not enabled"),  # without a TD appraiser TdxVm is not enabled
    ],
)
async def test_a_service_that_cannot_attest_simulated_tds_refuses_them(
    service_for: ServiceFor,
    tdx_hosts: Callable[..., SimTdxPlatform],
    td_key: RSAKey,
    options: dict[str, Any],
    needle: str,
) -> None:
    host = tdx_hosts()
    service = service_for(host.collateral(AT), host.root_certificate(), **options)
    async with _client(service) as client:
        response = await client.post(TDX, json=Td(host, td_key).body())
    assert response.status_code == 400 and needle in response.json()["error"]["message"]


async def test_an_untrusted_root_is_refused_before_any_collateral_fetch(
    ring: KeyRing, tdx_hosts: Callable[..., SimTdxPlatform], td_key: RSAKey
) -> None:
    fetched: list[Quote] = []

    def lookup(quote: Quote) -> Collateral:
        fetched.append(quote)
        raise AssertionError("collateral must not be fetched")

    service = AttestationService(
        appraiser=DcapAppraiser(lookup),
        td_appraiser=DcapTdAppraiser(lookup),  # Intel's root only
        ring=ring,
        issuer=ISSUER,
        policies=PolicyStore(),
        keys=KeyStore(None, ISSUER),
        allow_simulated=True,
        clock=lambda: AT,
    )
    async with _client(service) as client:
        response = await client.post(TDX, json=Td(tdx_hosts(), td_key).body())
    assert response.status_code == 400 and "not signed up to Intel" in response.text
    assert not fetched


# -- real TDX vectors ---------------------------------------------------------------------------


def _vector(vectors: Path, name: str) -> tuple[bytes, Collateral]:
    sample = vectors / "Phala-Network_dcap-qvl" / "sample"
    return (sample / name).read_bytes(), Collateral.from_json(
        (sample / f"{name}_collateral.json").read_text()
    )


async def test_the_real_tdx_v4_vector_attests_up_to_date(
    vectors: Path, service_for: ServiceFor, ring: KeyRing
) -> None:
    quote, collateral = _vector(vectors, "tdx_quote")
    when = datetime(2025, 7, 4, tzinfo=UTC)  # inside 2025-06-19T10:32:27Z..2025-07-19T10:00:35Z
    service = service_for(collateral, None, now=when, allow_simulated=False)
    async with _client(service) as client:
        response = await client.post(TDX, json={"quote": b64url(quote), "nonce": "real"})
    assert response.status_code == 200, response.text
    claims = validate_token(response.json()["token"], ring.jwks(when), issuer=ISSUER, now=when)
    body = parse_quote(quote).body
    assert isinstance(body, TdReportBody)
    assert claims["x-ms-attestation-type"] == "tdxvm"
    assert claims["attester_tcb_status"] == "UpToDate" and claims["x-confnode-advisory-ids"] == []
    assert claims["tdx_mrtd"] == body.mr_td.hex()
    assert claims["tdx_rtmr3"] == body.rt_mr[3].hex()
    assert claims["tdx_report_data"] == body.report_data.hex()
    assert claims["x-confnode-fmspc"] == "B0C06F000000"
    assert claims["x-confnode-simulated"] is False
    # Outside its window the collateral has expired: refused (no grace configured).
    late = service_for(collateral, None, now=when + timedelta(days=30), allow_simulated=False)
    async with _client(late) as client:
        response = await client.post(TDX, json={"quote": b64url(quote)})
    assert response.status_code == 400  # MAA: evidence that does not verify


async def test_the_real_tdx_v5_vector_matches_no_tcb_level(
    vectors: Path, service_for: ServiceFor
) -> None:
    quote, collateral = _vector(vectors, "tdx_quote_outdated")
    when = datetime(2026, 3, 5, tzinfo=UTC)  # inside 2026-02-18T10:58:51Z..2026-03-20T10:41:15Z
    async with _client(service_for(collateral, None, now=when, allow_simulated=False)) as client:
        response = await client.post(TDX, json={"quote": b64url(quote)})
    assert response.status_code == 400  # MAA: evidence that does not verify
    assert "TCB" in response.json()["error"]["message"]


# -- claims, for any TD -----------------------------------------------------------------------

_B48 = st.binary(min_size=48, max_size=48)


@settings(max_examples=60, deadline=None)
@given(
    registers=st.lists(_B48, min_size=10, max_size=10),
    report_data=st.binary(min_size=64, max_size=64),
    td_attributes=st.binary(min_size=8, max_size=8),
    tee_tcb_svn=st.binary(min_size=16, max_size=16),
    td15=st.booleans(),
)
def test_td_claims_mirror_the_td_report(
    registers: list[bytes],
    report_data: bytes,
    td_attributes: bytes,
    tee_tcb_svn: bytes,
    td15: bool,
) -> None:
    mr_td, r0, r1, r2, r3, seam, signer, config, owner, owner_config = registers
    td = VerifiedTd(
        mr_td=mr_td, rtmr0=r0, rtmr1=r1, rtmr2=r2, rtmr3=r3, report_data=report_data,
        mr_seam=seam, mr_signer_seam=signer, seam_attributes=bytes(8),
        td_attributes=td_attributes, xfam=bytes(8), mr_config_id=config, mr_owner=owner,
        mr_owner_config=owner_config, tee_tcb_svn=tee_tcb_svn, debug=bool(td_attributes[0] & 1),
        tee_tcb_svn2=tee_tcb_svn if td15 else None, mr_servicetd=bytes(48) if td15 else None,
    )  # fmt: skip
    request = parse_attest_request({"quote": b64url(b"q")})
    claims = td_claims(request, TdEvidence(td=td, tcb_status="UpToDate"))
    for claim, value in (
        ("tdx_mrtd", mr_td), ("tdx_rtmr0", r0), ("tdx_rtmr1", r1), ("tdx_rtmr2", r2),
        ("tdx_rtmr3", r3), ("tdx_mrseam", seam), ("tdx_mrsignerseam", signer),
        ("tdx_mrconfigid", config), ("tdx_mrowner", owner), ("tdx_mrownerconfig", owner_config),
        ("tdx_report_data", report_data), ("tdx_td_attributes", td_attributes),
        ("tdx_tee_tcb_svn", tee_tcb_svn),
    ):  # fmt: skip
        assert bytes.fromhex(claims[claim]) == value, claim
    bits = int.from_bytes(td_attributes, "little")
    assert claims["tdx_td_attributes_debug"] == bool(bits & 1) == (claims["dbgstat"] == "enabled")
    assert claims["tdx_td_attributes_septve_disable"] == bool(bits >> 28 & 1)
    assert claims["tdx_td_attributes_protection_keys"] == bool(bits >> 30 & 1)
    assert claims["tdx_td_attributes_key_locker"] == bool(bits >> 31 & 1)
    assert claims["tdx_td_attributes_perfmon"] == bool(bits >> 63 & 1)
    assert claims["tdx_seamsvn"] == tee_tcb_svn[0] | tee_tcb_svn[1] << 8
    assert ("tdx_mrservicetd" in claims) == td15
    assert claims["x-ms-attestation-type"] == "tdxvm"
    ours = {name for name in claims if not name.startswith(("x-ms-", "x-confnode-"))}
    assert ours <= set(TDX_CLAIMS)  # discovery announces every TD claim
    for claim in incoming_claims(claims):  # what TdxVm policies are type-checked against
        assert TDX_CLAIM_TYPES[claim.type] is type(claim.value), claim


async def test_tdxvm_policies_are_checked_against_the_td_claim_types(
    sim_client: Callable[..., httpx.AsyncClient],
    td: Td,
) -> None:
    """A deny rule comparing a Boolean TD claim with a string never fires: it failed open (a
    debug TD got a token) until TdxVm policies were parsed with the TD claims' types."""
    slip = """version=1.0;
authorizationrules { [type=="tdx_td_attributes_debug", value=="true"] => deny(); => permit(); };"""
    case = slip.replace("tdx_td_attributes_debug", "TDX_TD_ATTRIBUTES_DEBUG")
    debug_quote = td.quote(debug=True)
    async with sim_client() as client:
        draft = await client.post(TDX, json=td.body(debug_quote, draftPolicyForAttestation=slip))
        put = await client.put("/policies/TdxVm", content=unsigned_policy_jws(slip))
        cased = await client.put("/policies/TdxVm", content=unsigned_policy_jws(case))
        after = await client.post(TDX, json=td.body(debug_quote))
    for response, needle in ((draft, "Boolean"), (put, "Boolean"), (cased, "only in case")):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "PolicyParsingError"
        assert needle in response.json()["error"]["message"]
    assert after.status_code == 200  # the default TdxVm policy is still the one in force
    assert _claims(after)["tdx_td_attributes_debug"] is True


async def test_discovery_announces_the_td_claims(
    service_for: ServiceFor, tdx_hosts: Callable[..., SimTdxPlatform]
) -> None:
    host = tdx_hosts()
    async with _client(service_for(host.collateral(AT), host.root_certificate())) as client:
        discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert {"tdx_mrtd", "tdx_rtmr3", "attester_tcb_status"} <= set(discovery["claims_supported"])
