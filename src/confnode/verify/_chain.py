"""Certificate chains to the pinned root: the quote's PCK chain and the collateral issuer chains.

The checks follow QVL (``PckCertVerifier``, ``CommonVerifier``): fixed chain length, CN rules,
each certificate signed by the next, the root self-signed with exactly the pinned key. Validity
periods are not checked here: QVL does not look at ``notBefore`` and treats ``notAfter`` as
collateral expiry (non-fatal), so each result carries its earliest ``notAfter`` instead.
Results depend only on the certificate bytes and the root key, which makes them cacheable.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from confnode.errors import VerificationError
from confnode.verify._crypto import key_point
from confnode.verify._errors import UntrustedRoot
from confnode.verify._root import INTEL_SGX_ROOT_CA_PUBLIC_KEY

__all__ = [
    "LruCache",
    "ThreeCertChain",
    "TwoCertChain",
    "check_three",
    "check_two",
    "clear_chain_caches",
    "common_name",
    "der_of",
    "root_name",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

_CERT_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


class LruCache(Generic[_K, _V]):
    """A small thread-safe LRU map; bounded so hostile inputs cannot grow it."""

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


#: Certificate signatures found valid, by the exact DER of (child, issuer). One verification
#: meets the same root and CA certificates in up to four chains (PCK chain, PCK CRL issuer
#: chain, TCB Info and QE Identity issuer chains); each distinct signature is verified once.
#: Keyed by DER bytes rather than certificate objects: ``bytes`` cache their hash, while
#: hashing or comparing a ``Certificate`` costs microseconds every time.
_ISSUED: LruCache[tuple[bytes, bytes], bool] = LruCache(256)


def clear_chain_caches() -> None:
    """Forget which certificate signatures were verified (benchmarks, tests)."""
    _ISSUED.clear()


def common_name(cert: x509.Certificate) -> str:
    """The subject CN (empty when absent), for the QVL CN rules."""
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return " ".join(str(a.value) for a in attrs)


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def root_name(root_key: bytes) -> str:
    if root_key == INTEL_SGX_ROOT_CA_PUBLIC_KEY:
        return "the pinned Intel SGX Root CA key"
    return f"the trusted root key (SHA-256 {_fingerprint(root_key)}…)"


@dataclass(frozen=True, slots=True)
class TwoCertChain:
    """A verified ``leaf → root`` chain (TCB Signing or PCK CRL issuer chain)."""

    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePublicKey
    root: x509.Certificate
    not_after: datetime


@dataclass(frozen=True, slots=True)
class ThreeCertChain:
    """A verified ``leaf → intermediate → root`` chain (the quote's PCK chain)."""

    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePublicKey
    intermediate: x509.Certificate
    root: x509.Certificate
    not_after: datetime


def der_of(certs: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    """The DER of each certificate: the exact identity chain checks and caches are keyed by."""
    return tuple(c.public_bytes(Encoding.DER) for c in certs)


def _check_root(
    cert: x509.Certificate,
    der: bytes,
    root_key: bytes,
    error: type[VerificationError],
    what: str,
) -> None:
    try:
        found = key_point(cert.public_key())
    except _CERT_ERRORS as exc:
        raise error(f"{what}: root certificate key unreadable ({exc}); expected P-256") from None
    if found != root_key:
        shown = _fingerprint(found) if found else "not a P-256 key"
        raise UntrustedRoot(
            f"{what}: root certificate key (SHA-256 {shown}…) is not {root_name(root_key)}"
        )
    cn = _checked_cn(cert, error, what, "root", "SGX Root CA")
    if "SGX Root CA" not in cn:
        raise error(f"{what}: root CN is {cn!r}; expected a CN containing 'SGX Root CA'")
    _check_issued_by(cert, der, cert, der, error, what, "root", "root's own")


def _check_issued_by(
    child: x509.Certificate,
    child_der: bytes,
    issuer: x509.Certificate,
    issuer_der: bytes,
    error: type[VerificationError],
    what: str,
    child_name: str,
    issuer_name: str,
) -> None:
    pair = (child_der, issuer_der)
    if _ISSUED.get(pair):
        return
    try:
        _verify_issued(child, child_der, issuer, issuer_der)
    except InvalidSignature:
        raise error(
            f"{what}: {child_name} certificate signature does not verify with the "
            f"{issuer_name} key; expected a valid signature by it"
        ) from None
    except _CERT_ERRORS as exc:
        raise error(
            f"{what}: {child_name} certificate issuer {child.issuer.rfc4514_string()!r} is "
            f"not the subject {issuer.subject.rfc4514_string()!r} of the {issuer_name} "
            f"certificate ({exc}); expected a certificate issued by it"
        ) from None
    _ISSUED.put(pair, True)


#: AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758: no parameters), the only one Intel uses.
_ECDSA_SHA256_ALGORITHM = bytes.fromhex("300a06082a8648ce3d040302")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _element(der: bytes, pos: int) -> tuple[int, int]:
    """``(value start, end)`` of the DER element at ``pos`` (already validated by the parser)."""
    size = der[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    return pos, pos + size


def _parts(der: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """``(tbsCertificate, outer algorithm, inner algorithm, issuer, subject)`` as exact DER."""
    body, _ = _element(der, 0)
    tbs_body, tbs_end = _element(der, body)
    _, outer_end = _element(der, tbs_end)
    pos = tbs_body
    if der[pos] == 0xA0:  # [0] version
        pos = _element(der, pos)[1]
    inner = _element(der, pos)[1]  # after serialNumber
    issuer = _element(der, inner)[1]
    validity = _element(der, issuer)[1]
    subject = _element(der, validity)[1]
    subject_end = _element(der, subject)[1]
    return (
        der[body:tbs_end],
        der[tbs_end:outer_end],
        der[inner:issuer],
        der[issuer:validity],
        der[subject:subject_end],
    )


def _verify_issued(
    child: x509.Certificate, child_der: bytes, issuer: x509.Certificate, issuer_der: bytes
) -> None:
    """``child.verify_directly_issued_by(issuer)``, about 20 µs cheaper per certificate.

    For ecdsa-with-SHA256 under a P-256 issuer key (every Intel certificate) the same checks run
    on the exact DER: inner and outer signature algorithms identical, child issuer name equal to
    the issuer's subject name, ECDSA over the tbsCertificate bytes with the issuer's key object
    (which ``cryptography`` caches on the certificate). Anything else goes to that method
    itself. Raises as it does (``InvalidSignature``, ``ValueError``).
    """
    key = issuer.public_key()
    try:
        tbs, outer, inner, child_issuer, _ = _parts(child_der)
        issuer_subject = _parts(issuer_der)[4]
    except IndexError:  # not reachable for DER cryptography parsed; never crash on it
        tbs = outer = inner = child_issuer = issuer_subject = b""
    if not (
        outer == inner == _ECDSA_SHA256_ALGORITHM
        and isinstance(key, ec.EllipticCurvePublicKey)
        and key.curve.name == "secp256r1"
    ):
        child.verify_directly_issued_by(issuer)
        return
    if child_issuer != issuer_subject:
        raise ValueError("Issuer certificate subject does not match certificate issuer.")
    key.verify(child.signature, tbs, _ECDSA_SHA256)


def _ec_key(
    cert: x509.Certificate, error: type[VerificationError], what: str
) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except _CERT_ERRORS as exc:
        raise error(f"{what}: leaf key unreadable ({exc}); expected an ECDSA P-256 key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise error(f"{what}: leaf key is {type(key).__name__}; expected an ECDSA P-256 key")
    return key


def _not_after(certs: Sequence[x509.Certificate]) -> datetime:
    return min(c.not_valid_after_utc for c in certs)


def check_two(
    certs: Sequence[x509.Certificate],
    ders: Sequence[bytes],
    root_key: bytes,
    *,
    what: str,
    leaf_cn: str,
    error: type[VerificationError],
) -> TwoCertChain:
    """Verify ``leaf → root`` (TCB Signing chain, PCK CRL issuer chain): exactly 2 certificates.

    ``ders`` is :func:`der_of` ``certs``."""
    if len(certs) != 2:
        raise error(f"{what}: {len(certs)} certificates; expected exactly 2 (leaf, root)")
    leaf, root = certs
    leaf_der, root_der = ders
    try:
        _check_root(root, root_der, root_key, error, what)
        _check_cn(leaf, leaf_cn, error, what, "leaf")
        _check_issued_by(leaf, leaf_der, root, root_der, error, what, "leaf", "root")
        return TwoCertChain(leaf, _ec_key(leaf, error, what), root, _not_after(certs))
    except _CERT_ERRORS as exc:  # a certificate field cryptography cannot decode
        raise error(f"{what}: malformed certificate ({exc})") from None


def check_three(
    certs: Sequence[x509.Certificate],
    ders: Sequence[bytes],
    root_key: bytes,
    *,
    what: str,
    leaf_cn: str,
    error: type[VerificationError],
) -> ThreeCertChain:
    """Verify ``leaf → intermediate CA → root`` (the PCK chain): exactly 3 certificates.

    ``ders`` is :func:`der_of` ``certs``."""
    if len(certs) != 3:
        raise error(
            f"{what}: {len(certs)} certificates; expected exactly 3 (PCK, intermediate CA, root)"
        )
    leaf, intermediate, root = certs
    leaf_der, intermediate_der, root_der = ders
    try:
        _check_root(root, root_der, root_key, error, what)
        _check_cn(intermediate, "CA", error, what, "intermediate")
        _check_issued_by(
            intermediate, intermediate_der, root, root_der, error, what, "intermediate", "root"
        )
        _check_cn(leaf, leaf_cn, error, what, "leaf")
        _check_issued_by(
            leaf, leaf_der, intermediate, intermediate_der, error, what, "leaf", "intermediate"
        )
        key = _ec_key(leaf, error, what)
        return ThreeCertChain(leaf, key, intermediate, root, _not_after(certs))
    except _CERT_ERRORS as exc:
        raise error(f"{what}: malformed certificate ({exc})") from None


def _check_cn(
    cert: x509.Certificate,
    needle: str,
    error: type[VerificationError],
    what: str,
    role: str,
) -> None:
    cn = _checked_cn(cert, error, what, role, needle)
    if needle not in cn:
        raise error(f"{what}: {role} CN is {cn!r}; expected a CN containing {needle!r}")


def _checked_cn(
    cert: x509.Certificate, error: type[VerificationError], what: str, role: str, needle: str
) -> str:
    """The subject CN for a CN rule; a subject that does not decode is said to be so."""
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise error(
            f"{what}: {role} subject does not decode ({exc}); expected a CN containing {needle!r}"
        ) from None
    return " ".join(str(a.value) for a in attrs)
