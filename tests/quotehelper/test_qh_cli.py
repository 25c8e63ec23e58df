"""``confnode quote-helper`` as a real process, and ``confnode node probe`` against it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from confnode.cli import main_group
from confnode.sim import SimPlatform


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    socket_path: Path
    state: Path
    metrics_port: int


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="qhcli-", dir="/tmp"))
    state = tmp_path_factory.mktemp("state")
    port = _free_port()
    sock = short / "aesm.socket"
    process = subprocess.Popen(
        [
            sys.executable, "-c", "from confnode.cli import main; main()",
            "quote-helper", "--backend", "sim",
            "--socket", str(sock), "--state", str(state), "--socket-mode", "0660",
            "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "quote helper did not start"
        time.sleep(0.05)
    yield Daemon(process, sock, state, port)
    if process.poll() is None:
        process.kill()
        process.wait()


def test_probe_and_metrics_then_sigterm(daemon: Daemon) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main_group,
        [
            "node",
            "probe",
            "--socket",
            str(daemon.socket_path),
            "--state",
            str(daemon.state),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["status"] == "UpToDate"
    assert report["trusted_root_is_intel"] is False
    assert set(report["steps_ms"]) >= {"target-info", "quote", "collateral", "verify"}

    assert oct(daemon.socket_path.stat().st_mode & 0o777) == "0o660"
    metrics = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics").text
    assert "confnode_quote_helper_quotes_served_total 1.0" in metrics
    assert 'confnode_quote_helper_requests_total{code="0",operation="GetQuoteEx"} 1.0' in metrics

    daemon.process.send_signal(signal.SIGTERM)
    out, err = daemon.process.communicate(timeout=15)
    assert daemon.process.returncode == 0, err
    assert b"stopped" in out
    assert not daemon.socket_path.exists()


def test_probe_failures_exit_non_zero(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main_group, ["node", "probe", "--socket", str(tmp_path / "nothing.socket"), "--json"]
    )
    assert result.exit_code == 3
    report = json.loads(result.output)
    assert report["ok"] is False and report["failed_step"] == "target-info"
    assert report["error_type"] == "AesmServiceUnavailable"


def test_probe_with_foreign_root_fails_verification(tmp_path: Path) -> None:
    import tempfile

    from qh_harness import start_helper

    from confnode.quotehelper import SimBackend

    platform = SimPlatform(state_dir=tmp_path / "state")
    short = Path(tempfile.mkdtemp(prefix="qhp-", dir="/tmp"))
    helper = start_helper(SimBackend(platform.quoting_enclave), short)
    try:
        other_root = tmp_path / "other-root.pem"
        der = SimPlatform(seed="another platform").root_certificate()
        other_root.write_bytes(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        )
        bundle = tmp_path / "collateral.json"
        bundle.write_text(platform.collateral_json())
        base = [
            "node",
            "probe",
            "--socket",
            str(helper.socket_path),
            "--state",
            str(tmp_path / "state"),
        ]
        runner = CliRunner()
        quote_file = tmp_path / "probe.quote"
        ok = runner.invoke(
            main_group, [*base, "--collateral", str(bundle), "--quote-out", str(quote_file)]
        )
        assert ok.exit_code == 0, ok.output
        assert "UpToDate" in ok.output
        quote = quote_file.read_bytes()
        assert len(quote) == 436 + int.from_bytes(quote[432:436], "little")
        assert quote[112:144] == hashlib.sha256(b"confnode node probe enclave").digest()
        bad = runner.invoke(main_group, [*base, "--trust-root", str(other_root), "--json"])
        assert bad.exit_code == 1, bad.output
        assert json.loads(bad.output)["failed_step"] == "verify"
        SimPlatform(state_dir=tmp_path / "x", seed="another platform")
        wrong_state = runner.invoke(
            main_group,
            ["node", "probe", "--socket", str(helper.socket_path), "--state", str(tmp_path / "x")],
        )
        assert wrong_state.exit_code == 3
        assert "not the simulated platform" in wrong_state.output
    finally:
        helper.stop()


def test_probe_without_state_says_it_needs_the_helpers_state(tmp_path: Path) -> None:
    """There is no default seed any more: without --state the probe cannot name the helper's
    platform, and says so (it used to blame a mismatch with a "(default seed)")."""
    import tempfile

    from qh_harness import start_helper

    from confnode.quotehelper import SimBackend

    short = Path(tempfile.mkdtemp(prefix="qhp-", dir="/tmp"))
    helper = start_helper(SimBackend(SimPlatform(state_dir=tmp_path / "s").quoting_enclave), short)
    try:
        result = CliRunner().invoke(
            main_group, ["node", "probe", "--socket", str(helper.socket_path), "--json"]
        )
    finally:
        helper.stop()
    assert result.exit_code == 2, result.output
    report = json.loads(result.output)
    assert report["failed_step"] == "platform"
    assert "needs --state" in report["error"] and "default seed" not in result.output


def test_sim_helper_without_state_warns_its_platform_is_ephemeral(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as busy:  # the metrics port is taken: the helper stops right after
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(
            main_group,
            ["quote-helper", "--backend", "sim", "--socket", str(tmp_path / "s"),
             "--metrics-port", port, "--metrics-address", "127.0.0.1"],
        )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "ephemeral simulated platform with a random seed" in caplog.text
    assert "verify nowhere" in caplog.text


def test_quote_helper_dcap_without_library(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main_group,
        [
            "quote-helper", "--backend", "dcap", "--socket", str(tmp_path / "s"),
            "--dcap-library", str(tmp_path / "libsgx_dcap_ql.so.1"),
        ],
    )  # fmt: skip
    assert result.exit_code == 3
    assert "cannot load the DCAP quote library" in result.output
    usage = CliRunner().invoke(
        main_group, ["quote-helper", "--backend", "dcap", "--state", str(tmp_path)]
    )
    assert usage.exit_code == 2


def test_probe_fetches_collateral_from_pccs(tmp_path: Path) -> None:
    import tempfile
    import threading

    import uvicorn
    from qh_harness import start_helper

    from confnode.pccs.server import create_app
    from confnode.quotehelper import SimBackend

    platform = SimPlatform(state_dir=tmp_path / "state", tcb="SWHardeningNeeded")
    server = uvicorn.Server(
        uvicorn.Config(create_app(platform), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    helper = start_helper(
        SimBackend(platform.quoting_enclave), Path(tempfile.mkdtemp(prefix="qhq-", dir="/tmp"))
    )
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        result = CliRunner().invoke(
            main_group,
            [
                "node", "probe", "--socket", str(helper.socket_path),
                "--state", str(tmp_path / "state"), "--pccs", f"http://127.0.0.1:{port}", "--json",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["ok"] is True and report["status"] == "SWHardeningNeeded"
        assert report["advisory_ids"]
    finally:
        helper.stop()
        server.should_exit = True
        thread.join(10)


class _RefusingBackend:
    """The platform's QE, except that every quote is refused with AESM_INVALID_REPORT."""

    name = "refusing"

    def __init__(self, platform: SimPlatform) -> None:
        self.qe = platform.quoting_enclave

    def target_info(self) -> bytes:
        return self.qe.target_info()

    def pub_key_id(self) -> bytes:
        return self.qe.pub_key_id

    def quote_size(self) -> int:
        return self.qe.quote_size()

    def quote(self, report: bytes, qe_report_info: bytes | None) -> tuple[bytes, bytes | None]:
        from confnode.quotehelper import BackendError

        raise BackendError("REPORT MAC mismatch", aesm_code=47)


