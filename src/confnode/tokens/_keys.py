"""Token-signing keys: generation, the self-signed certificate, the key directory and rotation.

Directory layout (works as a writable volume or a read-only mounted Secret)::

    signing-key.pem        current RSA private key (PKCS#8, mode 0600)
    signing-cert.pem       self-signed certificate of that key, subject CN = the service URL
    retired-<kid>.json     {"certificate": PEM, "retire_after": ISO-8601}: a previous key that
                           stays in the JWKS until every token it signed has expired

A read-only directory must already hold the key; a writable one gets a key on first start.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import RSAKey

from confnode.errors import InfrastructureError, InvalidInput

KEY_FILE = "signing-key.pem"
CERT_FILE = "signing-cert.pem"
RETIRED_PREFIX = "retired-"
#: Lifetime of the self-signed signing certificate; rotation is expected well before it ends.
CERT_VALIDITY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The current signing key with its certificate and public JWK (``kid``, ``x5c``)."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    kid: str
    jwk: RSAKey

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk_of(self.certificate)

    @property
    def x5c(self) -> list[str]:
        return [_b64(self.certificate.public_bytes(serialization.Encoding.DER))]


@dataclass(frozen=True, slots=True)
class RetiredKey:
    certificate: x509.Certificate
    retire_after: datetime


@dataclass(frozen=True, slots=True)
class KeyRing:
    current: SigningKey
    retired: tuple[RetiredKey, ...] = ()

    def jwks(self, now: datetime) -> dict[str, Any]:
        """The JWKS to publish: the current key, plus retired keys whose tokens may be alive."""
        keys = [self.current.public_jwk()]
        keys += [public_jwk_of(r.certificate) for r in self.retired if r.retire_after > now]
        return {"keys": keys}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kid_of(certificate: x509.Certificate) -> str:
    """The key ID: the RFC 7638 thumbprint of the certificate's public key."""
    return RSAKey.import_key(certificate.public_key()).thumbprint()  # type: ignore[arg-type]


def public_jwk_of(certificate: x509.Certificate) -> dict[str, Any]:
    key = RSAKey.import_key(certificate.public_key())  # type: ignore[arg-type]
    jwk: dict[str, Any] = dict(key.as_dict(private=False))
    jwk.update(
        kid=key.thumbprint(),
        use="sig",
        alg="RS256",
        x5c=[_b64(certificate.public_bytes(serialization.Encoding.DER))],
    )
    return jwk


