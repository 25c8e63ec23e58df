"""The attestation HTTP API in-process, with the real DCAP appraiser over simulated evidence."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from attestation_testlib import (
    ADMIN,
    ATTEST,
    ISSUER,
    SIM_ISSUER,
    ServiceFactory,
    SignerKey,
    Sim,
    admin_reviews,
    b64url,
    policy_signer,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from confnode.attestation import AttestationService, unsigned_policy_jws
from confnode.attestation._dcap import DcapAppraiser
from confnode.attestation.client import AttestationClient
from confnode.collateral import Collateral
from confnode.errors import CollateralFetchError, InvalidInput, VerificationError
from confnode.policy import DEFAULT_SGX_POLICY, policy_hash
from confnode.sgx import (
    EcdsaSigData,
    EcdsaSigDataV4,
    QeReportCertificationData,
    Quote,
    parse_quote,
)
from confnode.sim import SimPlatform
from confnode.tokens import (
    KeyDirectory,
    KeyRing,
    ReloadingKeyRing,
    token_header,
    unwrap,
    validate_token,
)
from confnode.verify import QuoteFormatUnsupported, UntrustedRoot

ClientFor = Callable[[AttestationService], httpx.AsyncClient]


def _denied(response: httpx.Response, status: int, code: str, needle: str) -> None:
    """A rejection: the right status and code, a reason in the message, and never a token."""
    assert response.status_code == status, response.text
    body = response.json()
    assert "token" not in body
    assert body["error"]["code"] == code
    assert needle in body["error"]["message"]


def _claims(response: httpx.Response, ring: KeyRing) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    jwks, now = ring.jwks(datetime.now(UTC)), datetime.now(UTC)
    # Attestation tokens (simulated evidence) and policy-management tokens.
    return validate_token(response.json()["token"], jwks, issuer=(ISSUER, SIM_ISSUER), now=now)


async def test_attest_returns_signed_token_with_maa_and_confnode_claims(
    client: httpx.AsyncClient, sim: Sim, ring: KeyRing
) -> None:
    quote = sim.quote()
    response = await client.post(ATTEST, json=sim.body(quote, nonce="n-123"))
    claims = _claims(response, ring)
    identity = sim.platform.enclave().identity
    assert claims["x-ms-attestation-type"] == "sgx-simulated"
    assert claims["iss"] == SIM_ISSUER
    assert claims["x-ms-ver"] == "1.0"
    assert claims["x-ms-sgx-mrenclave"] == identity.mr_enclave.hex()
    assert claims["x-ms-sgx-mrsigner"] == identity.mr_signer.hex()
    assert claims["x-ms-sgx-is-debuggable"] is False
    assert claims["x-ms-sgx-report-data"] == sim.report_data.hex()
    assert claims["x-ms-runtime"] == json.loads(sim.runtime)
    assert claims["x-ms-policy-hash"] == policy_hash(DEFAULT_SGX_POLICY)
    assert claims["x-confnode-tcb-status"] == "UpToDate"
    assert claims["x-confnode-simulated"] is True
    assert claims["x-confnode-collateral-expired"] is False
    assert claims["nonce"] == "n-123"
    assert claims["exp"] - claims["iat"] == 8 * 3600
    assert len(claims["x-ms-sgx-collateral"]["quotehash"]) == 64
    # The default policy issues MAA's short aliases.
    assert claims["sgx-mrenclave"] == claims["x-ms-sgx-mrenclave"]
    assert claims["tee"] == "sgx-simulated"


async def test_binary_runtime_data_comes_back_as_ehd(
    client: httpx.AsyncClient, sim: Sim, ring: KeyRing
) -> None:
    data = b"binary runtime data"
    import hashlib

    quote = sim.quote(report_data=hashlib.sha256(data).digest() + bytes(32))
    body = {"quote": b64url(quote), "runtimeData": {"data": b64url(data), "dataType": "Binary"}}
    claims = _claims(await client.post(ATTEST, json=body), ring)
    assert claims["x-ms-sgx-ehd"] == b64url(data)
    assert "x-ms-runtime" not in claims


async def test_json_runtime_data_null_is_still_runtime_claims(
    client: httpx.AsyncClient, sim: Sim, ring: KeyRing
) -> None:
    """dataType decides the claim: JSON ``null`` is x-ms-runtime null, never x-ms-sgx-ehd."""
    quote = sim.quote(report_data=hashlib.sha256(b"null").digest() + bytes(32))
    body = {"quote": b64url(quote), "runtimeData": {"data": b64url(b"null"), "dataType": "JSON"}}
    claims = _claims(await client.post(ATTEST, json=body), ring)
    assert claims["x-ms-runtime"] is None
    assert "x-ms-sgx-ehd" not in claims


async def test_discovery_documents(client: httpx.AsyncClient, ring: KeyRing) -> None:
    config = (await client.get("/.well-known/openid-configuration")).json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == f"{ISSUER}/certs"
    jwks = (await client.get("/certs")).json()
    assert [k["kid"] for k in jwks["keys"]] == [ring.current.kid]
    cert = x509.load_der_x509_certificate(base64.b64decode(jwks["keys"][0]["x5c"][0]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ISSUER


# -- denials: each answers with an error and never a token ------------------------------------


async def test_revoked_pck_is_denied(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    revoked = SimPlatform(seed=sim.platform.config.seed_bytes, revoked_pck=True)  # same root
    service = make_service(platform=revoked)
    quote = Sim(revoked, sim.enclave_key).quote()
    response = await client_for(service).post(ATTEST, json=sim.body(quote))
    _denied(response, 400, "InvalidParameter", "revoked")
    # The same code as for a revoked TD (the verifier's QuoteRevoked).
    assert response.json()["error"]["innererror"] == {"code": "QuoteRevoked", "step": "revoked"}


async def test_collateral_of_another_platform_is_denied(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    other = SimPlatform(seed="another platform").collateral(datetime.now(UTC))
    response = await client_for(make_service(collateral=other)).post(ATTEST, json=sim.body())
    _denied(response, 400, "InvalidParameter", "root")


async def test_expired_collateral_is_denied(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    stale = sim.platform.collateral(datetime.now(UTC) - timedelta(days=45))
    response = await client_for(make_service(collateral=stale)).post(ATTEST, json=sim.body())
    _denied(response, 400, "InvalidParameter", "expired")


async def test_unavailable_collateral_is_503_without_token(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    def no_collateral(quote: Quote) -> Collateral:
        raise CollateralFetchError("PCCS unreachable", status_code=None)

    service = make_service()
    service.appraiser = DcapAppraiser(no_collateral, extra_root=sim.platform.root_certificate())
    response = await client_for(service).post(ATTEST, json=sim.body())
    _denied(response, 503, "ServiceUnavailable", "unavailable")


async def test_simulated_quote_is_untrusted_without_trust_root(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    response = await client_for(make_service(trust_root=False)).post(ATTEST, json=sim.body())
    _denied(response, 400, "InvalidParameter", "Intel")


async def test_debug_enclave_denied_by_policy_that_forbids_it(
    client: httpx.AsyncClient, sim: Sim, ring: KeyRing
) -> None:
    policy = """version=1.0;
