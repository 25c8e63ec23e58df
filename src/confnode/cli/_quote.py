"""``confnode quote inspect|verify``: SGX and TDX DCAP quote parsing and verification.

The ``quote`` group lives here; each subcommand is a self-contained section. Quote files are
read by :func:`read_quote_file` (binary, or hex text with optional ``0x`` and whitespace).
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from confnode.cli._common import (
    EXIT_FAILED,
    ConfnodeGroup,
    console,
    err_console,
    exit_code_for,
    main_group,
    print_json,
)
from confnode.collateral import Collateral
from confnode.errors import (
    ConfnodeError,
    InvalidCollateral,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)
from confnode.sgx import (
    INTEL_QE_VENDOR_ID,
    Attributes,
    CertificationData,
    CertificationDataType,
    EnclaveReportBody,
    PckExtension,
    Quote,
    TdReportBody,
    parse_pck_extension,
    parse_quote,
)
from confnode.verify import VerificationResult, VerifiedQuote, verify_quote

_HEX_TEXT = re.compile(rb"(?:0[xX])?[0-9a-fA-F\s]+")
_WHITESPACE = re.compile(rb"\s+")


@main_group.group("quote", cls=ConfnodeGroup)
def quote_group() -> None:
    """Inspect and verify SGX and TDX DCAP quotes."""


def decode_quote_input(data: bytes) -> bytes:
    """Quote bytes from a file's content: raw binary, or hex text (``0x`` prefix, whitespace ok).

    A binary quote starts with its version as a little-endian u16 (``03 00`` …), which is never
    hex text, so the two cannot be confused.
    """
    text = data.strip()
    if not text or not _HEX_TEXT.fullmatch(text):
        return data
    digits = _WHITESPACE.sub(b"", text[2:] if text[:2] in (b"0x", b"0X") else text)
    if len(digits) % 2:
        raise InvalidQuote(f"hex input has an odd number of digits ({len(digits)})", field="input")
    return bytes.fromhex(digits.decode("ascii"))


def read_quote_file(path: Path) -> bytes:
    return decode_quote_input(path.read_bytes())


# ------------------------------------------------------------------------------------- inspect


def _attributes_json(attributes: Attributes) -> dict[str, Any]:
    return {
        "flags": f"{attributes.flags:#018x}",
        "xfrm": f"{attributes.xfrm:#018x}",
        "names": list(attributes.flag_names()),
        "init": attributes.init,
        "debug": attributes.debug,
        "mode64bit": attributes.mode64bit,
        "provision_key": attributes.provision_key,
        "einittoken_key": attributes.einittoken_key,
        "kss": attributes.kss,
        "aex_notify": attributes.aex_notify,
    }


def _enclave_json(body: EnclaveReportBody) -> dict[str, Any]:
    return {
        "cpu_svn": body.cpu_svn.hex(),
        "misc_select": f"{body.misc_select:#010x}",
        "attributes": _attributes_json(body.attributes),
        "mr_enclave": body.mr_enclave.hex(),
        "mr_signer": body.mr_signer.hex(),
        "isv_prod_id": body.isv_prod_id,
        "isv_svn": body.isv_svn,
        "config_svn": body.config_svn,
        "config_id": body.config_id.hex(),
        "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
        "isv_family_id": body.isv_family_id.hex(),
        "report_data": body.report_data.hex(),
    }


def _td_json(body: TdReportBody) -> dict[str, Any]:
    out: dict[str, Any] = {
        "td_report": "1.5" if body.is_td15 else "1.0",
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "mr_seam": body.mr_seam.hex(),
        "mrsigner_seam": body.mrsigner_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "td_debug": body.td_debug,
        "xfam": body.xfam.hex(),
        "mr_td": body.mr_td.hex(),
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
        "rt_mr": [rtmr.hex() for rtmr in body.rt_mr],
        "report_data": body.report_data.hex(),
    }
    if body.tee_tcb_svn2 is not None and body.mr_servicetd is not None:
        out["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        out["mr_servicetd"] = body.mr_servicetd.hex()
    return out


def _pck_json(ext: PckExtension) -> dict[str, Any]:
    config = ext.configuration
    return {
        "fmspc": ext.fmspc.hex().upper(),
        "pce_id": ext.pce_id.hex().upper(),
        "ppid": ext.ppid.hex(),
        "sgx_type": ext.sgx_type,
        "sgx_type_name": ext.sgx_type_name,
        "tcb": {
            "comp_svns": list(ext.tcb.comp_svns),
            "pcesvn": ext.tcb.pcesvn,
            "cpusvn": ext.tcb.cpusvn.hex(),
        },
        "platform_instance_id": (
            None if ext.platform_instance_id is None else ext.platform_instance_id.hex()
        ),
        "configuration": None
        if config is None
        else {
            "dynamic_platform": config.dynamic_platform,
            "cached_keys": config.cached_keys,
            "smt_enabled": config.smt_enabled,
        },
    }


def _certification_json(
    cert: CertificationData, chain: tuple[x509.Certificate, ...]
) -> dict[str, Any]:
    try:
        name = CertificationDataType(cert.type).name
    except ValueError:
        name = "UNKNOWN"
    out: dict[str, Any] = {"type": cert.type, "type_name": name, "size": len(cert.data)}
    if chain:
        out["chain"] = [
            {
                "subject": c.subject.rfc4514_string(),
                "issuer": c.issuer.rfc4514_string(),
                "not_before": c.not_valid_before_utc.isoformat(),
                "not_after": c.not_valid_after_utc.isoformat(),
            }
            for c in chain
        ]
    eppid = cert.encrypted_ppid
    if eppid is not None:
        out["encrypted_ppid"] = {
            "encrypted_ppid": eppid.encrypted_ppid.hex(),
            "cpusvn": eppid.cpusvn.hex(),
            "pcesvn": eppid.pcesvn,
            "pce_id": eppid.pceid.hex().upper(),
        }
    return out


def inspect_quote(quote: Quote) -> dict[str, Any]:
    """Everything ``quote inspect`` shows, as one JSON-ready object (decodes the PCK chain)."""
    header, sig = quote.header, quote.signature_data
    cert = sig.certification
    chain = cert.pck_certificates() if cert.type == CertificationDataType.PCK_CERT_CHAIN else ()
    body: dict[str, Any]
    if isinstance(quote.body, EnclaveReportBody):
        body = _enclave_json(quote.body)
    else:
        body = _td_json(quote.body)
    return {
        "size": len(quote.raw),
        "tee": "SGX" if quote.is_sgx else "TDX",
        "header": {
            "version": header.version,
            "att_key_type": header.att_key_type,
            "tee_type": f"{header.tee_type:#x}",
            "qe_svn": header.qe_svn,
            "pce_svn": header.pce_svn,
            "vendor_id": header.vendor_id.hex(),
            "vendor_is_intel": header.vendor_id == INTEL_QE_VENDOR_ID,
            "user_data": header.user_data.hex(),
        },
        "body": body,
        "signature_data": {
            "signature": sig.signature.hex(),
            "attest_pub_key": sig.attest_pub_key.hex(),
            "qe_report_signature": sig.qe_report_signature.hex(),
            "qe_auth_data": sig.qe_auth_data.hex(),
        },
        "qe_report": _enclave_json(sig.qe_report),
        "certification": _certification_json(cert, chain),
        "pck_extension": _pck_json(parse_pck_extension(chain[0])) if chain else None,
        "trailing_bytes": len(quote.trailing),
    }


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for key, value in rows.items():
        table.add_row(escape(key), _cell(value))
    return table


def _cell(value: Any) -> str | Text:
    """Rich markup for one value; text from the quote (certificate names) is escaped, so a
    crafted name can neither inject styles nor crash the table with a stray ``[/]``."""
    if value is None:
        return "—"
    if isinstance(value, Text):
        return value
    if isinstance(value, bool):
        return "[bold red]yes[/]" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{escape(str(k))}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(escape(str(v)) for v in value)
    return escape(str(value))


def _attributes_cell(attrs: dict[str, Any]) -> Text:
    names = "|".join(attrs["names"]) or "none"
    debug = "  [bold red]DEBUG enclave[/]" if attrs["debug"] else ""
    return Text.from_markup(f"flags {attrs['flags']} ({names}), xfrm {attrs['xfrm']}{debug}")


def _print_inspection(info: dict[str, Any]) -> None:
    header = dict(info["header"])
    header["vendor_id"] += " (Intel)" if header.pop("vendor_is_intel") else " (not Intel)"
    header["size"] = f"{info['size']} bytes, {info['trailing_bytes']} trailing"
    console.print(_kv_table(f"{info['tee']} quote v{header['version']}", header))
    for title, key in (("Report body", "body"), ("QE report", "qe_report")):
        rows = dict(info[key])
        if "attributes" in rows:
            rows["attributes"] = _attributes_cell(rows["attributes"])
        console.print(_kv_table(title, rows))
    cert = dict(info["certification"])
    chain = cert.pop("chain", [])
    cert["type"] = f"{cert['type']} ({cert.pop('type_name')})"
    for i, c in enumerate(chain):
        cert[f"chain[{i}]"] = f"{c['subject']} (until {c['not_after']})"
    for key, value in cert.pop("encrypted_ppid", {}).items():
        cert[key] = value
    cert["qe_auth_data"] = f"{len(info['signature_data']['qe_auth_data']) // 2} bytes"
    console.print(_kv_table("Certification data", cert))
    pck = info["pck_extension"]
    if pck is not None:
        rows = dict(pck)
        tcb = rows.pop("tcb")
        rows["sgx_type"] = f"{rows.pop('sgx_type')} ({rows.pop('sgx_type_name')})"
        rows["tcb comp SVNs"] = tcb["comp_svns"]
        rows["pcesvn"] = tcb["pcesvn"]
        rows["cpusvn"] = tcb["cpusvn"]
        console.print(_kv_table("PCK certificate SGX extension", rows))


@quote_group.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def inspect_command(file: Path, as_json: bool) -> None:
    """Decode a quote FILE (binary or hex) and show every field."""
    info = inspect_quote(parse_quote(read_quote_file(file)))
    if as_json:
        print_json(info)
    else:
        _print_inspection(info)


# -------------------------------------------------------------------------------------- verify

_STATUS_STYLE = {
    "UpToDate": "bold green",
    "SWHardeningNeeded": "yellow",
    "ConfigurationNeeded": "yellow",
    "ConfigurationAndSWHardeningNeeded": "yellow",
    "OutOfDate": "bold yellow",
    "OutOfDateConfigurationNeeded": "bold yellow",
    "Revoked": "bold red",
    "TDRelaunchAdvised": "yellow",
    "TDRelaunchAdvisedConfigurationNeeded": "yellow",
}


def _verification_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 date-time (e.g. 2025-07-04T12:00:00Z)", param_hint="--at"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _trust_root_der(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return data
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInput(f"--trust-root {path}: not a PEM certificate ({exc})") from None
    return cert.public_bytes(Encoding.DER)


def _error_step(error: ConfnodeError) -> str:
    if isinstance(error, VerificationError):
        return error.step
    if isinstance(error, InvalidQuote):
        return "quote-parse"
    if isinstance(error, InvalidCollateral):
        return "collateral-parse"
    return "input" if isinstance(error, InvalidInput) else "io"


def _identity_rows(
    result: VerificationResult,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(TDX-only TCB rows, what the quote vouches for): the SGX enclave, or the TD and its TDX
    module."""
    if isinstance(result, VerifiedQuote):
        enclave = result.enclave
        return [], [
            ("MRENCLAVE", enclave.mr_enclave.hex()),
            ("MRSIGNER", enclave.mr_signer.hex()),
            ("ISV prod id / SVN", f"{enclave.isv_prod_id} / {enclave.isv_svn}"),
            (
                "Debug",
                "[bold red]yes: DEBUG enclave, not for production[/]" if enclave.debug else "no",
            ),
            ("Attributes", enclave.attributes.hex()),
        ]
    td, module = result.td, result.tdx_module
    module_status = "no module TCB levels" if module.status is None else module.status.value
    tcb = [
        ("TDX TCB", result.tdx_status.value),
        (
            "TDX module",
            f"{module.identity_id or 'tdxModule'} (version {module.version}, SVN "
            f"{module.isv_svn}): {module_status}",
        ),
    ]
    identity = [
        ("MRTD", td.mr_td.hex()),
        ("RTMR0", td.rtmr0.hex()),
        ("RTMR1", td.rtmr1.hex()),
        ("RTMR2", td.rtmr2.hex()),
        ("RTMR3", td.rtmr3.hex()),
        ("MRSEAM", td.mr_seam.hex()),
        ("TEE TCB SVN", td.tee_tcb_svn.hex()),
        ("TD attributes / XFAM", f"{td.td_attributes.hex()} / {td.xfam.hex()}"),
        ("Debug", "[bold red]yes: debuggable TD, not for production[/]" if td.debug else "no"),
    ]
    if td.mr_servicetd is not None:
        identity.append(("MRSERVICETD", td.mr_servicetd.hex()))
    return tcb, identity


