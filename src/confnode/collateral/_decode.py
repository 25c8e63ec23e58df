"""Decoders for the encodings collateral arrives in: CRLs, PEM, ECDSA signatures, signed JSON.

Every public function here is total over its input type: it either returns a parsed value or
raises :class:`confnode.InvalidCollateral` whose message names the item and what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from confnode.collateral._models import clear_date_cache
from confnode.errors import InvalidCollateral

__all__ = [
    "clear_parse_caches",
    "extract_signed_value",
    "normalise_pem_chain",
    "parse_certificate_der",
    "parse_crl",
    "parse_json_object",
    "parse_pem_chain",
    "parse_signature_der",
    "parse_signature_hex",
    "signature_to_der",
]

#: cryptography raises these for structurally bad or unsupported X.509 input. ``Warning`` is listed
#: because cryptography warns about some malformed fields (non-positive serials, odd name
#: attribute lengths) and a warning raised as an error (``-W error``) must still come out as
#: malformed collateral. Non-positive serials are also rejected explicitly, in every mode.
_X509_ERRORS = (
    Warning,
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_PEM_BLOCK_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL
)
_P256_ORDER_BYTES = 32


def _describe(data: bytes | str, limit: int = 24) -> str:
    """A short printable preview of the offending input for error messages."""
    text = repr(data[:limit])
    return text + ("…" if len(data) > limit else "")


def _as_bytes(data: bytes | str, what: str) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InvalidCollateral(
                f"{what}: expected ASCII text (PEM or hex), found a non-ASCII character at "
                f"position {exc.start}"
            ) from None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise InvalidCollateral(f"{what}: expected bytes or str, found {type(data).__name__}")


# --------------------------------------------------------------------------------------- CRLs


def parse_crl(data: bytes | str, *, what: str = "CRL") -> x509.CertificateRevocationList:
    """Decode a CRL given as DER, PEM or hex-encoded DER (the three encodings PCS/PCCS serve).

    Detection follows the first bytes: ``0x30`` is DER, ``-----BEGIN`` is PEM, an all-hex string
    starting ``30`` is hex of DER. The CRL fields a verifier reads are touched here, so a CRL that
    parses lazily but is broken inside fails now, as malformed collateral, not later.
    """
    raw = _as_bytes(data, what)
    if raw[:1] == b"\x30":
        der = raw
        encoding = "DER"
    else:
        text = raw.strip(b" \t\r\n\x00")
        if text.startswith(b"-----BEGIN"):
            der = _pem_single(text.decode("ascii", "replace"), "X509 CRL", what)
            encoding = "PEM"
        elif text[:2] == b"30" and _HEX_RE.fullmatch(text.decode("ascii", "replace")):
            if len(text) % 2:
                raise InvalidCollateral(
                    f"{what}: hex-encoded DER has an odd number of digits ({len(text)})"
                )
            der = bytes.fromhex(text.decode("ascii"))
            encoding = "hex DER"
        else:
            raise InvalidCollateral(
                f"{what}: expected DER (first byte 0x30), PEM (-----BEGIN X509 CRL-----) or "
                f"hex-encoded DER (hex digits starting '30'), found {_describe(raw)}"
            )
    try:
        crl = x509.load_der_x509_crl(der)
        _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc, crl.signature_algorithm_oid)
        for revoked in crl:
            if revoked.serial_number <= 0:
                raise ValueError(f"revoked serial number {revoked.serial_number} is not positive")
    except _X509_ERRORS as exc:
        raise InvalidCollateral(f"{what}: {encoding} is not a valid X.509 CRL ({exc})") from None
    return crl


def _pem_single(text: str, label: str, what: str) -> bytes:
    blocks = _pem_blocks(text, what)
    if len(blocks) != 1:
        raise InvalidCollateral(f"{what}: expected one PEM block, found {len(blocks)}")
    found_label, der = blocks[0]
    if found_label != label:
        raise InvalidCollateral(f"{what}: expected PEM label {label!r}, found {found_label!r}")
    return der


def _pem_blocks(text: str, what: str) -> list[tuple[str, bytes]]:
    """Split PEM text into (label, DER) blocks; only whitespace may surround the blocks."""
    blocks: list[tuple[str, bytes]] = []
    pos = 0
    for match in _PEM_BLOCK_RE.finditer(text):
        if text[pos : match.start()].strip():
            raise InvalidCollateral(
                f"{what}: unexpected text before PEM block {len(blocks) + 1}: "
                f"{_describe(text[pos : match.start()].strip())}"
            )
        begin, body, end = match.group(1), match.group(2), match.group(3)
        if begin != end:
            raise InvalidCollateral(
                f"{what}: PEM block {len(blocks) + 1} begins {begin!r} but ends {end!r}"
            )
        compact = "".join(body.split())
        try:
            der = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCollateral(
                f"{what}: PEM block {len(blocks) + 1} ({begin}) is not valid base64"
            ) from None
        blocks.append((begin, der))
        pos = match.end()
    if text[pos:].strip():
        raise InvalidCollateral(
            f"{what}: unexpected text after PEM block {len(blocks)}: "
            f"{_describe(text[pos:].strip())}"
        )
    return blocks


# -------------------------------------------------------------------------------- certificates


def parse_certificate_der(der: bytes, *, what: str = "certificate") -> x509.Certificate:
    """Parse one DER certificate, touching the fields a chain check reads.

    Results are cached by DER: collateral repeats the same few Intel certificates (root, TCB
    Signing, PCK CAs) in every bundle, and a shared immutable object also lets a verifier cache
    per-certificate work. :func:`clear_parse_caches` empties the caches (for cold benchmarks).
    """
    try:
        return _load_certificate(bytes(der))
    except _X509_ERRORS as exc:
        raise InvalidCollateral(f"{what}: not a valid X.509 certificate ({exc})") from None


@functools.lru_cache(maxsize=128)
def _load_certificate(der: bytes) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(der)
    _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.signature_algorithm_oid, cert.extensions)
    cert.public_key()
    if cert.serial_number <= 0:
        raise ValueError(f"serial number {cert.serial_number} is not positive")
    return cert


def clear_parse_caches() -> None:
    """Forget cached certificates, chains and dates, so the next parse does the full work."""
    _load_certificate.cache_clear()
    _parse_chain.cache_clear()
    clear_date_cache()


def normalise_pem_chain(text: str | bytes, *, what: str = "issuer chain") -> str:
    """The plain PEM text of a chain: percent-decoded when needed, trailing NULs removed."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCollateral(
                f"{what}: expected PEM text, found a non-UTF-8 byte at offset {exc.start}"
            ) from None
    if not isinstance(text, str):
        raise InvalidCollateral(f"{what}: expected str or bytes, found {type(text).__name__}")
    text = text.rstrip("\x00")
    if "-----BEGIN CERTIFICATE-----" not in text and "%" in text:
        try:
            text = urllib.parse.unquote(text, errors="strict").rstrip("\x00")
        except UnicodeDecodeError as exc:
            raise InvalidCollateral(
                f"{what}: percent-encoding decodes to invalid UTF-8 at offset {exc.start}"
            ) from None
    return text