authorizationrules {
    [type=="x-ms-sgx-is-debuggable", value==true] => deny();
    => permit();
};
issuancerules { };
"""
    put = await client.put("/policies/SgxEnclave", content=unsigned_policy_jws(policy))
    assert put.status_code == 200, put.text
    response = await client.post(ATTEST, json=sim.body(sim.quote(debug=True)))
    _denied(response, 400, "PolicyEvaluationError", "rule 1 (line 3)")
    # The same policy still admits the release enclave.
    claims = _claims(await client.post(ATTEST, json=sim.body()), ring)
    assert claims["x-ms-policy-hash"] == policy_hash(policy)


async def test_out_of_date_tcb_denied_by_default_policy(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    outdated = SimPlatform(seed=sim.platform.config.seed_bytes, tcb="OutOfDate")
    quote = Sim(outdated, sim.enclave_key).quote()
    response = await client_for(make_service(platform=outdated)).post(ATTEST, json=sim.body(quote))
    _denied(response, 400, "PolicyEvaluationError", 'value=="OutOfDate"')


async def test_runtime_data_mismatch_is_denied(client: httpx.AsyncClient, sim: Sim) -> None:
    body = sim.body(runtimeData={"data": b64url(b'{"keys":[]}'), "dataType": "JSON"})
    _denied(await client.post(ATTEST, json=body), 400, "InvalidParameter", "report_data[0:32]")


async def test_init_time_data_must_match_config_id(client: httpx.AsyncClient, sim: Sim) -> None:
    body = sim.body(initTimeData={"data": b64url(b"config"), "dataType": "Binary"})
    _denied(await client.post(ATTEST, json=body), 400, "InvalidParameter", "CONFIGID")


async def test_oversized_body_is_rejected(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(make_service(max_body=4096))
    body = sim.body(nonce="x" * 5000)
    with caplog.at_level(logging.WARNING, logger="confnode.attestation"):
        response = await client.post(ATTEST, json=body)
    _denied(response, 413, "RequestEntityTooLarge", "4096")
    assert "413 RequestEntityTooLarge" in caplog.text


async def test_malformed_requests(client: httpx.AsyncClient, sim: Sim) -> None:
    _denied(
        await client.post("/attest/SgxEnclave", json=sim.body()),
        400,
        "InvalidParameter",
        "api-version",
    )
    _denied(await client.post(ATTEST, content=b"{not json"), 400, "InvalidParameter", "JSON")
    _denied(await client.post(ATTEST, json={"quote": "!!!"}), 400, "InvalidParameter", "base64")
    # MAA's code for malformed evidence; ours in innererror.
    short = await client.post(ATTEST, json={"quote": b64url(b"short")})
    _denied(short, 400, "InvalidParameter", "header")
    assert short.json()["error"]["innererror"] == {"code": "InvalidQuote"}
    _denied(
        await client.post("/attest/TdxVm?api-version=2022-08-01", json=sim.body()),
        400,
        "InvalidParameter",
        "TdxVm",
    )


async def test_client_tells_malformed_quotes_from_failed_evidence(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    """Both answer 400 InvalidParameter (as MAA); ``innererror`` tells confnode's client which is
    the caller's input (exit 2) and which the evidence's verdict (exit 1)."""
    malformed = await client.post(ATTEST, json={"quote": b64url(b"short")})
    unbound = await client.post(ATTEST, json=sim.body(sim.quote(report_data=bytes(64))))
    assert malformed.status_code == unbound.status_code == 400, unbound.text

    def replay(answer: httpx.Response) -> AttestationClient:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(answer.status_code, content=answer.content)

        return AttestationClient(ISSUER, transport=httpx.MockTransport(handler))

    with pytest.raises(InvalidInput, match="InvalidParameter") as raised:
        replay(malformed).attest_sgx(b"short")
    assert not isinstance(raised.value, VerificationError)
    with pytest.raises(VerificationError, match="runtimeData"):
        replay(unbound).attest_sgx(b"quote")


async def test_deeply_nested_json_is_malformed_input(client: httpx.AsyncClient, sim: Sim) -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting: still a 400."""
    deep = b"[" * 50_000 + b"]" * 50_000
    _denied(await client.post(ATTEST, content=deep), 400, "InvalidParameter", "not JSON")
    quote = sim.quote(report_data=hashlib.sha256(deep).digest() + bytes(32))
    body = {"quote": b64url(quote), "runtimeData": {"data": b64url(deep), "dataType": "JSON"}}
    _denied(await client.post(ATTEST, json=body), 400, "InvalidParameter", "not JSON")
    header = b64url(b'{"alg":' + deep + b"}")
    response = await client.put("/policies/SgxEnclave", content=f"{header}.e30.")
    _denied(response, 400, "InvalidPolicy", "not JSON")


