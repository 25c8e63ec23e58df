"""Fixtures for the attestation tests: a simulated platform, quotes that bind an enclave key, and
the service wired with the real DCAP appraiser (in-process through httpx's ASGI transport)."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from attestation_testlib import ISSUER, SIM_ISSUER, HttpsService, ServiceFactory, Sim
from joserfc.jwk import RSAKey

from confnode.attestation import AttestationService, KeyStore, PolicyStore
from confnode.attestation._dcap import DcapAppraiser
from confnode.collateral import Collateral
from confnode.sgx import Quote
from confnode.sim import SimPlatform
from confnode.tokens import KeyDirectory, KeyRing


@pytest.fixture(scope="session")
def enclave_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="session")
def sim(enclave_key: RSAKey) -> Sim:
    return Sim(SimPlatform(), enclave_key)


@pytest.fixture(scope="session")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    path = tmp_path_factory.mktemp("signing")
    return KeyDirectory(path).load_or_create(ISSUER, datetime.now(UTC))


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "app.key").write_bytes(hashlib.sha256(b"app key").digest())
    conditions = [
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
        {"claim": "x-confnode-tcb-status", "equals": "UpToDate"},
    ]
    policy = {
        "version": "1.0.0",
        "anyOf": [
            {"authority": ISSUER, "allOf": conditions},
            {"authority": SIM_ISSUER, "allOf": conditions},
        ],
    }
    (directory / "app.policy.json").write_text(json.dumps(policy))
    return directory


@pytest.fixture
def make_service(sim: Sim, ring: KeyRing, keys_dir: Path) -> ServiceFactory:
    """Build a service; ``collateral`` overrides what the PCCS would return."""

    def build(
        *,
        platform: SimPlatform | None = None,
        collateral: Collateral | None = None,
        trust_root: bool = True,
        **kwargs: Any,
    ) -> AttestationService:
        source = platform or sim.platform
        bundle = collateral if collateral is not None else source.collateral(datetime.now(UTC))

        def lookup(quote: Quote) -> Collateral:
            return bundle

        appraiser = DcapAppraiser(
            lookup, extra_root=sim.platform.root_certificate() if trust_root else None
        )
        options: dict[str, Any] = {
            "ring": ring,
            "policies": PolicyStore(),
            "keys": KeyStore(keys_dir, ISSUER),
            # Policy-semantics tests upload unsigned policies; the production default (refused
            # without a signer) is tested explicitly in test_attestation_service.py.
            "insecure_unsigned_policy_changes": True,
            "allow_simulated": True,
        }
        options.update(kwargs)
        return AttestationService(appraiser=appraiser, issuer=ISSUER, **options)

    return build


@pytest.fixture
def client(make_service: ServiceFactory) -> Iterator[httpx.AsyncClient]:
    yield _client(make_service())


def _client(service: AttestationService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app()), base_url=ISSUER)


@pytest.fixture
def client_for() -> Callable[[AttestationService], httpx.AsyncClient]:
    return _client


@pytest.fixture(scope="session")
def serve_https(serve_app: Callable[..., AbstractContextManager[str]]) -> HttpsService:
    """``with serve_https(tmp, make_service) as (url, ca_file):`` the service
    ``make_service(url)`` builds, over HTTPS on loopback (uvicorn thread) with a throwaway CA
    (trustme) whose certificate is ``ca_file``."""

    @contextmanager
    def serve(
        tmp: Path, make_service: Callable[[str], AttestationService]
    ) -> Iterator[tuple[str, str]]:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert_file, key_file, ca_file = tmp / "tls.crt", tmp / "tls.key", tmp / "ca.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        ca.cert_pem.write_to_path(str(ca_file))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        try:
            service = make_service(f"https://127.0.0.1:{sock.getsockname()[1]}")
            with serve_app(
                service.app(),
                sock=sock,
                ssl_certfile=str(cert_file),
                ssl_keyfile=str(key_file),
                access_log=False,
                lifespan="off",
            ) as url:
                yield url, str(ca_file)
        finally:
            sock.close()

    return serve
