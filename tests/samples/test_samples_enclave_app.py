"""The sample enclave app end to end against real processes: quote helper, PCCS, attestation."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from joserfc.jwk import ECKey
from samples_testlib import Node, free_port

import confnode.cli._sample  # noqa: F401  (registers `sample-app` until cli/__init__ imports it)
from confnode.attestation.client import AttestationClient
from confnode.cli._common import main_group
from confnode.errors import InfrastructureError, InvalidInput, VerificationError
from confnode.samples.enclave_app import (
    SAMPLE_MR_ENCLAVE,
    SAMPLE_MR_SIGNER,
    STEPS,
    EnclaveApp,
    EnclaveKey,
    KeyType,
    SampleInfrastructureError,
    SampleInputError,
    SampleVerificationError,
    Step,
)
from confnode.sim import SimPlatform

STEPS_INDEX = {name: i for i, name in enumerate(STEPS)}


def _app(node: Node, cls: type[EnclaveApp] = EnclaveApp, **overrides: object) -> EnclaveApp:
    options: dict[str, object] = {
        "socket_path": node.socket_path,
        "sim_state": node.sim_state,
        "attestation_url": node.url,
        "tls": node.tls(),
        "key_name": "sample-key",
    }
    options.update(overrides)
    return cls(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_type", ["EC", "RSA"])
def test_flow_releases_the_configured_key_to_the_enclave(node: Node, key_type: KeyType) -> None:
    seen: list[Step] = []
    result = _app(node, key_type=key_type).run(seen.append)

    assert [step.name for step in result.steps] == list(STEPS)
    assert [step.number for step in result.steps] == list(range(1, 9))
    assert seen == list(result.steps)
    assert all(step.seconds >= 0 and step.detail for step in result.steps)

    claims = result.claims
    assert claims["x-ms-sgx-mrenclave"] == SAMPLE_MR_ENCLAVE.hex() == result.mr_enclave.hex()
    assert claims["x-ms-sgx-mrsigner"] == SAMPLE_MR_SIGNER.hex()
    assert claims["x-confnode-simulated"] is True
    assert claims["x-confnode-tcb-status"] == "UpToDate"
    assert claims["x-ms-sgx-is-debuggable"] is False
    assert claims["iss"] == f"{node.url}/simulated"
    runtime_keys = claims["x-ms-runtime"]["keys"]
    assert [k["kty"] for k in runtime_keys] == [key_type]

    assert result.released_kty == "oct"
    assert result.secret == node.keys["sample-key"]
    assert result.secret_sha256 == hashlib.sha256(node.keys["sample-key"]).hexdigest()
    assert repr(node.keys["sample-key"]) not in repr(result)
    wrap = "ECDH-ES" if key_type == "EC" else "RSA-OAEP-256"
    assert wrap in result.steps[STEPS_INDEX["release"]].detail


def test_unknown_key_name_fails_at_release_naming_the_key(node: Node) -> None:
    with pytest.raises(SampleInputError) as caught:
        _app(node, key_name="no-such-key").run()
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert error.step == "release"
    assert "step 7 'release'" in error.message and "no-such-key" in error.message
    assert "404" in error.message
    assert [s.name for s in error.completed] == list(STEPS)[:6]


def test_release_policy_denial_is_a_verification_error(node: Node) -> None:
    with pytest.raises(SampleVerificationError) as caught:
        _app(node, key_name="locked-key").run()
    error = caught.value
    assert isinstance(error, VerificationError)
    assert error.step == "release"
    assert "403" in error.message and "x-ms-sgx-mrenclave" in error.message
    assert error.hint is not None and SAMPLE_MR_ENCLAVE.hex() in error.hint


class _BindsAnotherKey(EnclaveApp):
    """Hashes its own key into report_data but presents a different key as runtimeData."""

    def bind(self, key: EnclaveKey) -> tuple[tuple[bytes, bytes], str]:
        (_, report_data), detail = super().bind(key)
        (other_runtime, _), _ = super().bind(ECKey.generate_key("P-256"))
        return (other_runtime, report_data), detail


def test_runtime_data_binding_another_key_is_denied_by_the_service(node: Node) -> None:
    with pytest.raises(SampleVerificationError) as caught:
        _app(node, _BindsAnotherKey).run()
    error = caught.value
    assert error.step == "attest"
    assert "runtimeData" in error.message and "report_data" in error.message
    assert len(error.completed) == 4


def test_token_for_another_enclave_is_refused_by_the_app(node: Node) -> None:
    app = _app(node)
    result = app.run()
    other = SimPlatform.load(node.sim_state).enclave(mr_enclave=hashlib.sha256(b"x").digest())
    report_data = bytes.fromhex(result.claims["x-ms-sgx-report-data"])
    with AttestationClient(node.url, verify=node.tls()) as client:
        with pytest.raises(VerificationError, match="MRENCLAVE"):
            app.validate(client, result.token, other, report_data)
        mine = SimPlatform.load(node.sim_state).enclave(mr_enclave=SAMPLE_MR_ENCLAVE)
        with pytest.raises(VerificationError, match="report_data"):
            app.validate(client, result.token, mine, bytes(64))


def test_quote_helper_of_another_platform_rejects_the_report(node: Node, tmp_path: Path) -> None:
    SimPlatform(tmp_path / "other", seed="another node")
    with pytest.raises(SampleInputError) as caught:
        _app(node, sim_state=tmp_path / "other").run()
    error = caught.value
    assert error.step == "quote"
    assert "AESM_INVALID_REPORT" in error.message
    assert error.hint is not None and str(tmp_path / "other") in error.hint


def test_missing_platform_state_fails_at_the_first_step(node: Node, tmp_path: Path) -> None:
    with pytest.raises(SampleInfrastructureError) as caught:
        _app(node, sim_state=tmp_path / "absent").run()
    assert caught.value.step == "enclave"
    assert caught.value.completed == ()
    assert "no simulated platform" in caught.value.message


def test_unreachable_service_is_an_infrastructure_error(node: Node) -> None:
    with pytest.raises(SampleInfrastructureError) as caught:
        _app(node, attestation_url=f"https://127.0.0.1:{free_port()}").run()
    error = caught.value
    assert isinstance(error, InfrastructureError)
    assert error.step == "attest"
    assert [s.name for s in error.completed] == list(STEPS)[:4]


def test_service_certificate_not_trusted_is_an_infrastructure_error(node: Node) -> None:
    with pytest.raises(SampleInfrastructureError, match="CERTIFICATE_VERIFY_FAILED"):
        _app(node, tls=ssl.create_default_context()).run()


# --- CLI ----------------------------------------------------------------------------------------


def _cli(node: Node, *extra: str) -> list[str]:
    return [
        "sample-app",
        "--socket",
        str(node.socket_path),
        "--sim-state",
        str(node.sim_state),
        "--attestation-url",
        node.url,
        "--ca-cert",
        str(node.ca_cert),
        *extra,
    ]


def test_cli_prints_every_step_and_a_summary(node: Node) -> None:
    result = CliRunner().invoke(main_group, _cli(node, "--key-type", "rsa"))
    assert result.exit_code == 0, result.output
    for number, name in enumerate(STEPS, start=1):
        assert f"{number}/8 {name}" in result.output
    assert "sample app summary" in result.output
    assert "all 8 steps succeeded" in result.output
    assert "UpToDate" in result.output


def test_cli_json_reports_the_fingerprint_not_the_secret(node: Node) -> None:
    result = CliRunner().invoke(main_group, [*_cli(node), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert [s["name"] for s in doc["steps"]] == list(STEPS)
    assert doc["secret_sha256"] == hashlib.sha256(node.keys["sample-key"]).hexdigest()
    assert doc["claims"]["x-ms-sgx-mrenclave"] == SAMPLE_MR_ENCLAVE.hex()
    assert node.keys["sample-key"].hex() not in result.output


def test_cli_denied_release_exits_1_and_shows_where_it_stopped(node: Node) -> None:
    result = CliRunner().invoke(main_group, _cli(node, "--key", "locked-key"))
    assert result.exit_code == 1
    assert "failed" in result.stdout and "not run" in result.stdout
    assert "step 7 'release'" in result.stderr


def test_cli_json_failure_is_json_and_exits_3_when_service_is_down(node: Node) -> None:
    args = _cli(node, "--json")
    args[args.index(node.url)] = f"https://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main_group, args)
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["failed_step"] == "attest"
    assert len(doc["steps"]) == 4