# -- draft policies ---------------------------------------------------------------------------


async def test_draft_policy_returns_unsigned_token_and_trace(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    draft = 'version=1.0; authorizationrules { c:[type=="x-ms-sgx-svn", value>=0] => permit(); };'
    draft += ' issuancerules { c:[type=="x-ms-sgx-svn"] => issue(type="my-svn", value=c.value); };'
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "none", "typ": "JWT"}
    assert signature == ""
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["my-svn"] == 0
    assert claims["x-ms-policy-hash"] == policy_hash(draft)
    trace = response.json()["trace"]
    assert [t["effect"] for t in trace] == ["permit()", "issue my-svn=0"]


async def test_draft_policy_denial_explains_each_rule(client: httpx.AsyncClient, sim: Sim) -> None:
    draft = """version=1.0;
authorizationrules {
    [type=="x-ms-sgx-product-id", value==7] => permit();
};
issuancerules { };"""
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    _denied(response, 400, "PolicyEvaluationError", "no authorization rule permitted")
    (entry,) = response.json()["error"]["trace"]
    assert entry["line"] == 3 and entry["matched"] is False


async def test_draft_policy_that_multiplies_bindings_is_refused(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    """Anyone with a quote can send a draft policy: its evaluation must stay bounded."""
    bindings = " && ".join(f"v{i}:[]" for i in range(15))
    draft = f'version=1.0; authorizationrules {{ {bindings} && [type=="absent"] => permit(); }};'
    body = sim.body(draftPolicyForAttestation=draft + " issuancerules { };")
    _denied(await client.post(ATTEST, json=body), 400, "PolicyParsingError", "claim comparisons")


async def test_draft_policy_syntax_error_has_line_and_column(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    draft = 'version=1.0;\nauthorizationrules {\n  [type="a"] => permit();\n};'
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    _denied(response, 400, "PolicyParsingError", "line 3, column 8")


# -- policy management ------------------------------------------------------------------------


def _signer(tmp_name: str = "policy signer") -> tuple[SignerKey, x509.Certificate]:
    return policy_signer(tmp_name, serial=1)


def _signed_jws(policy: str, key: Any, cert: x509.Certificate, alg: str = "RS256") -> str:
    from joserfc import jws
    from joserfc.jwk import ECKey, OctKey, RSAKey

    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    # iat: signed changes must be fresh (not replayable).
    payload = json.dumps({"AttestationPolicy": b64url(policy.encode()), "iat": int(time.time())})
    if alg == "HS256":
        jwk: Any = OctKey.import_key(b"k" * 32)
    elif alg == "ES256":
        jwk = ECKey.import_key(key)
    else:
        jwk = RSAKey.import_key(key)
    return jws.serialize_compact({"alg": alg, "x5c": x5c}, payload, jwk, algorithms=[alg])


POLICY_V2 = "version=1.0; authorizationrules { => permit(); }; issuancerules { };"


async def test_signed_policy_from_configured_signer_is_accepted(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim, ring: KeyRing
) -> None:
    key, cert = _signer()
    client = client_for(make_service(signers=(cert,)))
    response = await client.put("/policies/SgxEnclave", content=_signed_jws(POLICY_V2, key, cert))
    result = _claims(response, ring)
    assert result["x-ms-policy-result"] == "Updated"
    assert result["x-ms-policy-signer"]["kty"] == "RSA"
    claims = _claims(await client.post(ATTEST, json=sim.body()), ring)
    assert claims["x-ms-policy-hash"] == policy_hash(POLICY_V2)
    assert claims["x-ms-policy-signer"]["kid"] == result["x-ms-policy-signer"]["kid"]


async def test_es256_signed_policy_is_accepted(
    make_service: ServiceFactory, client_for: ClientFor, ring: KeyRing
) -> None:
    key, cert = policy_signer("ec signer", key=ec.generate_private_key(ec.SECP256R1()), serial=2)
    client = client_for(make_service(signers=(cert,)))
    response = await client.put(
        "/policies/SgxEnclave", content=_signed_jws(POLICY_V2, key, cert, "ES256")
    )
    assert _claims(response, ring)["x-ms-policy-result"] == "Updated"


async def test_unsigned_policy_refused_when_signers_are_configured(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    _, cert = _signer()
    client = client_for(make_service(signers=(cert,)))
    response = await client.put("/policies/SgxEnclave", content=unsigned_policy_jws(POLICY_V2))
    _denied(response, 401, "PolicySignerNotTrusted", "alg none")
    policy = (await client.get("/policies/SgxEnclave")).json()
    assert "token" in policy  # unchanged, still served


async def test_hs256_policy_is_always_refused(client: httpx.AsyncClient) -> None:
    key, cert = _signer()
    response = await client.put(
        "/policies/SgxEnclave", content=_signed_jws(POLICY_V2, key, cert, "HS256")
    )
    _denied(response, 400, "InvalidPolicy", "HMAC")


async def test_policy_jws_with_non_string_alg_is_refused(client: httpx.AsyncClient) -> None:
    header = b64url(json.dumps({"alg": ["RS256"]}).encode())
    response = await client.put("/policies/SgxEnclave", content=f"{header}.e30.c2ln")
    _denied(response, 400, "InvalidPolicy", "not supported")


async def test_policy_from_untrusted_signer_is_refused(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    _, trusted = _signer("trusted")
    key, stranger = _signer("stranger")
    client = client_for(make_service(signers=(trusted,)))
    response = await client.put(
        "/policies/SgxEnclave", content=_signed_jws(POLICY_V2, key, stranger)
    )
    _denied(response, 401, "PolicySignerNotTrusted", "not a configured policy signer")


async def test_policy_with_forged_signature_is_refused(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    _, cert = _signer()
    other, _ = _signer()
    client = client_for(make_service(signers=(cert,)))
    response = await client.put("/policies/SgxEnclave", content=_signed_jws(POLICY_V2, other, cert))
    _denied(response, 401, "PolicySignerNotTrusted", "does not verify")


async def test_get_put_reset_policy_round_trip(client: httpx.AsyncClient, ring: KeyRing) -> None:
    put = await client.put(
        "/policies/SgxEnclave", content=json.dumps(unsigned_policy_jws(POLICY_V2))
    )
    assert _claims(put, ring)["x-ms-policy-result"] == "Updated"
    stored = _claims(await client.get("/policies/SgxEnclave"), ring)["x-ms-policy"]
    payload = json.loads(base64.urlsafe_b64decode(stored.split(".")[1] + "=="))
    assert base64.urlsafe_b64decode(payload["AttestationPolicy"] + "==").decode() == POLICY_V2
    reset = await client.post("/policies/SgxEnclave:reset", content=unsigned_policy_jws(None))
    assert _claims(reset, ring)["x-ms-policy-result"] == "Removed"
    stored = _claims(await client.get("/policies/SgxEnclave"), ring)["x-ms-policy"]
    payload = json.loads(base64.urlsafe_b64decode(stored.split(".")[1] + "=="))
    text = base64.urlsafe_b64decode(payload["AttestationPolicy"] + "==").decode()
    assert text == DEFAULT_SGX_POLICY


async def test_without_a_policy_signer_policy_changes_are_refused(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    service = make_service(insecure_unsigned_policy_changes=False, management_auth=admin_reviews())
    client = client_for(service)
    unsigned = json.dumps(unsigned_policy_jws(POLICY_V2))
    _denied(
        await client.put("/policies/SgxEnclave", content=unsigned, headers=ADMIN),
        403,
        "PolicyChangesDisabled",
        "no policy signer",
    )
    key, cert = _signer()
    signed = _signed_jws(POLICY_V2, key, cert)  # any self-chosen key would do: refuse it too
    _denied(
        await client.put("/policies/SgxEnclave", content=signed, headers=ADMIN),
        403,
        "PolicyChangesDisabled",
        "no policy signer",
    )
    reset = await client.post(
        "/policies/SgxEnclave:reset", content=unsigned_policy_jws(None), headers=ADMIN
    )
    _denied(reset, 403, "PolicyChangesDisabled", "no policy signer")
    # An authenticated administrator may still read it.
    assert (await client.get("/policies/SgxEnclave", headers=ADMIN)).status_code == 200


async def test_bad_policy_text_is_rejected_with_position(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/policies/SgxEnclave", content=unsigned_policy_jws("version=1.0; authorizationrules {")
    )
    _denied(response, 400, "PolicyParsingError", "line 1, column")


# -- key release ------------------------------------------------------------------------------


async def test_key_release_wraps_key_to_enclave_key(
    client: httpx.AsyncClient, sim: Sim, enclave_key: Any
) -> None:
    import hashlib

    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    response = await client.post("/keys/app/release", json={"target": token})
    assert response.status_code == 200, response.text
    released = json.loads(unwrap(response.json()["value"], enclave_key))
    assert released["kty"] == "oct"
    assert base64.urlsafe_b64decode(released["k"] + "=") == hashlib.sha256(b"app key").digest()


async def test_key_release_denied_for_debug_enclave(client: httpx.AsyncClient, sim: Sim) -> None:
    token = (await client.post(ATTEST, json=sim.body(sim.quote(debug=True)))).json()["token"]
    response = await client.post("/keys/app/release", json={"target": token})
    _denied(response, 403, "PolicyDenied", "x-ms-sgx-is-debuggable equals false")


async def test_key_release_refuses_forged_and_draft_tokens(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    draft = "version=1.0; authorizationrules { => permit(); }; issuancerules { };"
    unsigned = (await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))).json()
    response = await client.post("/keys/app/release", json={"target": unsigned["token"]})
    _denied(response, 401, "InvalidToken", "'none'")
    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["x-ms-sgx-mrenclave"] = "00" * 32
    forged = f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
    response = await client.post("/keys/app/release", json={"target": forged})
    _denied(response, 401, "InvalidToken", "signature")


async def test_broken_release_policy_file_is_a_server_fault(
    client: httpx.AsyncClient, sim: Sim, keys_dir: Path
) -> None:
    """The caller cannot fix the operator's policy file: 503 naming the file, not a 400."""
    (keys_dir / "app.policy.json").write_text('{"anyOf": []}')
    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    response = await client.post("/keys/app/release", json={"target": token})
    _denied(response, 503, "ServiceUnavailable", "unavailable")  # the path is only logged
    assert "value" not in response.json()


async def test_unknown_key_is_404(client: httpx.AsyncClient, sim: Sim) -> None:
    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    response = await client.post("/keys/nope/release", json={"target": token})
    _denied(response, 404, "KeyNotFound", "nope")
    response = await client.post("/keys/..%2Fetc/release", json={"target": token})
    assert response.status_code in (400, 404)
    assert "token" not in response.text


async def test_policy_signed_by_the_azure_sdk_is_accepted(
    make_service: ServiceFactory, client_for: ClientFor, ring: KeyRing
) -> None:
    """The SDK 1.0 spells RS256 "RSA256" and puts x5c inside jwk; isolated mode must accept it."""
    pytest.importorskip("azure.security.attestation")
    from azure.security.attestation import AttestationToken
    from azure.security.attestation._generated.models import StoredAttestationPolicy

    key, cert = _signer()
    client = client_for(make_service(signers=(cert,)))
    # What SDK 1.0's set_policy sends: no iat, so it could be replayed, and it is refused.
    sdk_body = StoredAttestationPolicy(attestation_policy=POLICY_V2.encode())
    unfresh = AttestationToken(body=sdk_body, signing_key=key, signing_certificate=cert)
    response = await client.put("/policies/SgxEnclave", content=unfresh.to_jwt_string())
    _denied(response, 401, "PolicyNotFresh", "carries no iat")
    # The same SDK signing code over a body with iat is accepted.
    body = {"AttestationPolicy": b64url(POLICY_V2.encode()), "iat": int(time.time())}
    token = AttestationToken(body=body, signing_key=key, signing_certificate=cert)
    response = await client.put("/policies/SgxEnclave", content=token.to_jwt_string())
    assert _claims(response, ring)["x-ms-policy-result"] == "Updated"
    _, stranger_cert = _signer("stranger")
    client = client_for(make_service(signers=(stranger_cert,)))
    response = await client.put("/policies/SgxEnclave", content=token.to_jwt_string())
    _denied(response, 401, "PolicySignerNotTrusted", "not a configured policy signer")


async def test_rotated_signing_key_is_picked_up_without_restart(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim, tmp_path: Path
) -> None:
    directory = KeyDirectory(tmp_path / "signing")
    now = datetime.now(UTC)
    source = ReloadingKeyRing(directory, ISSUER, now)
    client = client_for(make_service(ring=source.current(now), ring_source=source))
    old_token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    directory.rotate(ISSUER, now, timedelta(hours=8))
    jwks = (await client.get("/certs")).json()
    assert len(jwks["keys"]) == 2
    new_token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    assert token_header(new_token)["kid"] == jwks["keys"][0]["kid"]
    assert token_header(old_token)["kid"] == jwks["keys"][1]["kid"]
    for token in (old_token, new_token):
        assert validate_token(token, jwks, issuer=SIM_ISSUER, now=now)["iss"] == SIM_ISSUER


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_mutated_quotes_are_rejected_never_attested(
    client: httpx.AsyncClient, sim: Sim, data: st.DataObject
) -> None:
    original = sim.quote()
    quote = bytearray(original)
    # Bytes covered by a signature: header, report body, ISV signature, attestation key, QE
    # report and its signature. (The PEM chain after them tolerates whitespace changes.)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, 1011))
        quote[index] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        quote = quote[: data.draw(st.integers(0, len(quote)))]
    assume(bytes(quote) != original)
    response = await client.post(ATTEST, json=sim.body(bytes(quote)))
    assert response.status_code in (400, 401), response.text
    assert "token" not in response.json()


async def test_intel_rooted_quote_is_not_marked_simulated(vectors: Path, sim: Sim) -> None:
    """A real Intel quote stays unmarked even when a simulated root is also trusted."""
    sample = vectors / "Phala-Network_dcap-qvl" / "sample"
    bundle = Collateral.from_json((sample / "sgx_quote_collateral.json").read_text())

    def lookup(quote: Quote) -> Collateral:
        return bundle

    appraiser = DcapAppraiser(lookup, extra_root=sim.platform.root_certificate())
    at = datetime(2025, 7, 1, tzinfo=UTC)
    evidence = await appraiser.appraise((sample / "sgx_quote").read_bytes(), now=at)
    assert evidence.simulated is False
    assert evidence.tcb_status == "ConfigurationAndSWHardeningNeeded"


async def test_collateral_is_not_fetched_for_untrusted_chains_or_tdx(
    vectors: Path, sim: Sim
) -> None:
    """The FMSPC comes from the unverified PCK certificate: no PCCS call unless it chains."""
    asked: list[Quote] = []

    def lookup(quote: Quote) -> Collateral:
        asked.append(quote)
        return sim.platform.collateral(datetime.now(UTC))

    now = datetime.now(UTC)
    untrusting = DcapAppraiser(lookup)  # the simulated root is not trusted
    with pytest.raises(UntrustedRoot, match="collateral was not fetched"):
        await untrusting.appraise(sim.quote(), now=now)
    other_root = SimPlatform(seed="another platform").root_certificate()
    with pytest.raises(UntrustedRoot):
        await DcapAppraiser(lookup, extra_root=other_root).appraise(sim.quote(), now=now)
    tdx = (vectors / "Phala-Network_dcap-qvl" / "sample" / "tdx_quote").read_bytes()
    with pytest.raises(QuoteFormatUnsupported, match="expected an SGX quote"):
        await untrusting.appraise(tdx, now=now)
    assert asked == []
    trusting = DcapAppraiser(lookup, extra_root=sim.platform.root_certificate())
    assert (await trusting.appraise(sim.quote(), now=now)).simulated is True
    assert len(asked) == 1


async def test_collateral_is_not_fetched_for_an_untrusted_chain_in_a_v4_sgx_quote(
    sim: Sim,
) -> None:
    """A v4 SGX quote nests its PCK chain one level deeper (type-6 certification data); its
    chain is checked before any collateral fetch all the same (the verifier refuses SGX v4 only
    later, after the fetch)."""
    asked: list[Quote] = []

    def lookup(quote: Quote) -> Collateral:
        asked.append(quote)
        return sim.platform.collateral(datetime.now(UTC))

    v3 = parse_quote(sim.quote())
    assert isinstance(v3.signature_data, EcdsaSigData)
    sig = v3.signature_data
    v4 = Quote(
        dataclasses.replace(v3.header, version=4),
        v3.body,
        EcdsaSigDataV4(
            sig.signature,
            sig.attest_pub_key,
            QeReportCertificationData(
                sig.qe_report, sig.qe_report_signature, sig.qe_auth_data, sig.certification
            ),
        ),
    )
    with pytest.raises(UntrustedRoot, match="collateral was not fetched"):
        await DcapAppraiser(lookup).appraise(v4.raw, now=datetime.now(UTC))
    assert asked == []