def _verdict_table(result: VerificationResult) -> Table:
    style = _STATUS_STYLE.get(result.status.value, "bold")
    root = (
        "Intel SGX Root CA (pinned key)"
        if result.trusted_root_is_intel
        else f"[bold yellow]not Intel[/]: key SHA-256 {result.root_key_sha256[:16]}…"
    )
    tcb, identity = _identity_rows(result)
    rows: list[tuple[str, str]] = [
        ("Status", f"[{style}]{result.status.value}[/]"),
        ("Platform TCB", result.platform_status.value),
        *tcb,
        ("QE TCB", result.qe_status.value),
        ("Advisories", ", ".join(result.advisory_ids) or "none"),
        ("TCB date", result.tcb_date.strftime("%Y-%m-%d")),
        ("FMSPC / PCE-ID", f"{result.fmspc} / {result.pce_id}"),
        *identity,
        ("Report data", result.report_data.hex()),
        (
            "Collateral",
            ("[bold red]expired[/]" if result.collateral_expired else "valid")
            + f" (earliest expiration {result.earliest_expiration:%Y-%m-%dT%H:%M:%SZ})",
        ),
        ("CRLs checked", "yes" if result.crl_checked else "[bold yellow]no (skipped)[/]"),
        ("Trust root", root),
    ]
    if result.revocation is not None:
        rows.append(("Revocation", f"[bold red]{escape(result.revocation)}[/]"))
    tee = "SGX" if isinstance(result, VerifiedQuote) else "TDX"
    table = Table(title=f"{tee} quote verification", title_justify="left", show_header=False)
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