def parse_pem_chain(
    text: str | bytes, *, what: str = "issuer chain"
) -> tuple[x509.Certificate, ...]:
    """Parse a PEM certificate chain, plain or percent-encoded (PCS ``…-Issuer-Chain`` headers).

    Trailing NULs are stripped (quotes carry NUL-terminated chains). At least one certificate is
    required; any non-certificate block or stray text is an error rather than silently skipped.
    """
    return _parse_chain(normalise_pem_chain(text, what=what), what)


@functools.lru_cache(maxsize=64)
def _parse_chain(plain: str, what: str) -> tuple[x509.Certificate, ...]:
    blocks = _pem_blocks(plain, what)
    if not blocks:
        raise InvalidCollateral(f"{what}: expected PEM certificates, found none")
    certs = []
    for index, (label, der) in enumerate(blocks, start=1):
        if label != "CERTIFICATE":
            raise InvalidCollateral(f"{what}: block {index} is {label!r}, expected 'CERTIFICATE'")
        certs.append(parse_certificate_der(der, what=f"{what} certificate {index}"))
    return tuple(certs)


# ---------------------------------------------------------------------------------- signatures


def parse_signature_hex(text: str | bytes, *, what: str = "signature") -> bytes:
    """Decode the hex raw ``r‖s`` ECDSA P-256 signature PCS and dcap-qvl use (128 hex digits)."""
    raw = _as_bytes(text, what).strip()
    if len(raw) != 2 * 2 * _P256_ORDER_BYTES or not _HEX_RE.fullmatch(raw.decode("ascii")):
        raise InvalidCollateral(
            f"{what}: expected 128 hex digits (raw r||s), found {len(raw)} characters "
            f"{_describe(raw)}"
        )
    return bytes.fromhex(raw.decode("ascii"))


