"""The unmodified Azure SDK (azure-security-attestation) against the service over HTTPS.

The service runs on uvicorn in a thread on 127.0.0.1 with a throwaway CA (trustme); the SDK is
only told the endpoint and which CA to trust, and validates the token with its own code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from attestation_testlib import HttpsService, SdkCredential, Sim
from click.testing import CliRunner

from confnode.attestation import AttestationService, KeyStore, PolicyStore
from confnode.attestation._dcap import DcapAppraiser
from confnode.cli import main_group
from confnode.collateral import Collateral
from confnode.sgx import Quote
from confnode.tokens import KeyDirectory

azure_attestation = pytest.importorskip("azure.security.attestation")


@pytest.fixture(scope="module")
def https_service(
    tmp_path_factory: pytest.TempPathFactory, sim: Sim, serve_https: HttpsService
) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("https")
    collateral = sim.platform.collateral(datetime.now(UTC))
    keys = tmp / "keys"

    def lookup(quote: Quote) -> Collateral:
        return collateral

    def make_service(url: str) -> AttestationService:
        created = CliRunner().invoke(
            main_group,
            [
                "attestation",
                "new-key",
                "cli-key",
                "--keys-dir",
                str(keys),
                "--authority",
                url,
                "--allow-simulated",
            ],
        )
        assert created.exit_code == 0, created.output
        return AttestationService(
            appraiser=DcapAppraiser(lookup, extra_root=sim.platform.root_certificate()),
            ring=KeyDirectory(tmp / "signing").load_or_create(url, datetime.now(UTC)),
            issuer=url,
            policies=PolicyStore(),
            keys=KeyStore(keys, url),
            # The SDK's administration client uploads unsigned policies unless given a signing key.
            insecure_unsigned_policy_changes=True,
            allow_simulated=True,
        )

    with serve_https(tmp, make_service) as served:
        yield served


def test_azure_sdk_attests_simulated_quote_and_validates_token(
    https_service: tuple[str, str], sim: Sim
) -> None:
    from azure.security.attestation import AttestationClient

    url, ca_file = https_service
    client = AttestationClient(url, SdkCredential(), connection_verify=ca_file)
    with client:
        result, token = client.attest_sgx_enclave(
            sim.quote(),
            runtime_json=sim.runtime,
            validate_issuer=True,
            issuer=f"{url}/simulated",  # tokens about simulated evidence have their own issuer
        )
        signers = client.get_signing_certificates()
    assert token.algorithm == "RS256"
    assert token.key_id == signers[0].key_id
    assert result.issuer == f"{url}/simulated"
    identity = sim.platform.enclave().identity
    assert result.mr_enclave == identity.mr_enclave.hex()
    assert result.mr_signer == identity.mr_signer.hex()
    assert result.is_debuggable is False
    assert result.verifier_type == "sgx-simulated"
    assert result.runtime_claims["keys"][0]["kid"] == "ek"
    raw = token._body
    assert raw["x-confnode-simulated"] is True
    assert raw["x-confnode-tcb-status"] == "UpToDate"


def test_azure_sdk_rejects_a_token_signed_by_another_key(
    https_service: tuple[str, str], sim: Sim, tmp_path: Path
) -> None:
    """The SDK's validation is real: a token whose kid is unknown to /certs fails it."""
    from azure.security.attestation import (
        AttestationClient,
        AttestationToken,
        AttestationTokenValidationException,
    )
    from azure.security.attestation._generated.models import AttestationResult

    from confnode.tokens import TokenIssuer

    url, ca_file = https_service
    stranger = KeyDirectory(tmp_path).load_or_create(url, datetime.now(UTC))
    forged = TokenIssuer(stranger, url).sign({"x-ms-ver": "1.0"}, datetime.now(UTC))
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        signers = client.get_signing_certificates()
    token = AttestationToken(token=forged, body_type=AttestationResult)
    with pytest.raises(AttestationTokenValidationException, match="Could not find the certificate"):
        token._validate_token(signers)


def test_azure_sdk_draft_policy_returns_unsecured_token(
    https_service: tuple[str, str], sim: Sim
) -> None:
    from azure.security.attestation import AttestationClient

    url, ca_file = https_service
    draft = (
        "version=1.0; authorizationrules { => permit(); }; "
        'issuancerules { c:[type=="x-ms-sgx-svn"] => issue(type="draft-svn", value=c.value); };'
    )
    with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
        _, token = client.attest_sgx_enclave(
            sim.quote(), runtime_json=sim.runtime, draft_policy=draft
        )
    assert token.algorithm == "none"
    assert token._body["draft-svn"] == 0


def test_azure_sdk_administration_client_sets_gets_and_resets_policy(
    https_service: tuple[str, str], sim: Sim
) -> None:
    from azure.security.attestation import (
        AttestationAdministrationClient,
        AttestationClient,
        AttestationType,
    )

    url, ca_file = https_service
    policy = (
        "version=1.0; authorizationrules { => permit(); }; "
        'issuancerules { c:[type=="x-ms-sgx-mrsigner"] => issue(type="signer", value=c.value); };'
    )
    with AttestationAdministrationClient(url, SdkCredential(), connection_verify=ca_file) as admin:
        try:
            result, _ = admin.set_policy(AttestationType.SGX_ENCLAVE, policy)
            assert result.policy_resolution == "Updated"
            current, _ = admin.get_policy(AttestationType.SGX_ENCLAVE)
            assert current == policy
            with AttestationClient(url, SdkCredential(), connection_verify=ca_file) as client:
                _, token = client.attest_sgx_enclave(sim.quote(), runtime_json=sim.runtime)
            assert token._body["signer"] == sim.platform.enclave().identity.mr_signer.hex()
        finally:
            reset, _ = admin.reset_policy(AttestationType.SGX_ENCLAVE)
        assert reset.policy_resolution == "Removed"


def test_cli_sim_attest_shows_claims_and_releases_key(
    https_service: tuple[str, str], sim: Sim, tmp_path: Path
) -> None:
    url, ca_file = https_service
    sim.platform.save(tmp_path / "sim")
    args = ["attestation", "sim-attest", "--url", url, "--ca-cert", ca_file, "--json"]
    args += ["--sim-dir", str(tmp_path / "sim")]
    result = CliRunner().invoke(main_group, [*args, "--release", "cli-key", "--nonce", "n-9"])
    assert result.exit_code == 0, result.output
    claims = json.loads(result.output[: result.output.rindex("}") + 1])
    assert claims["nonce"] == "n-9" and claims["x-confnode-simulated"] is True
    assert "released key cli-key (oct)" in result.output
    denied = CliRunner().invoke(main_group, [*args, "--debug-enclave", "--release", "cli-key"])
    assert denied.exit_code == 1
    assert "x-ms-sgx-is-debuggable equals false" in denied.output
