"""``confnode demo``: a confidential node in a box, with real processes over real protocols.

On a machine without SGX and without a cluster, the demo shows every part of confnode working:
the verifier on real quotes from real hardware, ``doctor`` on this machine, and then a simulated
node — the quote helper on an AESM socket, the device plugin probed as the kubelet would, the
metrics endpoint, the PCCS-compatible collateral service, the attestation service over HTTPS —
exercised by an enclave-aware app that attests and receives a released key. Everything it starts
is stopped at the end; the exit code is 0 only when every step succeeded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from rich.table import Table

from confnode.cli._common import console, main_group
from confnode.cli._vectors import SETS, vectors_dir
from confnode.errors import ConfnodeError, InfrastructureError

SEED = "confnode-demo"


@dataclass
class StageResult:
    name: str
    seconds: float
    ok: bool
    summary: str


@dataclass
class Services:
    """The processes the demo starts, each logging to its own file; all stopped on exit."""

    workdir: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "confnode", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def wait_until(self, name: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
        process = dict(self.processes)[name]
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                raise InfrastructureError(
                    f"{name} exited with {process.returncode}: {self.log_tail(name)}"
                )
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"{name} not ready after {timeout:.0f} s: {self.log_tail(name)}"
                )
            time.sleep(0.05)

    def stop_all(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _name, process in reversed(self.processes):
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_ready(url: str, **kwargs: Any) -> Callable[[], bool]:
    def check() -> bool:
        try:
            httpx.get(url, timeout=1, **kwargs)
        except httpx.HTTPError:
            return False
        return True

    return check


def _socket_ready(path: Path) -> Callable[[], bool]:
    def check() -> bool:
        if not path.exists():
            return False
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(path))
            except OSError:
                return False
        return True

    return check


class Demo:
    """Stages in order; a failed stage stops the run (later stages depend on earlier ones)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services = Services(workdir)
        self.results: list[StageResult] = []
        self.context: dict[str, Any] = {}

    def run(self, stages: list[tuple[str, Callable[[], str]]]) -> bool:
        for index, (name, stage) in enumerate(stages, 1):
            console.rule(f"[bold]{index}. {name}")
            start = time.perf_counter()
            try:
                with console.status(f"{name}…"):
                    summary = stage()
            except ConfnodeError as error:
                self.results.append(
                    StageResult(name, time.perf_counter() - start, False, error.message)
                )
                console.print(f"[bold red]✗ {name}:[/] {error.message}", highlight=False)
                return False
            self.results.append(StageResult(name, time.perf_counter() - start, True, summary))
            console.print(f"[green]✓[/] {summary}", highlight=False)
        return True

    # --- stages --------------------------------------------------------------------------------

    def real_quotes(self) -> str:
        from confnode.verify import VerifiedQuote, verify_quote

        base = vectors_dir()
        if not base.is_dir():
            return f"skipped: no real-hardware vectors at {base} (set CONFNODE_DCAP_VECTORS)"
        table = Table(title="Real SGX quotes from real hardware, verified as Intel's QVL does")
        table.add_column("vector", ratio=3)
        table.add_column("status", no_wrap=True)
        for column in ("advisories", "FMSPC", "MRENCLAVE", "debug", "CRLs"):
            table.add_column(column)
        for load in SETS:
            vector = load(base)
            result = verify_quote(
                vector.quote,
                vector.collateral(),
                at=vector.midpoint,
                insecure_skip_crl=vector.needs_crl_skip,
            )
            if not isinstance(result, VerifiedQuote):
                raise VerificationMismatch(f"{vector.name}: a TDX quote; the demo shows SGX ones")
            if result.status.value != vector.expected_status:
                raise VerificationMismatch(
                    f"{vector.name}: status {result.status.value}, README expects "
                    f"{vector.expected_status}"
                )
            table.add_row(
                vector.name,
                result.status.value,
                ", ".join(result.advisory_ids) or "—",
                result.fmspc,
                result.enclave.mr_enclave.hex()[:16] + "…",
                "yes" if result.enclave.debug else "no",
                "checked" if result.crl_checked else "not in set",
            )
        console.print(table)
        return f"{len(SETS)} real quotes verified to the statuses their sources document"

    def doctor(self) -> str:
        from confnode.cli._node import _doctor_table
        from confnode.platform import HostRoots, cpuid_source_for, detect

        roots = HostRoots()
        platform = detect(roots, cpuid=cpuid_source_for(roots))
        console.print(_doctor_table(platform))
        if platform.can_run_enclaves:
            return "SGX usable here; the demo still runs on the simulated platform"
        return "no usable SGX here (doctor exits 1): falling back to the simulated platform"

    def sim_platform(self) -> str:
        from confnode.sim import SimPlatform

        state = self.workdir / "sim"
        platform = SimPlatform(state, seed=SEED)
        root = self.workdir / "sim-root.der"
        root.write_bytes(platform.root_certificate())
        self.context["sim_state"] = state
        self.context["sim_root"] = root
        extension = platform.pck_extension
        return (
            f"FMSPC {extension.fmspc.hex().upper()}, {platform.config.ca} CA; its root is "
            "trusted only where passed explicitly"
        )

    def quote_helper(self) -> str:
        from confnode.client import QuoteClient

        sock = self.workdir / "aesmd" / "aesm.socket"
        sock.parent.mkdir()
        self.services.start(
            "quote-helper",
            "quote-helper",
            "--socket", str(sock),
            "--backend", "sim",
            "--state", str(self.context["sim_state"]),
        )  # fmt: skip
        self.services.wait_until("quote-helper", _socket_ready(sock))
        client = QuoteClient(sock)
        count = client.supported_att_key_id_num()
        target = client.target_info()
        self.context["aesm_socket"] = sock
        return (
            f"AESM protocol: {count} attestation key (ECDSA P-256), QE target info {len(target)} B"
        )

    def device_plugin(self) -> str:
        import asyncio

        from confnode.cli._node import _plan_table, _probe_tables
        from confnode.deviceplugin import AgentConfig, SgxNode, plan_resources, probe_plugin
        from confnode.deviceplugin.model import socket_name

        plugin_dir = self.workdir / "device-plugins"
        plugin_dir.mkdir()
        metrics_port = free_port()
        resource = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
        self.services.start(
            "device-plugin",
            "device-plugin",
            "--device-plugin-dir", str(plugin_dir),
            "--sim-epc", "256MiB",
            "--sim-numa-nodes", "2",
            "--resource-name", resource,
            "--aesm-socket", str(self.context["aesm_socket"]),
            "--metrics-port", str(metrics_port),
            "--metrics-address", "127.0.0.1",
        )  # fmt: skip
        sock = plugin_dir / socket_name(resource)
        self.services.wait_until("device-plugin", _socket_ready(sock))
        result = asyncio.run(probe_plugin(sock, allocate_count=16))
        for table in _probe_tables(result):
            console.print(table)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.services.wait_until("device-plugin", _http_ready(metrics_url))
        scraped = httpx.get(metrics_url, timeout=5).text
        ours = [line for line in scraped.splitlines() if line.startswith("confnode_")]
        for line in ours[:8]:
            console.print(f"  [dim]{line}[/]", highlight=False, soft_wrap=True)
        if result.allocate_error is not None:
            raise InfrastructureError(f"sample Allocate failed: {result.allocate_error}")
        # The same agent on a two-socket server with 1 TiB of EPC: per-MiB devices would be 27 MB
        # of ListAndWatch (the kubelet refuses > 4 MiB), so EPC goes to node status (ADR 0005).
        big = SgxNode.simulated_node(1 << 40, 2)
        console.print(_plan_table(plan_resources(big, AgentConfig()), big))
        return (
            f"{result.device_count} × 1 MiB EPC devices on NUMA 0-1, ListAndWatch "
            f"{result.message_bytes} B; 1 TiB node planned as node-status capacity; "
            f"{len(ours)} metric series"
        )

    def attestation(self) -> str:
        from confnode.samples.enclave_app import SAMPLE_MR_ENCLAVE

        state = str(self.context["sim_state"])
        pccs_port, port = free_port(), free_port()
        pccs_url = f"http://127.0.0.1:{pccs_port}"
        url = f"https://127.0.0.1:{port}"
        ca_file, cert_file, key_file = write_tls(self.workdir, "127.0.0.1")
        keys = self.workdir / "keys"
        new_key = subprocess.run(
            [
                sys.executable, "-m", "confnode", "attestation", "new-key", "sample-key",
                "--keys-dir", str(keys), "--authority", url,
                "--mrenclave", SAMPLE_MR_ENCLAVE.hex(), "--allow-simulated",
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if new_key.returncode != 0:
            raise InfrastructureError(f"attestation new-key failed: {new_key.stderr.strip()}")
        self.services.start(
            "pccs", "pccs", "serve", "--sim", "--state", state, "--port", str(pccs_port)
        )
        self.services.wait_until(
            "pccs", _http_ready(pccs_url + "/sgx/certification/v4/qe/identity")
        )
        self.services.start(
            "attestation",
            "attestation", "serve",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--tls-cert", str(cert_file),
            "--tls-key", str(key_file),
            "--pccs-url", pccs_url,
            "--trust-root", str(self.context["sim_root"]), "--allow-simulated",
            "--signing-key-dir", str(self.workdir / "signing"),
            "--keys-dir", str(keys),
        )  # fmt: skip
        tls = ssl.create_default_context(cafile=str(ca_file))
        self.services.wait_until("attestation", _http_ready(url + "/certs", verify=tls))
        discovery = httpx.get(url + "/.well-known/openid-configuration", verify=tls, timeout=5)
        self.context.update(attestation_url=url, ca_file=ca_file)
        return (
            f"PCCS on {pccs_url}, attestation on {discovery.json()['issuer']}; "
            "'sample-key' releasable only to the sample enclave"
        )

    def enclave_app(self) -> str:
        from confnode.cli._sample import claims_table, print_step, summary_table
        from confnode.samples.enclave_app import EnclaveApp, tls_context

        app = EnclaveApp(
            socket_path=self.context["aesm_socket"],
            sim_state=self.context["sim_state"],
            attestation_url=self.context["attestation_url"],
            tls=tls_context(self.context["ca_file"]),
            key_name="sample-key",
        )
        result = app.run(print_step)
        console.print(claims_table(result.claims))
        console.print(summary_table(result.steps))
        return (
            f"quote → token ({result.claims.get('x-confnode-tcb-status')}, simulated) → "
            f"key released and decrypted in {result.total_seconds * 1000:.0f} ms"
        )

    def tdx(self) -> str:
        from confnode.cli import _demo_tdx

        base = vectors_dir()
        real = "no real-hardware vectors"
        if base.is_dir():
            table = _demo_tdx.real_td_quotes(base)
            console.print(table)
            real = f"{table.row_count} real TD quotes as documented"
        outcome = _demo_tdx.attest_simulated_td(
            self.context["sim_state"],
            self.context["attestation_url"],
            ssl.create_default_context(cafile=str(self.context["ca_file"])),
            self.workdir / "keys",
        )
        console.print(_demo_tdx.td_claims_table(outcome.claims))
        if not outcome.key_released:
            raise InfrastructureError("the released TD key does not decrypt to the stored key")
        return (
            f"{real}; simulated TD attested at /attest/TdxVm ({outcome.status}), "
            "TD-bound key released and decrypted"
        )


def write_tls(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host`` (an IP address), as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "confnode demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "tls.crt", "tls.key"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class VerificationMismatch(ConfnodeError):
    """A real vector did not verify to the status its source documents."""


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="confnode-demo-"))
        console.print(f"working directory kept at {path}", highlight=False)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="confnode-demo-") as tmp:
            yield Path(tmp)