@quote_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--collateral",
    "collateral_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Collateral bundle JSON (dcap-qvl QuoteCollateralV3 format).",
)
@click.option(
    "--at",
    "at_text",
    metavar="ISO8601",
    help="Verification time, e.g. 2025-07-04T12:00:00Z (default: now; UTC if no offset).",
)
@click.option(
    "--trust-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="DER/PEM certificate of an alternative root (e.g. a simulated platform's), pinned by key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option(
    "--allow-expired-collateral",
    is_flag=True,
    help="Report expired collateral (collateral_expired) instead of failing.",
)
@click.option(
    "--insecure-skip-crl",
    is_flag=True,
    help="Accept collateral without CRLs; recorded as crl_checked=false.",
)
def verify_command(
    file: Path,
    collateral_file: Path,
    at_text: str | None,
    trust_root: Path | None,
    as_json: bool,
    allow_expired_collateral: bool,
    insecure_skip_crl: bool,
) -> None:
    """Verify a quote FILE against collateral as Intel's QVL does.

    Exit 0: verified (any TCB status except Revoked); 1: verification failed or Revoked;
    2: usage error or malformed input.
    """
    at = _verification_time(at_text)
    try:
        result = verify_quote(
            read_quote_file(file),
            Collateral.from_json(collateral_file.read_bytes()),
            at=at,
            trusted_root=None if trust_root is None else _trust_root_der(trust_root),
            allow_expired_collateral=allow_expired_collateral,
            insecure_skip_crl=insecure_skip_crl,
            allow_revoked=True,  # reported as the verdict below, with exit 1
        )
    except ConfnodeError as error:
        step = _error_step(error)
        if as_json:
            print_json({"error": {"step": step, "message": error.message}})
        else:
            # Messages quote certificate names from the input: escape them for rich.
            hint = f" (hint: {escape(error.hint)})" if error.hint else ""
            err_console.print(
                f"[bold red]verification failed[/] at step [bold]{step}[/]: "
                f"{escape(error.message)}{hint}",
                highlight=False,
                soft_wrap=True,
            )
        sys.exit(exit_code_for(error))
    if as_json:
        print_json(result.to_json_dict())
    else:
        console.print(_verdict_table(result))
    if result.revoked:
        if not as_json:
            reason = escape(result.revocation or "TCB level revoked")
            err_console.print(f"[bold red]revoked[/]: {reason}")
        sys.exit(EXIT_FAILED)