def self_signed_certificate(
    key: rsa.RSAPrivateKey, subject_url: str, now: datetime
) -> x509.Certificate:
    """A self-signed certificate whose subject CN is the service URL, as MAA's signing certs."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_url)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def make_signing_key(key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> SigningKey:
    if certificate.public_key() != key.public_key():
        raise InvalidInput("signing certificate does not belong to the signing key")
    return SigningKey(key, certificate, kid_of(certificate), RSAKey.import_key(key))


def generate_signing_key(subject_url: str, now: datetime, *, key_size: int = 2048) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return make_signing_key(key, self_signed_certificate(key, subject_url, now))


class KeyDirectory:
    """Signing keys kept in a directory (a volume or a mounted Kubernetes Secret)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load_or_create(self, subject_url: str, now: datetime) -> KeyRing:
        """Load the key ring; create the key (and certificate) when absent and writable."""
        key_path = self.path / KEY_FILE
        if not key_path.exists():
            self._write_current(generate_signing_key(subject_url, now))
        key = self._read_key(key_path)
        cert_path = self.path / CERT_FILE
        cert = _read_cert(cert_path) if cert_path.exists() else None
        if cert is None or not _cert_fits(cert, key, subject_url, now):
            # The service URL changed or the certificate lapsed: re-certify the same key.
            cert = self_signed_certificate(key, subject_url, now)
            if os.access(self.path, os.W_OK):
                self._write(CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return KeyRing(make_signing_key(key, cert), self._read_retired())

    def rotate(self, subject_url: str, now: datetime, token_lifetime: timedelta) -> KeyRing:
        """Replace the current key; keep the old one published for ``token_lifetime``."""
        ring = self.load_or_create(subject_url, now)
        old = ring.current
        retired = {
            "certificate": old.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "retire_after": (now + token_lifetime).isoformat(),
        }
        self._write(f"{RETIRED_PREFIX}{old.kid}.json", json.dumps(retired).encode(), 0o644)
        for stale in ring.retired:
            if stale.retire_after <= now:
                (self.path / f"{RETIRED_PREFIX}{kid_of(stale.certificate)}.json").unlink(
                    missing_ok=True
                )
        self._write_current(generate_signing_key(subject_url, now))
        return self.load_or_create(subject_url, now)

    def _write_current(self, key: SigningKey) -> None:
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write(KEY_FILE, pem, 0o600)
        self._write(CERT_FILE, key.certificate.public_bytes(serialization.Encoding.PEM), 0o644)

    def _write(self, name: str, data: bytes, mode: int) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_file_atomically(self.path / name, data, mode)
        except OSError as error:
            raise InfrastructureError(
                f"cannot write {name} in signing-key directory {self.path}: {error}",
                hint="mount the Secret with signing-key.pem and signing-cert.pem, "
                "or give the service a writable directory",
            ) from error

    def _read_key(self, path: Path) -> rsa.RSAPrivateKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise InvalidInput(f"cannot load signing key {path}: {error}") from error
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise InvalidInput(f"signing key {path} must be an RSA key of at least 2048 bits")
        return key

    def _read_retired(self) -> tuple[RetiredKey, ...]:
        out: list[RetiredKey] = []
        for entry in sorted(self.path.glob(f"{RETIRED_PREFIX}*.json")):
            try:
                doc = json.loads(entry.read_text())
                cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
                when = datetime.fromisoformat(doc["retire_after"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise InvalidInput(f"cannot read retired signing key {entry}: {error}") from error
            out.append(RetiredKey(cert, when if when.tzinfo else when.replace(tzinfo=UTC)))
        return tuple(out)


def write_file_atomically(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    """Write ``path`` through a new temporary file renamed into place.

    The temporary file is created with ``O_EXCL | O_NOFOLLOW`` and ``mode``: a file or symlink
    planted under its name is removed first rather than reused (a reused file would keep its old,
    perhaps world-readable, mode; a symlink would redirect the private key elsewhere), and if one
    reappears in between, creation fails instead of following it. Raises ``OSError``.

    ``exclusive``: publish with ``link`` instead of ``rename``, which fails (``FileExistsError``)
    rather than replace an existing ``path``; the temporary name then carries the process id.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if exclusive else f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if exclusive:
        tmp.unlink(missing_ok=True)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot load signing certificate {path}: {error}") from error


def _cert_fits(
    cert: x509.Certificate, key: rsa.RSAPrivateKey, subject_url: str, now: datetime
) -> bool:
    oid = NameOID.COMMON_NAME
    names: Sequence[x509.NameAttribute[Any]] = cert.subject.get_attributes_for_oid(oid)
    return (
        cert.public_key() == key.public_key()
        and [n.value for n in names] == [subject_url]
        and cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    )


class ReloadingKeyRing:
    """The key ring of a directory, re-read when the directory changes (rotation, Secret update).

    Rotation renames files into place and Kubernetes swaps a Secret's ``..data`` symlink; both
    change the directory's mtime, so one ``stat`` per call is enough to notice.
    """

    def __init__(self, directory: KeyDirectory, subject_url: str, now: datetime) -> None:
        self.directory = directory
        self.subject_url = subject_url
        self._ring = directory.load_or_create(subject_url, now)
        self._stamp = self._mtime()

    def _mtime(self) -> int:
        try:
            return self.directory.path.stat().st_mtime_ns
        except OSError:
            return -1

    def current(self, now: datetime) -> KeyRing:
        stamp = self._mtime()
        if stamp != self._stamp:
            try:
                self._ring = self.directory.load_or_create(self.subject_url, now)
                self._stamp = stamp
            except (InvalidInput, InfrastructureError):
                pass  # half-written update: keep signing with the ring we have
        return self._ring