def test_probe_exits_1_when_the_helper_refuses_the_quote(tmp_path: Path) -> None:
    """An AESM rejection (an InvalidInput subclass client-side) is a failed check, not exit 2."""
    import tempfile

    from qh_harness import start_helper

    platform = SimPlatform(state_dir=tmp_path / "state")
    short = Path(tempfile.mkdtemp(prefix="qhr-", dir="/tmp"))
    helper = start_helper(_RefusingBackend(platform), short)
    try:
        base = ["node", "probe", "--socket", str(helper.socket_path)]
        base += ["--state", str(tmp_path / "state")]
        runner = CliRunner()
        as_json = runner.invoke(main_group, [*base, "--json"])
        assert as_json.exit_code == 1, as_json.output
        report = json.loads(as_json.output)
        assert report["failed_step"] == "quote"
        assert report["error_type"] == "InvalidReportError"
        plain = runner.invoke(main_group, base)
        assert plain.exit_code == 1, plain.output
        assert "InvalidReportError" in plain.output and "INVALID_REPORT" in plain.output
    finally:
        helper.stop()


def test_probe_file_errors_are_one_line_errors(tmp_path: Path) -> None:
    """Unwritable --quote-out, unreadable --collateral: exit codes, not tracebacks."""
    import tempfile

    from qh_harness import start_helper

    from confnode.quotehelper import SimBackend

    platform = SimPlatform(state_dir=tmp_path / "state")
    short = Path(tempfile.mkdtemp(prefix="qhf-", dir="/tmp"))
    helper = start_helper(SimBackend(platform.quoting_enclave), short)
    try:
        base = ["node", "probe", "--socket", str(helper.socket_path)]
        base += ["--state", str(tmp_path / "state")]
        runner = CliRunner()
        unwritable = runner.invoke(main_group, [*base, "--quote-out", str(tmp_path / "no/q.bin")])
        assert unwritable.exit_code == 3, unwritable.output
        assert "cannot write the probe quote" in unwritable.output
        binary = tmp_path / "collateral.json"
        binary.write_bytes(b"\xff\xfe\x00garbage")
        bad_bundle = runner.invoke(main_group, [*base, "--collateral", str(binary), "--json"])
        assert bad_bundle.exit_code == 2, bad_bundle.output
        report = json.loads(bad_bundle.output)
        assert report["failed_step"] == "collateral" and "collateral bundle" in report["error"]
    finally:
        helper.stop()


def test_quote_helper_busy_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main_group,
            [
                "quote-helper", "--backend", "sim", "--socket", str(tmp_path / "s"),
                "--state", str(tmp_path / "state"),
                "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
            ],
        )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "s").exists()
