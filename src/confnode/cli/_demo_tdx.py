"""The demo's TDX step: real TD quotes verified, then a simulated TD attested and given a key.

The simulated TD runs on the demo platform's TDX host (same simulated root). Its quote goes to
``POST /attest/TdxVm`` of the demo's running attestation service over HTTPS, which fetches the
TDX collateral from the demo's simulated PCCS (``/tdx/certification/v4/tcb`` and ``/qe/identity``,
the CRLs from the SGX routes, as Intel's PCS splits them); a key whose release policy names the
TD's MRTD is then released to the key the TD bound in its report data.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import ECKey
from rich.table import Table

from confnode.attestation._claims import b64url, b64url_decode
from confnode.attestation.client import runtime_data_for_key
from confnode.cli._vectors import VectorSet, dcapqvl_tdx, utc
from confnode.errors import ConfnodeError
from confnode.sim import SimPlatform
from confnode.sim.tdx import SimTdxPlatform
from confnode.tokens import unwrap
from confnode.verify import TcbLevelNotFound, VerifiedTdQuote, verify_quote


class TdxMismatch(ConfnodeError):
    """A TD quote did not verify or attest as documented."""


def tdx_vectors(base: Path) -> tuple[VectorSet, ...]:
    """The real TDX quotes with full collateral (dcap-qvl samples) and their documented results.

    ``tdx_quote_outdated`` matches no TCB level of its collateral (Intel: TCB_NOT_SUPPORTED); its
    expected status is the name of the verifier's error.
    """
    sample = base / "Phala-Network_dcap-qvl" / "sample"
    return (
        dcapqvl_tdx(base),
        VectorSet(
            "Phala dcap-qvl tdx_quote_outdated (v5, TD 1.5)",
            (sample / "tdx_quote_outdated").read_bytes(),
            (sample / "tdx_quote_outdated_collateral.json").read_text(),
            (utc("2026-02-18T10:58:51Z"), utc("2026-03-20T10:41:15Z")),
            "TcbLevelNotFound",
            (),
            needs_crl_skip=False,
        ),
    )


def real_td_quotes(base: Path) -> Table:
    """Verify the real TD quotes at their windows' midpoints; raise unless as documented."""
    table = Table(title="Real TDX quotes from real hardware, verified as Intel's QVL does")
    for column in ("vector", "status", "MRTD", "module", "FMSPC"):
        table.add_column(column)
    for vector in tdx_vectors(base):
        try:
            result = verify_quote(vector.quote, vector.collateral(), at=vector.midpoint)
        except TcbLevelNotFound:
            if vector.expected_status != "TcbLevelNotFound":
                raise
            table.add_row(vector.name, "no TCB level (as documented)", "—", "—", "—")
            continue
        if not isinstance(result, VerifiedTdQuote) or result.status.value != vector.expected_status:
            got = result.status.value if isinstance(result, VerifiedTdQuote) else "an SGX verdict"
            raise TdxMismatch(f"{vector.name}: {got}, expected {vector.expected_status}")
        module = result.tdx_module
        table.add_row(
            vector.name,
            result.status.value,
            result.td.mr_td.hex()[:16] + "…",
            f"{module.identity_id or 'tdxModule'} SVN {module.isv_svn}",
            result.fmspc,
        )
    return table


@dataclass(frozen=True)
class TdOutcome:
    claims: dict[str, Any]
    status: str
    key_released: bool


def attest_simulated_td(state: Path, url: str, tls: ssl.SSLContext, keys: Path) -> TdOutcome:
    """A simulated TD binds a fresh key, attests at ``url``/attest/TdxVm and gets a TD-bound key.

    The key ``td-key`` is added to the running service's key directory (read per request) with
    a release policy naming the TD's MRTD and the simulated issuer.
    """
    tdx = SimTdxPlatform(SimPlatform.load(state))
    td_key = ECKey.generate_key("P-256")
    runtime, report_data = runtime_data_for_key({**td_key.as_dict(private=False), "kid": "td"})
    rtmr2 = hashlib.sha384(b"console=ttyS0 confnode-demo").digest()
    report = tdx.td_report(report_data, rtmrs=(bytes(48), bytes(48), rtmr2, bytes(48)), td15=True)
    secret = hashlib.sha256(b"demo TD disk key").digest()
    (keys / "td-key.key").write_bytes(secret)
    conditions = [
        {"claim": "tdx_mrtd", "equals": report.mr_td.hex()},
        {"claim": "tdx_td_attributes_debug", "equals": False},
    ]
    release = {
        "version": "1.0.0",
        "anyOf": [{"authority": f"{url}/simulated", "allOf": conditions}],
    }
    (keys / "td-key.policy.json").write_text(json.dumps(release))
    body = {
        "quote": b64url(tdx.quote(report)),
        "runtimeData": {"data": b64url(runtime), "dataType": "JSON"},
    }
    with httpx.Client(base_url=url, verify=tls, timeout=10, trust_env=False) as client:
        attested = client.post("/attest/TdxVm?api-version=2025-06-01", json=body)
        if attested.status_code != 200:
            raise TdxMismatch(
                f"/attest/TdxVm answered {attested.status_code}: {attested.text[:300]}"
            )
        token = attested.json()["token"]
        released = client.post("/keys/td-key/release", json={"target": token})
    if released.status_code != 200:
        raise TdxMismatch(f"key release answered {released.status_code}: {released.text[:300]}")
    key = json.loads(unwrap(released.json()["value"], td_key))
    claims = json.loads(b64url_decode(token.split(".")[1], "token payload"))
    return TdOutcome(
        claims=claims,
        status=str(claims["attester_tcb_status"]),
        key_released=b64url_decode(key["k"], "released key") == secret,
    )


def td_claims_table(claims: dict[str, Any]) -> Table:
    table = Table(title="TD attestation token claims (MAA TDX profile)", title_justify="left")
    table.add_column("claim")
    table.add_column("value", overflow="fold")
    for name in (
        "x-ms-attestation-type",
        "eat_profile",
        "attester_tcb_status",
        "tdx_mrtd",
        "tdx_rtmr2",
        "tdx_report_data",
        "tdx_seamsvn",
        "tdx_td_attributes_debug",
        "x-confnode-advisory-ids",
    ):
        value = claims.get(name)
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    return table
