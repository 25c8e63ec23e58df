"""``confnode node probe`` says why a quote fails when the helper cannot open the SGX devices.

Defect 3: a non-root quote helper and a root-owned ``/dev/sgx_provision``. DCAP then answers
AESM_UNEXPECTED_ERROR, which says nothing; the probe asks the socket who serves it
(``SO_PEERCRED``), checks that process's ids against the device nodes and puts the reason and
the fix in its hint. The helper here runs in this test process; the hidden ``--proc-root``
(a fake ``<pid>/status``) makes it a uid-65532 process and ``--dev-root`` holds the devices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from qh_harness import start_helper

from confnode.cli import main_group
from confnode.cli._common import err_console
from confnode.client import AesmCode
from confnode.quotehelper import BackendError, SimBackend
from confnode.sim import SimPlatform


class _NoProvisioningBackend(SimBackend):
    """The simulated QE, failing quotes as DCAP does without the provisioning device:
    SGX_QL_ERROR_INVALID_PRIVILEGE (0xE035), which aesmd's table sends as UNEXPECTED_ERROR."""

    name = "no-provisioning"

    def quote(self, report: bytes, qe_report_info: bytes | None) -> tuple[bytes, bytes | None]:
        raise BackendError("quote3_error_t 0xE035", aesm_code=AesmCode.UNEXPECTED_ERROR)


@pytest.fixture(autouse=True)
def wide_err_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(err_console, "_width", 400)


def _fake_host(base: Path, *, helper_groups: str = "", provision_mode: int = 0o600) -> list[str]:
    """A /dev with the in-kernel driver's nodes and a /proc saying this process is uid 65532."""
    dev, proc = base / "dev", base / "proc" / str(os.getpid())
    dev.mkdir(parents=True)
    proc.mkdir(parents=True)
    (dev / "sgx_enclave").write_bytes(b"")
    (dev / "sgx_enclave").chmod(0o666)
    (dev / "sgx_provision").write_bytes(b"")
    (dev / "sgx_provision").chmod(provision_mode)
    (proc / "status").write_text(
        "Name:\tconfnode\nUid:\t65532\t65532\t65532\t65532\nGid:\t65532\t65532\t65532\t65532\n"
        f"Groups:\t{helper_groups}\n"
    )
    return ["--dev-root", str(dev), "--proc-root", str(base / "proc")]


@pytest.fixture
def failing_helper(tmp_path: Path, short_dir: Path) -> Iterator[list[str]]:
    state = tmp_path / "state"
    helper = start_helper(
        _NoProvisioningBackend(SimPlatform(state_dir=state).quoting_enclave), short_dir
    )
    yield ["node", "probe", "--socket", str(helper.socket_path), "--state", str(state)]
    helper.stop()


def test_probe_says_the_helper_cannot_open_the_provisioning_device(
    failing_helper: list[str], tmp_path: Path
) -> None:
    host = _fake_host(tmp_path / "host")
    runner = CliRunner()
    plain = runner.invoke(main_group, [*failing_helper, *host])
    assert plain.exit_code == 3, plain.output
    assert "UNEXPECTED_ERROR" in plain.output
    assert (
        f"hint: the quote helper (pid {os.getpid()}: uid 65532, gid 65532, no supplementary "
        "groups) cannot open /dev/sgx_provision (owner"
    ) in plain.output
    assert "mode 0600) read-write, which DCAP quoting needs: set " in plain.output
    assert "device_ownership_from_security_context = true" in plain.output
    assert "sgx_enclave" not in plain.output  # 0666: not the problem

    as_json = runner.invoke(main_group, [*failing_helper, *host, "--json"])
    assert as_json.exit_code == 3, as_json.output
    report = json.loads(as_json.output)
    assert report["failed_step"] == "quote"
    [access] = report["helper_device_access"]
    assert access["device"] == "/dev/sgx_provision" and access["mode"] == "0600"
    assert (access["helper_uid"], access["helper_gid"], access["access"]) == (
        65532,
        65532,
        "denied",
    )
    assert "device_ownership_from_security_context" in report["hint"]


def test_probe_names_the_group_to_add_for_a_group_writable_device(
    failing_helper: list[str], tmp_path: Path
) -> None:
    host = _fake_host(tmp_path / "host", provision_mode=0o660)
    gid = (tmp_path / "host" / "dev" / "sgx_provision").stat().st_gid
    result = CliRunner().invoke(main_group, [*failing_helper, *host, "--json"])
    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["hint"].endswith(
        f"which DCAP quoting needs: add gid {gid} (the device's group, which has read-write) to "
        "the pod's securityContext.supplementalGroups (on a host: add the user to that group), "
        "or set device_ownership_from_security_context = true in the container runtime "
        "(containerd's CRI plugin config, or CRI-O's [crio.runtime]) so device nodes are given "
        "to the pod's runAsUser/runAsGroup"
    )


def test_probe_blames_nothing_when_the_helper_can_open_the_devices(
    failing_helper: list[str], tmp_path: Path
) -> None:
    """In the device's group: the failure stays unexplained rather than wrongly explained."""
    gid_probe = tmp_path / "gid"
    gid_probe.write_bytes(b"")
    host = _fake_host(
        tmp_path / "host", provision_mode=0o660, helper_groups=str(gid_probe.stat().st_gid)
    )
    result = CliRunner().invoke(main_group, [*failing_helper, *host, "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    assert report["helper_device_access"] == []
    assert report["hint"] is None or "sgx_provision" not in report["hint"]


def test_probe_keeps_the_errors_own_hint_after_the_device_problem(
    tmp_path: Path, short_dir: Path
) -> None:
    """A helper that is not the simulated platform (on hardware, the dcap one) fails the probe at
    "platform": the device problem is reported first, the probe's own hint is kept."""
    helper = start_helper(
        SimBackend(SimPlatform(state_dir=tmp_path / "a").quoting_enclave), short_dir
    )
    try:
        host = _fake_host(tmp_path / "host")
        argv = [
            "node",
            "probe",
            "--socket",
            str(helper.socket_path),
            "--state",
            str(tmp_path / "b"),
        ]
        result = CliRunner().invoke(main_group, [*argv, *host, "--json"])
    finally:
        helper.stop()
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    assert report["failed_step"] == "platform"
    assert report["hint"].startswith("the quote helper (pid ")
    assert report["hint"].endswith(
        ". Also: run the probe with the helper's --state; hardware (dcap) helpers need a real "
        "enclave to probe"
    )
