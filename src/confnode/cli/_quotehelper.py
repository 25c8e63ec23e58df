"""``confnode quote-helper`` and ``confnode node probe``: AESM-compatible out-of-process quoting."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.markup import escape
from rich.table import Table

from confnode.cli._common import (
    EXIT_FAILED,
    console,
    err_console,
    exit_code_for,
    main_group,
    print_json,
)
from confnode.client import DEFAULT_SOCKET, PUB_KEY_ID_SIZE, QuoteClient
from confnode.collateral import Collateral
from confnode.errors import ConfnodeError, InfrastructureError, InvalidInput, VerificationError
from confnode.pccs import CollateralClient
from confnode.platform import (
    ENCLAVE_DEVICE_PATHS,
    PROVISION_DEVICE_PATHS,
    Access,
    DeviceAccess,
    HostRoots,
    ProcessIdentity,
    access_fix,
    device_access,
    process_identity,
    socket_peer,
)
from confnode.quotehelper import (
    BACKENDS,
    DCAP_LIBRARY,
    AesmHandler,
    BackendError,
    HelperMetrics,
    QuoteHelperServer,
    ServerConfig,
    make_backend,
)
from confnode.sim import SimPlatform
from confnode.verify import VerificationResult, verify_quote

_T = TypeVar("_T")

log = logging.getLogger("confnode.quotehelper")


def _octal_mode(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal file mode such as 0666") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is outside 0000-0777")
    return mode


@main_group.command("quote-helper")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="Unix socket to serve. Clients only know the default path: mount its directory.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    required=True,
    help="sim: the simulated platform's QE; dcap: Intel's libsgx_dcap_ql (in-process).",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Simulated platform state directory (sim backend; created when absent). Without it, "
    "a new random platform each start, whose quotes verify nowhere.",
)
@click.option(
    "--dcap-library",
    default=DCAP_LIBRARY,
    show_default=True,
    help="DCAP quote library to load (dcap backend).",
)
@click.option(
    "--socket-mode",
    default="0666",
    show_default=True,
    callback=_octal_mode,
    help="Permissions of the socket file (aesmd uses 0777).",
)
@click.option("--socket-group", help="Group (name or gid) to own the socket file.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics, /healthz and /readyz (the kubelet's probes) on this port.",
)
@click.option(
    "--metrics-address", default="0.0.0.0", show_default=True, help="Bind address for metrics."
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0.1, 14.0),
    default=10.0,
    show_default=True,
    help="Seconds a request may wait for the backend (clients give up after 15).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--dev-root", default="/dev", hidden=True)
@click.option("--proc-root", default="/proc", hidden=True)
def quote_helper(
    socket_path: Path,
    backend: str,
    state_dir: Path | None,
    dcap_library: str,
    socket_mode: int,
    socket_group: str | None,
    metrics_port: int | None,
    metrics_address: str,
    request_timeout: float,
    log_level: str,
    dev_root: str,
    proc_root: str,
) -> None:
    """Serve the AESM socket protocol so unmodified SGX apps get ECDSA quotes.

    Speaks aesmd's wire format byte for byte (DCAP out-of-process, Open Enclave and Gramine
    clients work unchanged). Stops gracefully on SIGTERM/SIGINT.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if state_dir is not None and backend != "sim":
        raise click.UsageError("--state only applies to --backend sim")
    # In-process DCAP opens the enclave and provisioning devices as this process: say up front
    # when it cannot, since the library's own errors (AESM_UNEXPECTED_ERROR) do not.
    roots = HostRoots(dev=dev_root, proc=proc_root)
    problems = _device_problems(roots, process_identity(roots)) if backend == "dcap" else []
    for problem in problems:
        log.warning(
            "%s: DCAP quotes will fail; %s",
            problem.describe("the quote helper"),
            access_fix(problem.device),
        )
    quoting = make_backend(backend, state_dir=state_dir, dcap_library=dcap_library)
    if backend == "sim" and state_dir is None:
        # No default seed (it would let anyone forge quotes): the platform is random and lives
        # only in this process, so no verifier, PCCS or probe can ever have its root.
        log.warning(
            "no --state: serving an ephemeral simulated platform with a random seed; its root "
            "and collateral are saved nowhere, so its quotes verify nowhere (wire tests only)"
        )
    config = ServerConfig(
        socket_path=socket_path,
        socket_mode=socket_mode,
        socket_group=socket_group,
        request_timeout=request_timeout,
    )
    metrics = HelperMetrics()
    server = QuoteHelperServer(AesmHandler(quoting), config, metrics)
    http = None
    if metrics_port is not None:
        from confnode.metrics import on_loop, serve_metrics_and_health

        try:
            http, _ = serve_metrics_and_health(
                metrics.registry,
                metrics_port,
                metrics_address,
                # Live while the loop answers and the socket is its own (a restart binds it
                # again); alive while the backend warms up, before the loop serves.
                live=on_loop(lambda: server.loop, server.readiness, before_start=None),
                ready=on_loop(lambda: server.loop, server.readiness),
            )
        except OSError as exc:
            raise InfrastructureError(
                f"cannot serve metrics on {metrics_address}:{metrics_port}: {exc}",
                hint="choose a free --metrics-port",
            ) from exc
    console.print(
        f"quote helper: serving [bold]{socket_path}[/] with the [bold]{quoting.name}[/] backend"
        + (
            f", metrics and /healthz, /readyz on {metrics_address}:{metrics_port}"
            if metrics_port
            else ""
        ),
        highlight=False,
    )
    try:
        asyncio.run(server.run())
    except BackendError as error:
        # The backend failed its warm-up: the device nodes it cannot open are the likely cause.
        if problems:
            _explain_device_problems(error, problems)
        raise
    finally:
        if http is not None:
            http.shutdown()
    console.print("quote helper: stopped", highlight=False)


