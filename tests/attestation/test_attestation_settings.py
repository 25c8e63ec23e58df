"""Service settings, collateral sources and policy persistence shared by replicas."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from attestation_testlib import Sim

from confnode.attestation import PolicyStore, unsigned_policy_jws
from confnode.attestation._policies import read_policy_jws, stored
from confnode.attestation._server import (
    Settings,
    build_service,
    collateral_client,
    worker_settings,
)
from confnode.errors import CollateralFetchError, InvalidInput
from confnode.policy import DEFAULT_SGX_POLICY

POLICY = "version=1.0; authorizationrules { => permit(); }; issuancerules { };"


def test_https_is_required_unless_insecure_http(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="HTTPS needs --tls-cert and --tls-key"):
        Settings(signing_key_dir=str(tmp_path), collateral_dir=str(tmp_path))
    with pytest.raises(InvalidInput, match="cannot be combined"):
        Settings(
            signing_key_dir=str(tmp_path),
            collateral_dir=str(tmp_path),
            insecure_http=True,
            tls_cert="c",
            tls_key="k",
        )
    with pytest.raises(InvalidInput, match="no collateral source"):
        Settings(signing_key_dir=str(tmp_path), insecure_http=True)


def test_settings_round_trip_for_workers(tmp_path: Path) -> None:
    settings = Settings(
        signing_key_dir=str(tmp_path),
        insecure_http=True,
        collateral_dir=str(tmp_path),
        policy_signers=("a.pem", "b.pem"),
        port=9000,
    )
    assert Settings.from_json(settings.to_json()) == settings
    assert settings.public_url == "http://127.0.0.1:9000"


def test_offline_collateral_bundles_serve_their_platform(tmp_path: Path, sim: Sim) -> None:
    (tmp_path / "bundle.json").write_text(sim.platform.collateral_json(datetime.now(UTC)))
    settings = Settings(
        signing_key_dir=str(tmp_path / "k"), insecure_http=True, collateral_dir=str(tmp_path)
    )
    client = collateral_client(settings)
    from confnode.sgx import parse_quote

    collateral = client.for_quote(parse_quote(sim.quote()))
    assert collateral.tcb_info.info.fmspc == sim.platform.fmspc
    other = Sim(type(sim.platform)(fmspc="00906ED50000"), sim.enclave_key)
    with pytest.raises(CollateralFetchError, match="offline"):
        client.for_quote(parse_quote(other.quote()))


def test_offline_bundle_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_bytes(b"\xff\xfe not a bundle")
    settings = Settings(
        signing_key_dir=str(tmp_path / "k"), insecure_http=True, collateral_dir=str(tmp_path)
    )
    with pytest.raises(InvalidInput, match=r"broken\.json.*not valid UTF-8"):
        collateral_client(settings)


def test_build_service_creates_signing_key_and_trusts_extra_root(tmp_path: Path, sim: Sim) -> None:
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "b.json").write_text(sim.platform.collateral_json())
    (tmp_path / "root.der").write_bytes(sim.platform.root_certificate())
    settings = Settings(
        signing_key_dir=str(tmp_path / "signing"),
        insecure_http=True,
        collateral_dir=str(tmp_path / "bundles"),
        trust_root=str(tmp_path / "root.der"),
        allow_simulated=True,
        issuer="https://attest.example/",
    )
    service = build_service(settings)
    assert service.issuer == "https://attest.example"
    assert (tmp_path / "signing" / "signing-key.pem").is_file()


def test_policy_file_is_shared_between_replicas(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    first, second = PolicyStore(path), PolicyStore(path)
    upload = read_policy_jws(unsigned_policy_jws(POLICY), signers=(), require_policy=True)
    assert upload.text == POLICY
    first.set(stored(POLICY, upload.jws))
    assert second.current().text == POLICY
    assert json.loads(path.read_text())["text"] == POLICY
    second.set(None)
    assert first.current().text == DEFAULT_SGX_POLICY


def test_new_key_refuses_to_overwrite_and_unreleasable_names(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from confnode.cli import main_group

    def new_key(name: str) -> tuple[int, str]:
        args = ["attestation", "new-key", name, "--keys-dir", str(tmp_path), "--authority", "x"]
        result = CliRunner().invoke(main_group, args)
        return result.exit_code, result.output

    assert new_key("app")[0] == 0
    original = (tmp_path / "app.key").read_bytes()
    code, output = new_key("app")
    assert code != 0 and "already exists" in output
    assert (tmp_path / "app.key").read_bytes() == original
    code, output = new_key("app.v2")  # the key store could never serve this name
    assert code != 0 and "invalid" in output
    assert not (tmp_path / "app.v2.key").exists()


def test_workers_share_a_policy_file_even_without_policy_file(tmp_path: Path, sim: Sim) -> None:
    """Each uvicorn worker is a process: a PUT must reach the other workers' policy too."""
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "b.json").write_text(sim.platform.collateral_json())
    settings = Settings(
        signing_key_dir=str(tmp_path / "signing"),
        insecure_http=True,
        collateral_dir=str(tmp_path / "bundles"),
        workers=2,
    )
    shared = Settings.from_json(worker_settings(settings, tmp_path / "scratch").to_json())
    (tmp_path / "scratch").mkdir()
    first, second = build_service(shared), build_service(shared)
    first.policies.set(stored(POLICY))
    assert second.policies.current().text == POLICY
    explicit = Settings(**{**asdict(settings), "policy_file": str(tmp_path / "mine.json")})
    assert worker_settings(explicit, tmp_path / "scratch") == explicit