def _summary(results: list[StageResult]) -> Table:
    table = Table(title="confnode demo summary")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("result")
    for index, result in enumerate(results, 1):
        mark = "[green]✓[/]" if result.ok else "[bold red]✗[/]"
        table.add_row(
            str(index), result.name, f"{result.seconds:.2f} s", f"{mark} {result.summary}"
        )
    return table


@main_group.command()
@click.option("--keep", is_flag=True, help="Keep the working directory (logs, state) afterwards.")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> None:
    """Show the whole system working on the simulated platform (what `make demo` runs)."""
    started = dt.datetime.now(dt.UTC)
    with _workdir(keep) as workdir:
        run = Demo(workdir)
        try:
            ok = run.run(
                [
                    (
                        "Real SGX quotes (the same verifier judges hardware and simulation)",
                        run.real_quotes,
                    ),
                    ("This machine: confnode doctor", run.doctor),
                    ("Simulated SGX platform", run.sim_platform),
                    ("Quote helper on an AESM socket", run.quote_helper),
                    ("EPC device plugin, probed as the kubelet would", run.device_plugin),
                    ("Collateral service and attestation service (HTTPS)", run.attestation),
                    ("Enclave-aware app: quote, attest, release a key", run.enclave_app),
                    ("TDX: real TD quotes, a simulated TD attested (TdxVm)", run.tdx),
                ]
            )
        finally:
            run.services.stop_all()
    console.print(_summary(run.results))
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    if ok:
        console.print(f"[bold green]demo passed[/] in {elapsed:.1f} s; every process stopped")
    else:
        console.print(f"[bold red]demo failed[/] after {elapsed:.1f} s; every process stopped")
        ctx.exit(1)