# --- confnode node probe ------------------------------------------------------------------------


def _node_group() -> click.Group:
    """The ``node`` group, shared with other command modules: reuse it if already registered."""
    existing = main_group.commands.get("node")
    if isinstance(existing, click.Group):
        return existing

    @main_group.group("node")
    def node() -> None:
        """Node-level checks: can this node attest?"""

    return node


#: The probe enclave's MRENCLAVE: a fixed, recognisable identity (not a real measurement).
PROBE_MR_ENCLAVE = hashlib.sha256(b"confnode node probe enclave").digest()


class _Steps:
    """Times each probe step and remembers which one failed."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.current = ""

    def run(self, name: str, action: Callable[[], _T]) -> _T:
        self.current = name
        started = time.perf_counter()
        result = action()
        self.times[name] = time.perf_counter() - started
        return result


def _load_certificate(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the trust root {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not a PEM or DER X.509 certificate: {exc}") from exc
    return cert.public_bytes(serialization.Encoding.DER)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the collateral bundle {path}: {exc}") from exc


def _probe(
    steps: _Steps,
    socket_path: Path,
    state_dir: Path | None,
    pccs: str | None,
    collateral_file: Path | None,
    trust_root: Path | None,
    timeout: float,
    quote_out: Path | None,
) -> VerificationResult:
    client = QuoteClient(socket_path, timeout=timeout)
    init = steps.run(
        "target-info", lambda: client.init_quote_ex(b_pub_key_id=True, buf_size=PUB_KEY_ID_SIZE)
    )
    target_info = init.target_info
    steps.current = "platform"
    if state_dir is None:
        # A simulated platform exists only in its state directory (there is no default seed):
        # without the helper's, nothing here can make a REPORT its quoting enclave accepts.
        raise InvalidInput(
            "the probe needs --state: it creates its probe enclave on the simulated platform "
            "the helper serves, which exists only in that state directory",
            hint="pass the helper's --state; hardware (dcap) helpers need a real enclave to probe",
        )
    platform = steps.run("platform", lambda: SimPlatform(state_dir=state_dir))
    qe = platform.quoting_enclave
    # The QE's target info is the same on every simulated platform; its key id is not.
    if (target_info, init.pub_key_id) != (qe.target_info(), qe.pub_key_id):
        raise InfrastructureError(
            f"the quoting enclave behind {socket_path} is not the simulated platform "
            f"{state_dir}: a probe enclave cannot be created for it",
            hint="run the probe with the helper's --state; hardware (dcap) helpers need a real "
            "enclave to probe",
        )
    nonce = os.urandom(32)
    enclave = platform.enclave(mr_enclave=PROBE_MR_ENCLAVE)
    report = steps.run(
        "report", lambda: enclave.report(target_info, hashlib.sha256(nonce).digest())
    )
    quote = steps.run("quote", lambda: client.quote(report))
    if quote_out is not None:
        try:
            quote_out.write_bytes(quote)
        except OSError as exc:
            raise InfrastructureError(
                f"cannot write the probe quote to {quote_out}: {exc.strerror}"
            ) from exc
    if collateral_file is not None:
        bundle = collateral_file
        collateral = steps.run("collateral", lambda: Collateral.from_json(_read_text(bundle)))
    elif pccs is not None:
        fetcher = CollateralClient(pccs)
        collateral = steps.run("collateral", lambda: fetcher.for_quote(quote))
    else:
        collateral = steps.run("collateral", platform.collateral)
    root = _load_certificate(trust_root) if trust_root else platform.root_certificate()
    verified = steps.run(
        "verify",
        lambda: verify_quote(
            quote, collateral, at=datetime.now(UTC), trusted_root=root, allow_revoked=True
        ),
    )
    steps.current = "binding"
    if verified.report_data[:32] != hashlib.sha256(nonce).digest():
        raise VerificationError(
            "the quote's report_data is not the probe's nonce hash: the helper returned a quote "
            "for another REPORT",
            step="report-data",
        )
    return verified


#: Steps whose input is what the helper returned: a rejection there (AESM_PARAMETER_ERROR,
#: INVALID_REPORT, a malformed quote) is the node failing its check, not a usage error.
_HELPER_STEPS = frozenset({"target-info", "report", "quote", "verify", "binding"})


#: Steps where a helper that cannot open the SGX device nodes shows up (DCAP cannot load its
#: enclaves or certify its key); after a failure there the probe checks the helper's access.
_DEVICE_STEPS = frozenset({"target-info", "platform", "quote"})


def _device_problems(roots: HostRoots, identity: ProcessIdentity | None) -> list[DeviceAccess]:
    """The SGX device nodes ``identity`` cannot (or may not) open; none if it is unknown."""
    if identity is None:
        return []
    accesses = device_access(roots, identity, ENCLAVE_DEVICE_PATHS + PROVISION_DEVICE_PATHS)
    return [a for a in accesses if a.access is not Access.ALLOWED]


def _explain_device_problems(error: ConfnodeError, problems: list[DeviceAccess]) -> None:
    """Put the likely cause first in the error's hint: the helper cannot open a device DCAP
    quoting needs. The error's own hint stays, after it."""
    why = "; ".join(a.describe("the quote helper") for a in problems)
    hint = f"{why}, which DCAP quoting needs: {access_fix(problems[0].device)}"
    error.hint = f"{hint}. Also: {error.hint}" if error.hint else hint