def parse_signature_der(data: bytes | Iterable[int], *, what: str = "signature") -> bytes:
    """Convert a DER ``ECDSA-Sig-Value`` (as in the Fortanix wrappers) to 64-byte raw ``r‖s``."""
    if isinstance(data, bytes | bytearray | memoryview):
        der = bytes(data)
    else:
        try:
            der = bytes(data)
        except (TypeError, ValueError):
            raise InvalidCollateral(
                f"{what}: expected DER bytes or a list of byte values 0..255"
            ) from None
    try:
        r, s = decode_dss_signature(der)
    except ValueError as exc:
        raise InvalidCollateral(f"{what}: not a DER ECDSA signature ({exc})") from None
    limit = 1 << (8 * _P256_ORDER_BYTES)
    if not (0 < r < limit and 0 < s < limit):
        raise InvalidCollateral(
            f"{what}: r and s must be positive 256-bit integers for P-256, found "
            f"{r.bit_length()}-bit r and {s.bit_length()}-bit s"
        )
    return r.to_bytes(_P256_ORDER_BYTES, "big") + s.to_bytes(_P256_ORDER_BYTES, "big")


def signature_to_der(rs: bytes) -> bytes:
    """Raw 64-byte ``r‖s`` to DER, the form ``cryptography``'s ``verify`` takes."""
    if len(rs) != 2 * _P256_ORDER_BYTES:
        raise InvalidCollateral(f"signature: expected 64 bytes (r||s), found {len(rs)}")
    return encode_dss_signature(
        int.from_bytes(rs[:_P256_ORDER_BYTES], "big"), int.from_bytes(rs[_P256_ORDER_BYTES:], "big")
    )


# ---------------------------------------------------------------------------------------- JSON


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


#: Strict decoder: duplicate keys and NaN/Infinity are errors, so what is signed is unambiguous.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _text(document: str | bytes, what: str) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, bytes | bytearray | memoryview):
        try:
            return bytes(document).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCollateral(
                f"{what}: JSON is not valid UTF-8 (byte offset {exc.start})"
            ) from None
    raise InvalidCollateral(f"{what}: expected JSON text, found {type(document).__name__}")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def parse_json_object(document: str | bytes, *, what: str = "JSON") -> dict[str, Any]:
    """Parse strict JSON (no duplicate keys, no NaN) whose top level must be an object."""
    text = _text(document, what)
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidCollateral(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidCollateral(f"{what}: expected a JSON object, found {type(value).__name__}")
    return value


def extract_signed_value(
    document: str | bytes, key: str, *, what: str = "JSON"
) -> tuple[bytes, Any, dict[str, Any]]:
    """Locate top-level member ``key`` in a JSON object and return its value's exact bytes.

    Returns ``(value_bytes, value, document_object)``. The value's extent comes from the JSON
    decoder's own end positions (so strings, escapes and nesting are handled by a real parser),
    and the bytes are the original UTF-8 of that span: never re-serialised, because Intel signs
    the bytes it served and any other serialisation may differ.
    """
    text = _text(document, what)
    members: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    try:
        pos = _skip_ws(text, 0)
        if text[pos : pos + 1] != "{":
            raise ValueError(f"expected '{{' at position {pos}")
        pos = _skip_ws(text, pos + 1)
        if text[pos : pos + 1] == "}":
            pos += 1
        else:
            while True:
                if text[pos : pos + 1] != '"':
                    raise ValueError(f"expected a member name at position {pos}")
                name, pos = _DECODER.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if text[pos : pos + 1] != ":":
                    raise ValueError(f"expected ':' at position {pos}")
                pos = _skip_ws(text, pos + 1)
                start = pos
                value, pos = _DECODER.raw_decode(text, pos)
                if name in members:
                    raise ValueError(f"duplicate key {name!r}")
                members[name] = value
                spans[name] = (start, pos)
                pos = _skip_ws(text, pos)
                sep = text[pos : pos + 1]
                if sep == "}":
                    pos += 1
                    break
                if sep != ",":
                    raise ValueError(f"expected ',' or '}}' at position {pos}")
                pos = _skip_ws(text, pos + 1)
        if _skip_ws(text, pos) != len(text):
            raise ValueError(f"extra data after the object at position {pos}")
    except (ValueError, RecursionError) as exc:
        raise InvalidCollateral(f"{what}: not valid JSON ({exc})") from None
    if key not in spans:
        raise InvalidCollateral(
            f"{what}: expected a top-level {key!r} member, found members {sorted(members)}"
        )
    start, end = spans[key]
    try:
        value_bytes = text[start:end].encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidCollateral(
            f"{what}: {key!r} holds a character not encodable as UTF-8 "
            f"at position {start + exc.start}"
        ) from None
    return value_bytes, members[key], members
