"""Simulated evidence: refused unless the operator opts in, and then unmistakable in tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from attestation_testlib import ATTEST, ISSUER, SIM_ISSUER, ServiceFactory, Sim
from click.testing import CliRunner

from confnode.attestation import AttestationService, KeyStore
from confnode.attestation._server import Settings
from confnode.cli import main_group
from confnode.errors import InvalidInput
from confnode.tokens import KeyRing, TokenValidationError, validate_token

ClientFor = Callable[[AttestationService], httpx.AsyncClient]


async def test_simulated_evidence_is_refused_by_default(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    client = client_for(make_service(allow_simulated=False))
    response = await client.post(ATTEST, json=sim.body())
    assert response.status_code in (400, 401), response.text  # failed evidence, MAA-coded
    assert "simulated platform" in response.json()["error"]["message"]
    assert "token" not in response.json()
    draft = "version=1.0; authorizationrules { => permit(); };"  # no policy can opt in
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code in (400, 401), response.text
    assert (await client.get("/simulated/.well-known/openid-configuration")).status_code == 404


async def test_simulated_tokens_fail_validation_against_the_real_issuer(
    client: httpx.AsyncClient, sim: Sim, ring: KeyRing
) -> None:
    """A relying party that checks only signature and issuer does not accept them."""
    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    now = datetime.now(UTC)
    with pytest.raises(TokenValidationError, match="/simulated"):
        validate_token(token, ring.jwks(now), issuer=ISSUER, now=now)
    claims = validate_token(token, ring.jwks(now), issuer=SIM_ISSUER, now=now)
    assert claims["x-ms-attestation-type"] == "sgx-simulated"
    assert claims["x-confnode-simulated"] is True


async def test_simulated_issuer_has_its_own_discovery_document(
    client: httpx.AsyncClient, ring: KeyRing
) -> None:
    config = (await client.get("/simulated/.well-known/openid-configuration")).json()
    assert config["issuer"] == SIM_ISSUER
    assert config["jwks_uri"] == f"{SIM_ISSUER}/certs"
    keys = (await client.get("/simulated/certs")).json()
    assert keys == ring.jwks(datetime.now(UTC))


async def test_release_needs_a_policy_that_names_the_simulated_authority(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim, tmp_path: Path
) -> None:
    keys = tmp_path / "release-keys"
    keys.mkdir()
    (keys / "real.key").write_bytes(b"r" * 32)  # default policy: this authority, not simulated
    runner = CliRunner()
    created = runner.invoke(
        main_group,
        ["attestation", "new-key", "sim", "--keys-dir", str(keys), "--authority", ISSUER,
         "--allow-simulated"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    policy = json.loads((keys / "sim.policy.json").read_text())
    assert [rule["authority"] for rule in policy["anyOf"]] == [ISSUER, SIM_ISSUER]
    client = client_for(make_service(keys=KeyStore(keys, ISSUER)))
    token = (await client.post(ATTEST, json=sim.body())).json()["token"]
    denied = await client.post("/keys/real/release", json={"target": token})
    assert denied.status_code == 403, denied.text
    assert "does not match token issuer" in denied.json()["error"]["message"]
    released = await client.post("/keys/sim/release", json={"target": token})
    assert released.status_code == 200, released.text


async def test_without_opt_in_simulated_tokens_are_not_released(
    make_service: ServiceFactory, client_for: ClientFor, sim: Sim
) -> None:
    token = (await client_for(make_service()).post(ATTEST, json=sim.body())).json()["token"]
    strict = client_for(make_service(allow_simulated=False))
    response = await strict.post("/keys/app/release", json={"target": token})
    assert response.status_code in (400, 401), response.text
    assert "token issuer" in response.json()["error"]["message"]


def test_trust_root_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--allow-simulated"):
        Settings(
            signing_key_dir=str(tmp_path),
            insecure_http=True,
            collateral_dir=str(tmp_path),
            trust_root=str(tmp_path / "root.der"),
        )
    with pytest.raises(InvalidInput, match="'ldap'"):
        Settings(
            signing_key_dir=str(tmp_path),
            insecure_http=True,
            collateral_dir=str(tmp_path),
            policy_admin_auth="ldap",
        )