def _probe_exit_code(error: ConfnodeError, step: str) -> int:
    """The documented probe codes: 1 when the node's evidence is refused or fails, 3 when
    something is unreachable, 2 only for the operator's own input (files, options)."""
    if step in _HELPER_STEPS and isinstance(error, InvalidInput):
        return EXIT_FAILED
    return exit_code_for(error)


@_node_group().command("probe")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="The local quote helper (or aesmd) socket.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The simulated platform state the helper serves (its --state); needed to probe it.",
)
@click.option("--pccs", help="Fetch collateral from this PCS/PCCS base URL.")
@click.option(
    "--collateral",
    "collateral_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Collateral bundle (dcap-qvl QuoteCollateralV3 JSON) instead of fetching.",
)
@click.option(
    "--trust-root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Root CA certificate (PEM or DER). Default: the simulated platform's root.",
)
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Per AESM call.")
@click.option(
    "--quote-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the probe quote here (for `confnode quote inspect/verify`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (also on failure).")
@click.option("--dev-root", default="/dev", hidden=True)
@click.option("--proc-root", default="/proc", hidden=True)
def probe(
    socket_path: Path,
    state_dir: Path | None,
    pccs: str | None,
    collateral_file: Path | None,
    trust_root: Path | None,
    timeout: float,
    quote_out: Path | None,
    as_json: bool,
    dev_root: str,
    proc_root: str,
) -> None:
    """Quote a probe enclave through the local helper, fetch collateral, verify.

    Exits 0 when the node produced a quote that verifies (TCB status reported), 1 when the
    evidence fails verification or is revoked, 3 when the helper or collateral is unreachable.
    When the helper fails, also checks whether it can open the SGX device nodes and says so.
    """
    if pccs is not None and collateral_file is not None:
        raise click.UsageError("--pccs and --collateral are mutually exclusive")
    steps = _Steps()
    try:
        verified = _probe(
            steps, socket_path, state_dir, pccs, collateral_file, trust_root, timeout, quote_out
        )
    except ConfnodeError as error:
        code = _probe_exit_code(error, steps.current)
        problems = []
        if steps.current in _DEVICE_STEPS:
            roots = HostRoots(dev=dev_root, proc=proc_root)
            problems = _device_problems(roots, socket_peer(socket_path, roots))
        if problems:
            _explain_device_problems(error, problems)
        if not as_json:
            if code == exit_code_for(error):
                raise
            err_console.print(
                f"[bold red]error[/] ({type(error).__name__}): {escape(error.message)}",
                highlight=False,
                soft_wrap=True,
            )
            if error.hint:
                err_console.print(
                    f"[dim]hint:[/] {escape(error.hint)}", highlight=False, soft_wrap=True
                )
            sys.exit(code)
        print_json(
            {
                "ok": False,
                "socket": str(socket_path),
                "failed_step": steps.current,
                "error": error.message,
                "error_type": type(error).__name__,
                "hint": error.hint,
                "helper_device_access": [
                    {
                        "device": a.device.path,
                        "owner_uid": a.device.uid,
                        "owner_gid": a.device.gid,
                        "mode": f"{a.device.mode:04o}",
                        "helper_uid": a.identity.uid,
                        "helper_gid": a.identity.gid,
                        "access": str(a.access),
                    }
                    for a in problems
                ],
                "steps_ms": {k: round(v * 1000, 3) for k, v in steps.times.items()},
            }
        )
        sys.exit(code)
    ok = not verified.revoked
    if as_json:
        print_json(
            {
                "ok": ok,
                "socket": str(socket_path),
                "status": verified.status.value,
                "advisory_ids": list(verified.advisory_ids),
                "fmspc": verified.fmspc,
                "trusted_root_is_intel": verified.trusted_root_is_intel,
                "steps_ms": {k: round(v * 1000, 3) for k, v in steps.times.items()},
                "total_ms": round(sum(steps.times.values()) * 1000, 3),
            }
        )
    else:
        table = Table(title=f"node probe via {socket_path}", title_justify="left")
        table.add_column("Step")
        table.add_column("Time", justify="right")
        for name, seconds in steps.times.items():
            table.add_row(name, f"{seconds * 1000:.1f} ms")
        console.print(table)
        style = "green" if verified.status.value == "UpToDate" else "yellow"
        console.print(
            f"TCB status: [{style}]{verified.status.value}[/]"
            + (f" advisories {', '.join(verified.advisory_ids)}" if verified.advisory_ids else "")
            + ("" if verified.trusted_root_is_intel else " (simulated root, not Intel's)"),
            highlight=False,
        )
    if not ok:
        sys.exit(EXIT_FAILED)
