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
    """Simulated SGX platform: PKI, quoting enclave, enclaves and collateral (no SGX needed).

    Its root CA is a confnode simulation root: trust it only for tests and demos.
    """


@sim_group.command("init")
@_STATE
@click.option("--seed", help="Seed every key and serial is derived from (default: fixed).")
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
    seed: str | None,
    tcb: str | None,
    ca: str | None,
    qe_svn: int | None,
    fmspc: str | None,
    revoke_pck: bool | None,
) -> None:
    """Create (or re-open) a simulated platform in --state."""
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
    """Fetch the collateral for QUOTE_FILE and write it as a bundle (dcap-qvl JSON)."""
    from confnode.pccs import CollateralClient

    client = CollateralClient(pccs_url, cache_dir=cache)
    collateral = client.for_quote(quote_file.read_bytes())
    _write(out, (collateral.to_json() + "\n").encode())
    err_console.print(
        f"wrote collateral for FMSPC {collateral.tcb_info.info.fmspc.hex().upper()} to {out} "
        f"(next update {collateral.earliest_next_update:%Y-%m-%dT%H:%M:%SZ})"
    )
