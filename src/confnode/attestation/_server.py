"""Building the service from its settings and running it on uvicorn (one or several workers).

Several workers need an import string, so the settings travel to the worker processes as JSON in
the ``CONFNODE_ATTESTATION_SETTINGS`` environment variable and :func:`app_from_env` rebuilds the
service there. The signing key is created once, in the parent, before workers start.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette

from confnode._https import ReloadingTLS, serve, uvicorn_config
from confnode.attestation._admin import KubernetesReviews
from confnode.attestation._app import DEFAULT_MAX_BODY, AttestationService
from confnode.attestation._dcap import DcapAppraiser
from confnode.attestation._keys import KeyStore
from confnode.attestation._policies import PolicyStore
from confnode.attestation._tdx import DcapTdAppraiser, td_policy_store, tdx_policy_file
from confnode.collateral import Collateral
from confnode.errors import InvalidInput
from confnode.pccs import CollateralClient, offline_collateral_client, tdx_collateral_client
from confnode.sgx import Quote
from confnode.tokens import KeyDirectory, ReloadingKeyRing

ENV_SETTINGS = "CONFNODE_ATTESTATION_SETTINGS"


@dataclass(frozen=True, slots=True)
class Settings:
    signing_key_dir: str
    host: str = "127.0.0.1"
    port: int = 8443
    issuer: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_http: bool = False
    pccs_url: str | None = None
    collateral_dir: str | None = None
    trust_root: str | None = None
    keys_dir: str | None = None
    policy_file: str | None = None
    policy_signers: tuple[str, ...] = field(default_factory=tuple)
    insecure_unsigned_policy_changes: bool = False
    max_body: int = DEFAULT_MAX_BODY
    workers: int = 1
    allow_expired_collateral: bool = False
    #: How callers of /policies are authenticated: None (management refused) or "kubernetes".
    policy_admin_auth: str | None = None
    allow_simulated: bool = False

    def __post_init__(self) -> None:
        if self.insecure_http and (self.tls_cert or self.tls_key):
            raise InvalidInput("--insecure-http cannot be combined with --tls-cert/--tls-key")
        if not self.insecure_http and not (self.tls_cert and self.tls_key):
            raise InvalidInput(
                "HTTPS needs --tls-cert and --tls-key",
                hint="pass both, or --insecure-http for plain HTTP on a trusted network",
            )
        if self.pccs_url is None and self.collateral_dir is None:
            raise InvalidInput(
                "no collateral source", hint="pass --pccs-url URL and/or --collateral-dir DIR"
            )
        if self.policy_admin_auth not in (None, "kubernetes"):
            raise InvalidInput(
                f"policy admin authentication {self.policy_admin_auth!r}; expected 'kubernetes'"
            )
        if self.trust_root is not None and not self.allow_simulated:
            # Evidence chaining to the extra root is simulated evidence: accepting it is a
            # decision the operator states, not a side effect of trusting a root.
            raise InvalidInput(
                "--trust-root makes quotes from that root simulated evidence, which is refused "
                "unless --allow-simulated is given as well",
                hint="add --allow-simulated (tests and demos only), or drop --trust-root",
            )

    @property
    def public_url(self) -> str:
        if self.issuer:
            return self.issuer.rstrip("/")
        scheme = "http" if self.insecure_http else "https"
        return f"{scheme}://{self.host}:{self.port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        doc = json.loads(text)
        doc["policy_signers"] = tuple(doc.get("policy_signers", ()))
        return cls(**doc)


def load_certificate(path: str | Path) -> x509.Certificate:
    """A certificate from a PEM or DER file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read certificate {path}: {error}") from error
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as error:
        raise InvalidInput(f"{path} is not a PEM or DER certificate: {error}") from error


def collateral_client(settings: Settings) -> CollateralClient:
    """PCCS client; ``--collateral-dir`` is its cache, and offline bundles in it are loaded."""
    if settings.pccs_url is not None:
        return CollateralClient(settings.pccs_url, cache_dir=settings.collateral_dir)
    assert settings.collateral_dir is not None  # checked in Settings
    return offline_collateral_client(Path(settings.collateral_dir), "SGX")


def build_service(settings: Settings, now: datetime | None = None) -> AttestationService:
    moment = now or datetime.now(UTC)
    issuer = settings.public_url
    source = ReloadingKeyRing(KeyDirectory(settings.signing_key_dir), issuer, moment)
    client = collateral_client(settings)

    def lookup(quote: Quote) -> Collateral:
        return client.for_quote(quote)

    extra_root = (
        load_certificate(settings.trust_root).public_bytes(Encoding.DER)
        if settings.trust_root
        else None
    )
    appraiser = DcapAppraiser(
        lookup,
        extra_root=extra_root,
        allow_expired_collateral=settings.allow_expired_collateral,
    )
    td_client = tdx_collateral_client(settings.pccs_url, settings.collateral_dir)
    td_appraiser = DcapTdAppraiser(
        td_client.for_quote,
        extra_root=extra_root,
        allow_expired_collateral=settings.allow_expired_collateral,
    )
    return AttestationService(
        appraiser=appraiser,
        td_appraiser=td_appraiser,
        td_policies=td_policy_store(tdx_policy_file(settings.policy_file)),
        ring=source.current(moment),
        ring_source=source,
        issuer=issuer,
        policies=PolicyStore(Path(settings.policy_file) if settings.policy_file else None),
        keys=KeyStore(Path(settings.keys_dir) if settings.keys_dir else None, issuer),
        signers=tuple(load_certificate(p) for p in settings.policy_signers),
        insecure_unsigned_policy_changes=settings.insecure_unsigned_policy_changes,
        management_auth=(
            KubernetesReviews.in_cluster() if settings.policy_admin_auth == "kubernetes" else None
        ),
        allow_simulated=settings.allow_simulated,
        max_body=settings.max_body,
    )


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes (settings from :data:`ENV_SETTINGS`)."""
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise InvalidInput(f"{ENV_SETTINGS} is not set")
    return build_service(Settings.from_json(text)).app()


def worker_settings(settings: Settings, scratch: Path) -> Settings:
    """Settings for worker processes: without ``--policy-file`` they share one in ``scratch``.

    Each worker has its own memory, so an in-memory policy would change only in the worker that
    happened to receive the PUT; a file every worker re-reads keeps them in agreement.
    """
    if settings.policy_file is not None:
        return settings
    return replace(settings, policy_file=str(scratch / "policy.json"))


def run(settings: Settings) -> None:
    """Serve until interrupted."""
    service = build_service(settings)  # also creates the signing key before any worker starts
    if settings.workers > 1:
        with tempfile.TemporaryDirectory(prefix="confnode-policy-") as scratch:
            _run_workers(worker_settings(settings, Path(scratch)))
        return
    tls = (
        None
        if settings.insecure_http
        else ReloadingTLS(settings.tls_cert or "", settings.tls_key or "")
    )
    config = uvicorn_config(service.app(), host=settings.host, port=settings.port, tls=tls)
    asyncio.run(serve(config, tls))


def _run_workers(settings: Settings) -> None:
    os.environ[ENV_SETTINGS] = settings.to_json()
    uvicorn.run(
        "confnode.attestation._server:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        log_level="warning",
        access_log=False,
    )
