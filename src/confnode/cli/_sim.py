"""``confnode sim``, ``pccs serve``, ``collateral fetch``: the simulated platform."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table

from confnode.cli._common import console, err_console, main_group
from confnode.errors import InfrastructureError, InvalidInput
from confnode.sim import PLATFORM_STATUSES, SimPlatform
from confnode.sim.platform import DEFAULT_MR_ENCLAVE, DEFAULT_MR_SIGNER
from confnode.sim.tdx import (
    DEFAULT_MODULE_SVN,
    DEFAULT_MR_TD,
    DEFAULT_RTMRS,
    TDX_PLATFORM_STATUSES,
    SimTdxPlatform,
)

_STATE = click.option(
    "--state",
    "state",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory of the simulated platform.",
)


def _hex(value: str | None, what: str, *, exact: int | None = None, most: int = 64) -> bytes | None:
    if value is None:
        return None
    text = value.removeprefix("0x")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not hex") from None
    if exact is not None and len(data) != exact:
        raise InvalidInput(f"{what} is {len(data)} bytes, expected {exact}")
    if len(data) > most:
        raise InvalidInput(f"{what} is {len(data)} bytes, expected at most {most}")
    return data


_DATES = click.DateTime(formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])


def _utc(when: datetime | None) -> datetime | None:
    """click parses naive datetimes; every time on this CLI is UTC."""
    return None if when is None else when.replace(tzinfo=UTC)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InfrastructureError(f"cannot write {path}: {exc}") from exc


#: A shorter seed file is most likely a placeholder, not a secret.
MIN_SEED_BYTES = 16


def _read_seed(path: Path) -> bytes:
    try:
        seed = path.read_bytes().strip()
    except OSError as exc:
        raise InfrastructureError(f"cannot read seed file {path}: {exc}") from exc
    if len(seed) < MIN_SEED_BYTES:
        raise InvalidInput(
            f"seed file {path} holds {len(seed)} bytes; expected at least {MIN_SEED_BYTES}",
            hint="create one with `head -c 32 /dev/urandom | base64 > FILE`",
        )
    return seed


def _summary(platform: SimPlatform) -> Table:
    cfg = platform.config
    root = platform.root_certificate()
    table = Table(title="simulated SGX platform", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("state", str(platform.state_dir))
    table.add_row("root CA", platform.pki.root_cert.subject.rfc4514_string())
    table.add_row("root CA SHA-256", hashlib.sha256(root).hexdigest())
    table.add_row("FMSPC", cfg.fmspc)
    table.add_row("PCK CA", cfg.ca)
    table.add_row("TCB status", cfg.tcb)
    table.add_row("QE ISVSVN", str(cfg.qe_svn))
    table.add_row("PCK revoked", "yes" if cfg.revoked_pck else "no")
    return table


@main_group.group("sim")
def sim_group() -> None:
    """Simulated SGX platform and TDX host: PKI, quoting enclaves, enclaves, TDs and collateral.

    Its root CA is a confnode simulation root: trust it only for tests and demos.
    """


@sim_group.command("init")
@_STATE
@click.option(
    "--seed-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Secret seed (e.g. a mounted Secret shared by one cluster's simulated nodes).",
)
@click.option(
    "--insecure-fixed-seed",
    metavar="TEXT",
    help="Derive every key from this public TEXT: anyone can forge its quotes (tests, demos).",
)
@click.option(
    "--tcb",
    type=click.Choice(PLATFORM_STATUSES),
    help="TCB status the platform's quotes verify to (default UpToDate).",
)
@click.option("--ca", type=click.Choice(["processor", "platform"]), help="PCK issuing CA.")
@click.option("--qe-svn", type=click.IntRange(0, 0xFFFF), help="ISVSVN of the simulated QE.")
@click.option("--fmspc", help="FMSPC, 12 hex digits.")
@click.option("--revoke-pck", is_flag=True, default=None, help="List the PCK in its CA's CRL.")
def sim_init(
    state: Path,
    seed_file: Path | None,
    insecure_fixed_seed: str | None,
    tcb: str | None,
    ca: str | None,
    qe_svn: int | None,
    fmspc: str | None,
    revoke_pck: bool | None,
) -> None:
    """Create (or re-open) a simulated platform in --state.

    Its seed is random unless given: it is the platform's root secret, kept in --state (0600).
    """
    if seed_file is not None and insecure_fixed_seed is not None:
        raise click.UsageError("--seed-file and --insecure-fixed-seed are mutually exclusive")
    seed: bytes | str | None = insecure_fixed_seed
    if seed_file is not None:
        seed = _read_seed(seed_file)
    platform = SimPlatform(
        state,
        seed,
        tcb,
        ca="platform" if ca == "platform" else ("processor" if ca else None),
        qe_svn=qe_svn,
        fmspc=fmspc,
        revoked_pck=revoke_pck,
    )
    console.print(_summary(platform))


@sim_group.command("quote")
@_STATE
@click.option("--report-data", help="Enclave report data, hex (at most 64 bytes).")
@click.option("--mr-enclave", help="MRENCLAVE of the simulated enclave, 32 bytes hex.")
@click.option("--mr-signer", help="MRSIGNER of the simulated enclave, 32 bytes hex.")
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--isv-svn", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Make it a DEBUG enclave (verifiers should refuse).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--collateral-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the collateral bundle (JSON) for the quote.",
)
@click.option(
    "--at",
    type=_DATES,
    help="Issue the collateral as of this UTC time (default: now).",
)
@click.option("--issue-date", type=_DATES, help="Collateral issueDate/thisUpdate (UTC).")
@click.option("--next-update", type=_DATES, help="Collateral nextUpdate (UTC).")
def sim_quote(
    state: Path,
    report_data: str | None,
    mr_enclave: str | None,
    mr_signer: str | None,
    isv_prod_id: int,
    isv_svn: int,
    debug: bool,
    out: Path,
    collateral_out: Path | None,
    at: datetime | None,
    issue_date: datetime | None,
    next_update: datetime | None,
) -> None:
    """Quote a simulated enclave: enclave REPORT → simulated QE → SGX quote v3."""
    platform = SimPlatform.load(state)
    enclave = platform.enclave(
        _hex(mr_enclave, "--mr-enclave", exact=32) or DEFAULT_MR_ENCLAVE,
        _hex(mr_signer, "--mr-signer", exact=32) or DEFAULT_MR_SIGNER,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
        debug=debug,
    )
    data = _hex(report_data, "--report-data") or b""
    quote = platform.quote(enclave.report(platform.quoting_enclave.target_info(), data))
    _write(out, quote)
    err_console.print(f"wrote {len(quote)}-byte quote to {out}")
    if collateral_out is not None:
        bundle = platform.collateral_json(
            _utc(at), issue_date=_utc(issue_date), next_update=_utc(next_update)
        )
        _write(collateral_out, bundle.encode())
        err_console.print(f"wrote collateral bundle to {collateral_out}")


@sim_group.command("td-quote")
@_STATE
@click.option("--report-data", help="TD report data, hex (at most 64 bytes).")
@click.option("--mr-td", help="MRTD of the simulated TD, 48 bytes hex.")
@click.option(
    "--rtmr",
    "rtmrs",
    multiple=True,
    metavar="INDEX=HEX",
    help="RTMR0-3 of the simulated TD, 48 bytes hex each (repeatable, e.g. 2=ab..).",
)
@click.option("--mr-config-id", help="MRCONFIGID of the simulated TD, 48 bytes hex.")
@click.option("--debug", is_flag=True, help="Make it a debuggable TD (verifiers should refuse).")
@click.option("--td15", is_flag=True, help="TD report 1.5 in a v5 quote (default: 1.0 in v4).")
@click.option(
    "--launch-module-svn",
    type=click.IntRange(0, 255),
    help="With --td15: the TD was launched under this older module SVN (TD-preserving update).",
)
@click.option(
    "--tcb",
    type=click.Choice(TDX_PLATFORM_STATUSES),
    help="TDX TCB status (default: the platform's).",
)
@click.option(
    "--module-svn",
    type=click.IntRange(0, 255),
    default=DEFAULT_MODULE_SVN,
    show_default=True,
    help="TDX module ISVSVN (4 is OutOfDate, 3 Revoked).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--collateral-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the TDX collateral bundle (JSON) for the quote.",
)
@click.option("--at", type=_DATES, help="Issue the collateral as of this UTC time (default: now).")
def sim_td_quote(
    state: Path,
    report_data: str | None,
    mr_td: str | None,
    rtmrs: tuple[str, ...],
    mr_config_id: str | None,
    debug: bool,
    td15: bool,
    launch_module_svn: int | None,
    tcb: str | None,
    module_svn: int,
    out: Path,
    collateral_out: Path | None,
    at: datetime | None,
) -> None:
    """Quote a simulated TD on the platform's TDX host: TD report → TD QE → TDX quote v4/v5."""
    tdx = SimTdxPlatform(SimPlatform.load(state), tcb=tcb, module_svn=module_svn)
    registers = list(DEFAULT_RTMRS)
    for spec in rtmrs:
        index, sep, value = spec.partition("=")
        if not sep or index not in ("0", "1", "2", "3"):
            raise InvalidInput(f"--rtmr {spec!r}: expected INDEX=HEX with INDEX 0-3")
        registers[int(index)] = _hex(value, f"--rtmr {index}", exact=48) or b""
    report = tdx.td_report(
        _hex(report_data, "--report-data") or b"",
        mr_td=_hex(mr_td, "--mr-td", exact=48) or DEFAULT_MR_TD,
        rtmrs=(registers[0], registers[1], registers[2], registers[3]),
        mr_config_id=_hex(mr_config_id, "--mr-config-id", exact=48) or bytes(48),
        debug=debug,
        td15=td15,
        launch_module_svn=launch_module_svn,
    )
    quote = tdx.quote(report)
    _write(out, quote)
    err_console.print(
        f"wrote {len(quote)}-byte TDX quote v{5 if td15 else 4} to {out} "
        f"(FMSPC {tdx.fmspc.hex().upper()}, TCB {tdx.tcb_status}, module SVN {module_svn})"
    )
    if collateral_out is not None:
        _write(collateral_out, tdx.collateral_json(_utc(at)).encode())
        err_console.print(f"wrote TDX collateral bundle to {collateral_out}")


