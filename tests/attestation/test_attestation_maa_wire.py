"""MAA wire compatibility: request shapes real clients send, legacy claim names, routes, errors.

Requests are either made by the unmodified Azure SDK (azure-security-attestation, over HTTPS) or
shaped exactly like the recorded requests of Azure's published samples
(Azure-Samples/microsoft-azure-attestation: ``validatequotes.core`` for api-version 2020-10-01,
``intel.sdk.attest.sample`` for the 2018-09-01-preview route and body).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from attestation_testlib import (
    ADMIN,
    ATTEST,
    HttpsService,
    SdkCredential,
    ServiceFactory,
    SignerKey,
    Sim,
    admin_reviews,
    b64url,
    policy_signer,
    token_payload,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from confnode.attestation import AttestationService, KeyStore, PolicyStore
from confnode.attestation._claims import b64url_decode, oe_report_quote, parse_attest_request
from confnode.attestation._dcap import DcapAppraiser
from confnode.collateral import Collateral
from confnode.errors import InvalidInput
from confnode.sgx import Quote
from confnode.tokens import KeyDirectory

ClientFor = Callable[[AttestationService], httpx.AsyncClient]
PERMIT = "version=1.0; authorizationrules { => permit(); };"


def _binary_quote(sim: Sim, data: bytes, *, debug: bool = False) -> bytes:
    """A quote binding ``data`` as MAA's Binary runtime data: SHA-256 in report_data[0:32]."""
    return sim.quote(debug=debug, report_data=hashlib.sha256(data).digest() + bytes(32))


def _oe_report(quote: bytes) -> bytes:
    """An Open Enclave remote report: oe_report_header_t (version 1, type 2, size) + quote."""
    return struct.pack("<IIQ", 1, 2, len(quote)) + quote


def _signer(key: SignerKey | None = None) -> x509.Certificate:
    """A self-signed policy signer certificate (for ``key``, or a fresh EC one)."""
    return policy_signer(key=key or ec.generate_private_key(ec.SECP256R1()), days=30)[1]


# -- the Azure SDK over HTTPS -----------------------------------------------------------------

azure_attestation = pytest.importorskip("azure.security.attestation")


SIGNER = _signer()


@pytest.fixture(scope="module")
def sdk_service(
    tmp_path_factory: pytest.TempPathFactory, sim: Sim, serve_https: HttpsService
) -> Iterator[tuple[str, str]]:
    """The service over HTTPS on loopback (uvicorn thread), with one policy signer configured."""
    tmp = tmp_path_factory.mktemp("maa-wire")
    collateral = sim.platform.collateral(datetime.now(UTC))

    def lookup(quote: Quote) -> Collateral:
        return collateral

    def make_service(url: str) -> AttestationService:
        (tmp / "keys").mkdir()
        return AttestationService(
            appraiser=DcapAppraiser(lookup, extra_root=sim.platform.root_certificate()),
            ring=KeyDirectory(tmp / "signing").load_or_create(url, datetime.now(UTC)),
            issuer=url,
            policies=PolicyStore(),
            keys=KeyStore(tmp / "keys", url),
            signers=(SIGNER,),
            insecure_unsigned_policy_changes=True,  # no caller authentication in this fixture
            allow_simulated=True,
        )

    with serve_https(tmp, make_service) as served:
        yield served


def test_sdk_reads_legacy_claims_as_maa_emits_them(sdk_service: tuple[str, str], sim: Sim) -> None:
    """The SDK's AttestationResult model maps ``maa-ehd``, ``aas-ehd``, ``ver``, ``policy_hash``,
    ``maa-attestationcollateral`` (and the default policy's short names) to deprecated_* fields."""
    from azure.security.attestation import AttestationClient
    from azure.security.attestation._generated.models import AttestationResult

    url, ca_file = sdk_service
    data = b"enclave held data"
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        result, token = client.attest_sgx_enclave(_binary_quote(sim, data), runtime_data=data)
    assert result.enclave_held_data == data
    legacy = AttestationResult.deserialize(token._body)
    assert legacy.deprecated_enclave_held_data == data
    assert legacy.deprecated_enclave_held_data2 == data
    assert legacy.deprecated_version == "1.0"
    assert legacy.deprecated_policy_hash == legacy.policy_hash
    assert legacy.deprecated_sgx_collateral == token._body["x-ms-sgx-collateral"]
    assert legacy.deprecated_mr_signer == sim.platform.enclave().identity.mr_signer.hex()
    assert legacy.deprecated_is_debuggable is False
    assert token._body["maa-policyHash"] == token._body["x-ms-policy-hash"]


def test_sdk_attests_an_open_enclave_report(sdk_service: tuple[str, str], sim: Sim) -> None:
    from azure.security.attestation import AttestationClient

    url, ca_file = sdk_service
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        result, _ = client.attest_open_enclave(_oe_report(sim.quote()), runtime_json=sim.runtime)
    assert result.mr_enclave == sim.platform.enclave().identity.mr_enclave.hex()
    assert result.runtime_claims["keys"][0]["kid"] == "ek"


