"""``confnode attestation``: the MAA-compatible attestation service and its client side."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from confnode.cli._common import console, main_group, print_json

_STATE = Path.home() / ".local" / "state" / "confnode" / "attestation"


@main_group.group("attestation")
def attestation() -> None:
    """MAA-compatible attestation service: tokens, policy, key release."""


@attestation.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--issuer", help="Public base URL (token iss); default scheme://host:port.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP (trusted networks only).")
@click.option("--pccs-url", help="PCS/PCCS base URL for collateral.")
@click.option(
    "--collateral-dir",
    type=click.Path(file_okay=False),
    help="Collateral cache; without --pccs-url, the offline bundles (*.json) to use.",
)
@click.option(
    "--trust-root",
    type=click.Path(exists=True, dir_okay=False),
    help="Extra trusted root certificate (e.g. from `confnode sim root`); tokens say simulated.",
)
@click.option(
    "--allow-simulated",
    is_flag=True,
    help="Attest simulated evidence (--trust-root); its tokens name the issuer URL/simulated.",
)
@click.option(
    "--signing-key-dir",
    type=click.Path(file_okay=False),
    show_default="~/.local/state/confnode/attestation/signing",
    help="Token-signing key (created when absent) or a mounted Secret.",
)
@click.option("--keys-dir", type=click.Path(file_okay=False), help="Releasable keys.")
@click.option(
    "--policy-file",
    type=click.Path(dir_okay=False),
    help="Where PUT policies are kept (shared by replicas); default in memory.",
)
@click.option(
    "--policy-signer",
    "policy_signers",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trusted policy-signer certificate (repeatable); without one, policy changes are off.",
)
@click.option(
    "--policy-admin-auth",
    type=click.Choice(["kubernetes"]),
    help="Authenticate /policies callers (TokenReview + SubjectAccessReview); default: refused.",
)
@click.option(
    "--insecure-allow-unsigned-policy-changes",
    is_flag=True,
    help="Accept unsigned policy changes; without --policy-admin-auth, from anyone (tests only).",
)
@click.option("--max-body", default=256 * 1024, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option(
    "--insecure-allow-expired-collateral",
    is_flag=True,
    help="Attest with collateral past its nextUpdate (tokens say x-confnode-collateral-expired).",
)
def serve(
    host: str,
    port: int,
    issuer: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_http: bool,
    pccs_url: str | None,
    collateral_dir: str | None,
    trust_root: str | None,
    allow_simulated: bool,
    signing_key_dir: str | None,
    keys_dir: str | None,
    policy_file: str | None,
    policy_signers: tuple[str, ...],
    policy_admin_auth: str | None,
    insecure_allow_unsigned_policy_changes: bool,
    max_body: int,
    workers: int,
    insecure_allow_expired_collateral: bool,
) -> None:
    """Run the attestation service (POST /attest/SgxEnclave, /attest/TdxVm, /certs, /policies)."""
    import logging

    from confnode.attestation._server import Settings, run

    settings = Settings(
        signing_key_dir=signing_key_dir or str(_STATE / "signing"),
        host=host,
        port=port,
        issuer=issuer,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure_http=insecure_http,
        pccs_url=pccs_url,
        collateral_dir=collateral_dir,
        trust_root=trust_root,
        keys_dir=keys_dir,
        policy_file=policy_file,
        policy_signers=policy_signers,
        insecure_unsigned_policy_changes=insecure_allow_unsigned_policy_changes,
        max_body=max_body,
        workers=workers,
        allow_expired_collateral=insecure_allow_expired_collateral,
        policy_admin_auth=policy_admin_auth,
        allow_simulated=allow_simulated,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    console.print(f"attestation service on [bold]{settings.public_url}[/]", highlight=False)
    run(settings)


@attestation.command("rotate-key")
@click.option("--signing-key-dir", type=click.Path(file_okay=False), required=True)
@click.option("--issuer", required=True, help="The service's public base URL.")
@click.option("--token-lifetime-hours", default=8, show_default=True, type=int)
def rotate_key(signing_key_dir: str, issuer: str, token_lifetime_hours: int) -> None:
    """Replace the signing key; the old one stays in /certs until its tokens expire."""
    from confnode.tokens import KeyDirectory

    ring = KeyDirectory(signing_key_dir).rotate(
        issuer.rstrip("/"), datetime.now(UTC), timedelta(hours=token_lifetime_hours)
    )
    console.print(f"new signing key kid={ring.current.kid}; {len(ring.retired)} retired key(s)")


@attestation.command("new-key")
@click.argument("name")
@click.option("--keys-dir", type=click.Path(file_okay=False), required=True)
@click.option("--authority", required=True, help="Attestation service URL the policy trusts.")
@click.option("--mrsigner", help="Require this MRSIGNER (hex).")
@click.option("--mrenclave", help="Require this MRENCLAVE (hex).")
@click.option("--mrtd", help="Release to TDs (TdxVm tokens) with this MRTD (hex), not enclaves.")
@click.option(
    "--rtmr",
    "rtmrs",
    multiple=True,
    metavar="INDEX=HEX",
    help="Release to TDs whose RTMR INDEX (0-3) is HEX (repeatable); implies a TD-bound key.",
)
@click.option("--allow-simulated", is_flag=True, help="Release to simulated platforms too.")
def new_key(
    name: str,
    keys_dir: str,
    authority: str,
    mrsigner: str | None,
    mrenclave: str | None,
    mrtd: str | None,
    rtmrs: tuple[str, ...],
    allow_simulated: bool,
) -> None:
    """Create a random AES-256 key NAME with a Key Vault-style release policy.

    The policy admits non-debug SGX enclaves, or with --mrtd/--rtmr non-debug TDs, attested by
    --authority (and, with --allow-simulated, by its simulated issuer).
    """
    import os

    from confnode.attestation import default_release_policy
    from confnode.attestation._app import SIMULATED_PATH
    from confnode.attestation._keys import check_key_name, td_release_policy
    from confnode.attestation._tdx import SIMULATED_TDX_TOKEN_TYPE
    from confnode.errors import InvalidInput
    from confnode.policy import parse_release_policy

    check_key_name(name)
    td_bound = mrtd is not None or bool(rtmrs)
    if td_bound and (mrsigner or mrenclave):
        raise click.UsageError(
            "--mrtd/--rtmr (a TD-bound key) cannot be combined with --mrsigner/--mrenclave"
        )
    measurements = {"tdx_mrtd": mrtd} if mrtd else {}
    for option in rtmrs:
        index, _, value = option.partition("=")
        if index not in ("0", "1", "2", "3") or not value:
            raise click.BadParameter(
                f"{option!r}; expected INDEX=HEX with INDEX 0-3", param_hint="--rtmr"
            )
        measurements[f"tdx_rtmr{index}"] = value
    for claim, value in measurements.items():
        if len(value) != 96 or not all(c in "0123456789abcdefABCDEF" for c in value):
            raise InvalidInput(f"{claim} must be 48 bytes as 96 hex digits, got {value!r}")
    directory = Path(keys_dir)
    directory.mkdir(parents=True, exist_ok=True)
    base = authority.rstrip("/")
    policy = td_release_policy(base) if td_bound else default_release_policy(base)
    conditions: list[dict[str, Any]] = policy["anyOf"][0]["allOf"]
    if mrsigner:
        conditions.append({"claim": "x-ms-sgx-mrsigner", "equals": mrsigner.lower()})
    if mrenclave:
        conditions.append({"claim": "x-ms-sgx-mrenclave", "equals": mrenclave.lower()})
    conditions += [{"claim": c, "equals": v.lower()} for c, v in measurements.items()]
    if allow_simulated:  # tokens about simulated evidence come from the simulated issuer
        # (and, for TDs, say so in x-ms-attestation-type)
        simulated = [
            {"claim": c["claim"], "equals": SIMULATED_TDX_TOKEN_TYPE}
            if c["claim"] == "x-ms-attestation-type"
            else c
            for c in conditions
            if c["claim"] != "x-confnode-simulated"
        ]
        policy["anyOf"].append({"authority": base + SIMULATED_PATH, "allOf": simulated})
    parse_release_policy(policy)
    key_file = directory / f"{name}.key"
    if (directory / f"{name}.jwk").exists():
        raise InvalidInput(f"key {name!r} already exists as {directory / f'{name}.jwk'}")
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise InvalidInput(
            f"key {name!r} already exists in {directory}; refusing to overwrite it"
        ) from error
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))
    (directory / f"{name}.policy.json").write_text(json.dumps(policy, indent=2) + "\n")
    console.print(f"created {key_file} with release policy {name}.policy.json")


def _show_claims(claims: dict[str, Any]) -> None:
    table = Table(title="token claims", show_lines=False)
    table.add_column("claim")
    table.add_column("value", overflow="fold")
    for name, value in claims.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        table.add_row(name, shown)
    console.print(table)


@attestation.command("sim-attest")
@click.option("--url", required=True, help="Attestation service base URL.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="TLS CA to trust.")
@click.option(
    "--sim-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Simulated platform state (`confnode sim init`).",
)
@click.option("--debug-enclave", is_flag=True, help="Quote from a debug enclave.")
@click.option("--release", "release_key", help="Then release this key and decrypt it.")
@click.option("--nonce")
@click.option("--json", "as_json", is_flag=True, help="Print the claims as JSON.")
def sim_attest(
    url: str,
    ca_cert: str | None,
    sim_dir: str,
    debug_enclave: bool,
    release_key: str | None,
    nonce: str | None,
    as_json: bool,
) -> None:
    """Attest a simulated enclave that binds a fresh key, show the claims, release a key."""
    from joserfc.jwk import RSAKey

    from confnode.attestation.client import AttestationClient, runtime_data_for_key
    from confnode.sim import SimPlatform
    from confnode.tokens import unwrap

    platform = SimPlatform.load(sim_dir)
    enclave = platform.enclave(debug=debug_enclave)
    enclave_key = RSAKey.generate_key(2048)
    runtime, report_data = runtime_data_for_key(
        {**enclave_key.as_dict(private=False), "kid": "enclave-key"}
    )
    report = enclave.report(platform.quoting_enclave.target_info(), report_data)
    quote = platform.quote(report)
    with AttestationClient(url, verify=ca_cert or True) as client:
        token = client.attest_sgx(quote, runtime_json=runtime, nonce=nonce)["token"]
        claims = client.validate(token, allow_simulated=True)
        if as_json:
            print_json(claims)
        else:
            hidden = ("x-ms-runtime", "x-ms-sgx-collateral")
            _show_claims({k: v for k, v in claims.items() if k not in hidden})
        if release_key:
            wrapped = client.release(release_key, token)
            secret = json.loads(unwrap(wrapped, enclave_key))
            console.print(
                f"released key [bold]{release_key}[/] ({secret.get('kty')}), decrypted inside "
                "the (simulated) enclave with its private key",
                highlight=False,
            )