@sim_group.command("root")
@_STATE
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def sim_root(state: Path, out: Path) -> None:
    """Write the simulated root CA certificate (DER): the trust root for simulated quotes."""
    platform = SimPlatform.load(state)
    _write(out, platform.root_certificate())
    err_console.print(
        f"wrote simulated root CA to {out} "
        f"(SHA-256 {hashlib.sha256(platform.root_certificate()).hexdigest()})"
    )


@main_group.group("pccs")
def pccs_group() -> None:
    """PCS/PCCS-compatible collateral service."""


@pccs_group.command("serve")
@click.option("--sim", "sim", is_flag=True, help="Serve a simulated platform's collateral.")
@_STATE
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True)
def pccs_serve(sim: bool, state: Path, host: str, port: int) -> None:
    """Serve Intel PCS v4 routes (/sgx/certification/v4/...) for a simulated platform."""
    if not sim:
        raise click.UsageError(
            "only --sim is supported: real collateral comes from Intel PCS or a PCCS"
        )
    import uvicorn

    from confnode.pccs.server import create_app

    app = create_app(SimPlatform.load(state))
    err_console.print(f"serving simulated PCS/PCCS on http://{host}:{port}/sgx/certification/v4/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main_group.group("collateral")
def collateral_group() -> None:
    """Verification collateral (TCB Info, QE Identity, CRLs, issuer chains)."""


@collateral_group.command("fetch")
@click.argument("quote_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pccs", "pccs_url", required=True, help="PCS/PCCS base URL.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Collateral cache directory (reused while fresh).",
)
def collateral_fetch(quote_file: Path, pccs_url: str, out: Path, cache: Path | None) -> None:
    """Fetch the collateral for QUOTE_FILE and write it as a bundle (dcap-qvl JSON).

    For a TD quote, TCB Info and the QE identity come from the TDX routes
    (/tdx/certification/v4), cached in CACHE/tdx.
    """
    from confnode.pccs import CollateralClient, tdx_collateral_client
    from confnode.sgx import parse_quote

    quote = parse_quote(quote_file.read_bytes())
    client = (
        tdx_collateral_client(pccs_url, str(cache) if cache is not None else None)
        if quote.is_tdx
        else CollateralClient(pccs_url, cache_dir=cache)
    )
    collateral = client.for_quote(quote)
    _write(out, (collateral.to_json() + "\n").encode())
    err_console.print(
        f"wrote collateral for FMSPC {collateral.tcb_info.info.fmspc.hex().upper()} to {out} "
        f"(next update {collateral.earliest_next_update:%Y-%m-%dT%H:%M:%SZ})"
    )