def test_sdk_failed_evidence_is_not_an_authentication_error(
    sdk_service: tuple[str, str], sim: Sim
) -> None:
    """A quote that fails verification is MAA's 400 InvalidParameter: with 401 the SDK raises
    ClientAuthenticationError and callers look for a credential problem."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
    from azure.security.attestation import AttestationClient

    url, ca_file = sdk_service
    quote = bytearray(sim.quote())
    quote[48 + 320] ^= 1  # report_data[0] in the signed quote body: the signature fails
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        with pytest.raises(HttpResponseError) as info:
            client.attest_sgx_enclave(bytes(quote), runtime_json=sim.runtime)
    assert not isinstance(info.value, ClientAuthenticationError)
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code == "InvalidParameter"
    assert info.value.error.innererror["code"] == "QuoteSignatureInvalid"


def test_sdk_policy_denial_is_policy_evaluation_error(
    sdk_service: tuple[str, str], sim: Sim
) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.security.attestation import AttestationClient

    url, ca_file = sdk_service
    draft = "version=1.0; authorizationrules { => deny(); };"
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        with pytest.raises(HttpResponseError) as info:
            client.attest_sgx_enclave(sim.quote(), runtime_json=sim.runtime, draft_policy=draft)
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code == "PolicyEvaluationError"


def test_sdk_lists_policy_management_certificates(sdk_service: tuple[str, str]) -> None:
    from azure.security.attestation import AttestationAdministrationClient

    url, ca_file = sdk_service
    with AttestationAdministrationClient(url, SdkCredential(), connection_verify=ca_file) as admin:
        chains, _ = admin.get_policy_management_certificates()
    expected = SIGNER.public_bytes(serialization.Encoding.PEM).decode()
    assert [[pem.strip() for pem in chain] for chain in chains] == [[expected.strip()]]


def test_sdk_cannot_add_policy_management_certificates(sdk_service: tuple[str, str]) -> None:
    """Signers are configuration (--policy-signer): :add is refused, not silently ignored."""
    from azure.core.exceptions import HttpResponseError
    from azure.security.attestation import AttestationAdministrationClient

    url, ca_file = sdk_service
    key = rsa.generate_private_key(65537, 2048)  # the SDK 1.0 cannot sign with EC keys
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    new = _signer(key).public_bytes(serialization.Encoding.PEM).decode()
    with AttestationAdministrationClient(url, SdkCredential(), connection_verify=ca_file) as admin:
        with pytest.raises(HttpResponseError) as info:
            admin.add_policy_management_certificate(
                new, signing_key=key_pem, signing_certificate=new
            )
    assert info.value.status_code == 403
    assert info.value.error is not None
    assert info.value.error.code == "PolicyCertificateChangesDisabled"


# -- recorded real-client requests (in process) -----------------------------------------------


async def test_pascal_case_body_of_azure_samples_validatequotes(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    """validatequotes.core posts Newtonsoft-serialised PascalCase members, nulls included."""
    data = b"\x01\x02 binary runtime data"
    body = {
        "Quote": b64url(_binary_quote(sim, data)),
        "RuntimeData": {"Data": b64url(data), "DataType": "Binary"},
        "InittimeData": None,
        "DraftPolicyForAttestation": None,
    }
    response = await client.post(
        "/attest/SgxEnclave?api-version=2020-10-01",
        content=json.dumps(body, separators=(",", ":")),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    claims = token_payload(response.json()["token"])
    assert claims["x-ms-sgx-ehd"] == b64url(data)


async def test_2018_preview_route_and_body_of_intel_sdk_sample(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    """intel.sdk.attest.sample: {"Quote", "EnclaveHeldData"} as text/plain to /attest/Tee/...;
    it then reads is-debuggable, sgx-mrenclave, sgx-mrsigner, product-id, svn and maa-ehd."""
    data = b"held by the enclave"
    body = {"Quote": b64url(_binary_quote(sim, data)), "EnclaveHeldData": b64url(data)}
    response = await client.post(
        "/attest/Tee/SgxEnclave?api-version=2018-09-01-preview",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain; charset=utf-8", "Authorization": "Bearer aad"},
    )
    assert response.status_code == 200, response.text
    claims = token_payload(json.loads(response.text.strip('"'))["token"])
    identity = sim.platform.enclave().identity
    assert claims["maa-ehd"] == b64url(data)
    assert claims["is-debuggable"] is False
    assert claims["sgx-mrenclave"] == identity.mr_enclave.hex()
    assert claims["sgx-mrsigner"] == identity.mr_signer.hex()
    assert (claims["product-id"], claims["svn"]) == (identity.isv_prod_id, identity.isv_svn)


async def test_enclave_held_data_is_bound_like_runtime_data(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    body = {"Quote": b64url(_binary_quote(sim, b"one")), "EnclaveHeldData": b64url(b"other")}
    response = await client.post(ATTEST, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["innererror"]["code"] == "BindingMismatch"


async def test_member_given_in_two_cases_is_refused(client: httpx.AsyncClient, sim: Sim) -> None:
    body = sim.body(Quote=b64url(sim.quote(debug=True)))  # "quote" and "Quote"
    response = await client.post(ATTEST, json=body)
    assert response.status_code == 400
    assert "more than once" in response.json()["error"]["message"]


async def test_nonce_is_echoed_as_rp_data_too(client: httpx.AsyncClient, sim: Sim) -> None:
    response = await client.post(ATTEST, json=sim.body(nonce="n-1"))
    claims = token_payload(response.json()["token"])
    assert claims["nonce"] == claims["rp_data"] == "n-1"


async def test_policy_cannot_issue_legacy_claim_names(client: httpx.AsyncClient, sim: Sim) -> None:
    """rp_data stands for the nonce: a policy must not be able to forge it (or maa-ehd …)."""
    draft = f'{PERMIT} issuancerules {{ => issue(type="rp_data", value="forged"); }};'
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 200, response.text
    assert "rp_data" not in token_payload(response.json()["token"])


@pytest.mark.parametrize("debug", [True, False])
async def test_policies_can_use_legacy_incoming_claim_names(
    client: httpx.AsyncClient, sim: Sim, debug: bool
) -> None:
    draft = (
        'version=1.0; authorizationrules { [type=="$is-debuggable", value==true] => deny(); '
        "=> permit(); }; issuancerules { "
        'c:[type=="$sgx-mrsigner"] => issue(type="signer", value=c.value); '
        'c:[type=="$tee"] => issue(type="kind", value=c.value); };'
    )
    body = sim.body(sim.quote(debug=debug), draftPolicyForAttestation=draft)
    response = await client.post(ATTEST, json=body)
    if debug:
        assert response.status_code == 400, response.text
        assert "rule 1" in response.json()["error"]["message"]
        return
    assert response.status_code == 200, response.text
    claims = token_payload(response.json()["token"])
    assert claims["signer"] == sim.platform.enclave().identity.mr_signer.hex()
    assert claims["kind"] == claims["x-ms-attestation-type"]


async def test_open_enclave_route_wants_a_report(client: httpx.AsyncClient, sim: Sim) -> None:
    url = "/attest/OpenEnclave?api-version=2022-08-01"
    ok = await client.post(url, json={"report": b64url(_oe_report(sim.quote()))})
    assert ok.status_code == 200, ok.text
    bare = await client.post(url, json={"report": b64url(sim.quote())})  # no OE header
    assert bare.status_code == 400
    assert "report header" in bare.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "NotFound"),
        ("GET", "/attest/SgxEnclave", 405, "MethodNotAllowed"),
        ("DELETE", "/certs", 405, "MethodNotAllowed"),
    ],
)
async def test_unknown_routes_and_methods_answer_maa_errors(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if status == 405:
        assert "POST" in response.headers["allow"] or "GET" in response.headers["allow"]


async def test_servicehealth_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/servicehealth")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_certificates_need_an_authenticated_caller(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    service = make_service(
        signers=(SIGNER,), insecure_unsigned_policy_changes=False, management_auth=admin_reviews()
    )
    http = client_for(service)
    assert (await http.get("/certificates")).status_code == 401
    response = await http.get("/certificates", headers=ADMIN)
    assert response.status_code == 200
    (key,) = token_payload(response.json()["token"])["x-ms-policy-certificates"]["keys"]
    assert base64.b64decode(key["x5c"][0]) == SIGNER.public_bytes(serialization.Encoding.DER)
    refused = await http.post("/certificates:remove", headers=ADMIN, content="x.y.z")
    assert refused.status_code == 403


# -- parsers (property tests) -----------------------------------------------------------------


@given(st.binary(max_size=64))
def test_oe_report_parser_only_raises_invalid_input(data: bytes) -> None:
    try:
        quote = oe_report_quote(data)
    except InvalidInput:
        return
    assert _oe_report(quote) == data


@given(st.binary(max_size=48))
def test_oe_report_round_trip(quote: bytes) -> None:
    assert oe_report_quote(_oe_report(quote)) == quote


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_NAMES = st.sampled_from(
    ["quote", "Quote", "QUOTE", "runtimeData", "RuntimeData", "EnclaveHeldData", "nonce", "x"]
)


@given(st.dictionaries(_NAMES, _JSON | st.just("AQID"), max_size=5))
def test_attest_request_parser_only_raises_invalid_input(body: dict[str, Any]) -> None:
    """Any JSON object either parses or is InvalidInput; what parses took its quote from the one
    member whose name is "quote" in some case."""
    try:
        request = parse_attest_request(body)
    except InvalidInput:
        return
    (name,) = [key for key in body if key.casefold() == "quote"]
    assert request.quote == b64url_decode(body[name], "quote")
