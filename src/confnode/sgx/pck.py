"""The SGX extension of Intel PCK certificates (OID 1.2.840.113741.1.13.1), decoded and encoded.

``cryptography`` exposes the extension as an ``UnrecognizedExtension`` holding raw DER; a small
bounded DER reader turns it into :class:`PckExtension` (``sgx-dcap.md`` §2.3). The value is a
``SEQUENCE OF SEQUENCE { OID, value }``; entries are looked up by OID (as QVL does), so their
order does not matter, duplicates are rejected and OIDs Intel may add later are ignored.
The DER itself must be strict (definite minimal lengths, minimal INTEGERs, BOOLEAN 00/FF).

:func:`encode_pck_extension` writes Intel's structure, order and types, so for every real
certificate ``encode_pck_extension(parse(x)) == x`` (the simulator mints PCK certificates with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from confnode.errors import InvalidQuote
from confnode.sgx._wire import check_bytes, check_type, check_uint

__all__ = [
    "PCK_EXTENSION_OID",
    "SGX_TYPE_NAMES",
    "PckExtension",
    "PckTcb",
    "PlatformConfiguration",
    "encode_pck_extension",
    "parse_pck_extension",
    "parse_pck_extension_der",
]

PCK_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
#: ``SGX Type`` ENUMERATED values.
SGX_TYPE_NAMES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}

_TAG_BOOLEAN = 0x01
_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_TAG_OID = 0x06
_TAG_ENUMERATED = 0x0A
_TAG_SEQUENCE = 0x30
_FIELD = "pck_extension"


def _oid_body(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for value in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_BASE = PCK_EXTENSION_OID.dotted_string
_OID_PPID = _oid_body(f"{_BASE}.1")
_OID_TCB = _oid_body(f"{_BASE}.2")
_OID_COMPS = tuple(_oid_body(f"{_BASE}.2.{i}") for i in range(1, 17))
_OID_PCESVN = _oid_body(f"{_BASE}.2.17")
_OID_CPUSVN = _oid_body(f"{_BASE}.2.18")
_OID_PCE_ID = _oid_body(f"{_BASE}.3")
_OID_FMSPC = _oid_body(f"{_BASE}.4")
_OID_SGX_TYPE = _oid_body(f"{_BASE}.5")
_OID_PLATFORM_INSTANCE_ID = _oid_body(f"{_BASE}.6")
_OID_CONFIGURATION = _oid_body(f"{_BASE}.7")
_OID_DYNAMIC_PLATFORM = _oid_body(f"{_BASE}.7.1")
_OID_CACHED_KEYS = _oid_body(f"{_BASE}.7.2")
_OID_SMT_ENABLED = _oid_body(f"{_BASE}.7.3")


@dataclass(frozen=True, slots=True)
class PckTcb:
    """The certificate's TCB (TCBm): what TCB-level matching must use, not the quote's cpu_svn."""

    comp_svns: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.comp_svns, tuple) or len(self.comp_svns) != 16:
            raise InvalidQuote("expected 16 component SVNs", field=f"{_FIELD}.tcb.comp_svns")
        for i, svn in enumerate(self.comp_svns, start=1):
            check_uint(svn, 8, f"{_FIELD}.tcb.comp{i:02d}")
        check_uint(self.pcesvn, 16, f"{_FIELD}.tcb.pcesvn")
        check_bytes(self.cpusvn, 16, f"{_FIELD}.tcb.cpusvn")


@dataclass(frozen=True, slots=True)
class PlatformConfiguration:
    """Platform-CA certificates only; each flag is ``None`` when the certificate omits it."""

    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def __post_init__(self) -> None:
        for name in ("dynamic_platform", "cached_keys", "smt_enabled"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidQuote(
                    "expected a bool or None", field=f"{_FIELD}.configuration.{name}"
                )


@dataclass(frozen=True, slots=True)
class PckExtension:
    """Every field of the PCK certificate SGX extension."""

    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    configuration: PlatformConfiguration | None = None

    def __post_init__(self) -> None:
        check_bytes(self.ppid, 16, f"{_FIELD}.ppid")
        check_type(self.tcb, PckTcb, f"{_FIELD}.tcb")
        check_bytes(self.pce_id, 2, f"{_FIELD}.pce_id")
        check_bytes(self.fmspc, 6, f"{_FIELD}.fmspc")
        check_uint(self.sgx_type, 8, f"{_FIELD}.sgx_type")
        if self.platform_instance_id is not None:
            check_bytes(self.platform_instance_id, 16, f"{_FIELD}.platform_instance_id")
        if self.configuration is not None:
            check_type(self.configuration, PlatformConfiguration, f"{_FIELD}.configuration")

    @property
    def sgx_type_name(self) -> str:
        return SGX_TYPE_NAMES.get(self.sgx_type, f"unknown ({self.sgx_type})")


# ------------------------------------------------------------------------------------ DER reading


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    start: int  # offset of the tag byte
    value_start: int
    end: int


def _read_tlv(der: bytes, pos: int, end: int, field: str) -> _Tlv:
    if end - pos < 2:
        raise InvalidQuote("truncated DER element", field=field, offset=pos)
    tag = der[pos]
    if tag & 0x1F == 0x1F:
        raise InvalidQuote(f"multi-byte DER tag {tag:#04x}", field=field, offset=pos)
    first = der[pos + 1]
    cursor = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise InvalidQuote(f"unsupported DER length form {first:#04x}", field=field, offset=pos)
        if end - cursor < count:
            raise InvalidQuote("truncated DER length", field=field, offset=pos)
        length = int.from_bytes(der[cursor : cursor + count], "big")
        if length < 0x80 or der[cursor] == 0:
            raise InvalidQuote("non-minimal DER length", field=field, offset=pos)
        cursor += count
    if length > end - cursor:
        raise InvalidQuote(
            f"DER element declares {length} bytes but only {end - cursor} remain",
            field=field,
            offset=pos,
        )
    return _Tlv(tag, pos, cursor, cursor + length)


def _expect(tlv: _Tlv, tag: int, field: str) -> None:
    if tlv.tag != tag:
        raise InvalidQuote(
            f"DER tag {tlv.tag:#04x}, expected {tag:#04x}", field=field, offset=tlv.start
        )


def _children(der: bytes, seq: _Tlv, field: str) -> list[_Tlv]:
    _expect(seq, _TAG_SEQUENCE, field)
    out, pos = [], seq.value_start
    while pos < seq.end:
        tlv = _read_tlv(der, pos, seq.end, field)
        out.append(tlv)
        pos = tlv.end
    return out


def _entries(
    der: bytes,
    seq: _Tlv,
    field: str,
    known: dict[bytes, str],
    optional: frozenset[bytes] = frozenset(),
) -> dict[bytes, _Tlv]:
    """``SEQUENCE OF SEQUENCE { OID, value }`` → value element per known OID."""
    found: dict[bytes, _Tlv] = {}
    for entry in _children(der, seq, field):
        parts = _children(der, entry, field)
        if len(parts) != 2:
            raise InvalidQuote(
                f"entry with {len(parts)} elements, expected OID and value",
                field=field,
                offset=entry.start,
            )
        oid, value = parts
        _expect(oid, _TAG_OID, field)
        key = der[oid.value_start : oid.end]
        if key in known:
            if key in found:
                raise InvalidQuote("duplicate entry", field=known[key], offset=entry.start)
            found[key] = value
    for key, name in known.items():
        if key not in found and key not in optional:
            raise InvalidQuote("required entry missing", field=name, offset=seq.start)
    return found


def _octets(der: bytes, tlv: _Tlv, size: int, field: str) -> bytes:
    _expect(tlv, _TAG_OCTET_STRING, field)
    if tlv.end - tlv.value_start != size:
        raise InvalidQuote(
            f"{tlv.end - tlv.value_start} bytes, expected {size}", field=field, offset=tlv.start
        )
    return der[tlv.value_start : tlv.end]


def _uint(der: bytes, tlv: _Tlv, tag: int, bits: int, field: str) -> int:
    _expect(tlv, tag, field)
    body = der[tlv.value_start : tlv.end]
    if not body:
        raise InvalidQuote("empty INTEGER", field=field, offset=tlv.start)
    redundant_zero = body[0] == 0x00 and body[1:2] < b"\x80"
    redundant_ones = body[0] == 0xFF and body[1:2] >= b"\x80"
    if len(body) > 1 and (redundant_zero or redundant_ones):
        raise InvalidQuote("non-minimal INTEGER encoding", field=field, offset=tlv.start)
    value = int.from_bytes(body, "big", signed=True)
    if not 0 <= value < 1 << bits:
        raise InvalidQuote(
            f"value {value}, expected 0..{(1 << bits) - 1}", field=field, offset=tlv.start
        )
    return value


def _boolean(der: bytes, tlv: _Tlv, field: str) -> bool:
    _expect(tlv, _TAG_BOOLEAN, field)
    body = der[tlv.value_start : tlv.end]
    if body not in (b"\x00", b"\xff"):
        raise InvalidQuote(
            f"BOOLEAN {body.hex()}, expected 00 or ff", field=field, offset=tlv.start
        )
    return body == b"\xff"


def _configuration(der: bytes, seq: _Tlv) -> PlatformConfiguration:
    field = f"{_FIELD}.configuration"
    names = {
        _OID_DYNAMIC_PLATFORM: "dynamic_platform",
        _OID_CACHED_KEYS: "cached_keys",
        _OID_SMT_ENABLED: "smt_enabled",
    }
    known = {oid: f"{field}.{name}" for oid, name in names.items()}
    found = _entries(der, seq, field, known, optional=frozenset(names))
    return PlatformConfiguration(
        **{names[oid]: _boolean(der, value, known[oid]) for oid, value in found.items()}
    )


def _elements(der: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """``(tag, value start, value end)`` of consecutive elements, read without any strictness:
    only :func:`_parse_canonical` uses it, and that re-encodes what it read."""
    out = []
    while pos < end:
        tag, size = der[pos], der[pos + 1]
        pos += 2
        if size & 0x80:
            count = size & 0x7F
            size = int.from_bytes(der[pos : pos + count], "big")
            pos += count
        out.append((tag, pos, pos + size))
        pos += size
    return out


def _parse_canonical(der: bytes) -> PckExtension | None:
    """Fast path for extensions in Intel's exact encoding (every real PCK certificate).

    Reads the fields loosely, then keeps the result only when :func:`encode_pck_extension`
    reproduces ``der`` byte for byte. Such a value is canonical, and the strict reader returns
    exactly what was encoded, so the result is the strict reader's; any other input (different
    order, extra or duplicate entries, non-minimal encodings, malformed DER) gives ``None`` and
    the strict reader decides, with its precise errors.
    """
    try:
        ((_, top_start, top_end),) = _elements(der, 0, len(der))
        found: dict[bytes, tuple[int, int, int]] = {}
        for _, start, end in _elements(der, top_start, top_end):
            (_, oid_start, oid_end), value = _elements(der, start, end)
            found[der[oid_start:oid_end]] = value
        tcb: dict[bytes, bytes] = {}
        _, tcb_start, tcb_end = found[_OID_TCB]
        for _, start, end in _elements(der, tcb_start, tcb_end):
            (_, oid_start, oid_end), (_, value_start, value_end) = _elements(der, start, end)
            tcb[der[oid_start:oid_end]] = der[value_start:value_end]

        def octets(oid: bytes) -> bytes:
            _, start, end = found[oid]
            return der[start:end]

        configuration = None
        if _OID_CONFIGURATION in found:
            _, config_start, config_end = found[_OID_CONFIGURATION]
            flags: dict[bytes, bool] = {}
            for _, start, end in _elements(der, config_start, config_end):
                (_, oid_start, oid_end), (_, value_start, value_end) = _elements(der, start, end)
                flags[der[oid_start:oid_end]] = der[value_start:value_end] == b"\xff"
            configuration = PlatformConfiguration(
                dynamic_platform=flags.get(_OID_DYNAMIC_PLATFORM),
                cached_keys=flags.get(_OID_CACHED_KEYS),
                smt_enabled=flags.get(_OID_SMT_ENABLED),
            )
        ext = PckExtension(
            ppid=octets(_OID_PPID),
            tcb=PckTcb(
                comp_svns=tuple(int.from_bytes(tcb[oid], "big", signed=True) for oid in _OID_COMPS),
                pcesvn=int.from_bytes(tcb[_OID_PCESVN], "big", signed=True),
                cpusvn=tcb[_OID_CPUSVN],
            ),
            pce_id=octets(_OID_PCE_ID),
            fmspc=octets(_OID_FMSPC),
            sgx_type=int.from_bytes(octets(_OID_SGX_TYPE), "big", signed=True),
            platform_instance_id=(
                octets(_OID_PLATFORM_INSTANCE_ID) if _OID_PLATFORM_INSTANCE_ID in found else None
            ),
            configuration=configuration,
        )
    except (IndexError, KeyError, ValueError, InvalidQuote):
        return None
    return ext if encode_pck_extension(ext) == der else None


def parse_pck_extension_der(der: bytes) -> PckExtension:
    """Decode the DER extension value; offsets in errors are relative to its first byte."""
    der = bytes(der)
    canonical = _parse_canonical(der)
    return _parse_strict(der) if canonical is None else canonical


def _parse_strict(der: bytes) -> PckExtension:
    """The strict reader: any order, unknown entries ignored, precise errors."""
    top = _read_tlv(der, 0, len(der), _FIELD)
    if top.end != len(der):
        raise InvalidQuote(
            f"{len(der) - top.end} bytes after the extension value", field=_FIELD, offset=top.end
        )
    names = {
        _OID_PPID: f"{_FIELD}.ppid",
        _OID_TCB: f"{_FIELD}.tcb",
        _OID_PCE_ID: f"{_FIELD}.pce_id",
        _OID_FMSPC: f"{_FIELD}.fmspc",
        _OID_SGX_TYPE: f"{_FIELD}.sgx_type",
        _OID_PLATFORM_INSTANCE_ID: f"{_FIELD}.platform_instance_id",
        _OID_CONFIGURATION: f"{_FIELD}.configuration",
    }
    optional = frozenset((_OID_PLATFORM_INSTANCE_ID, _OID_CONFIGURATION))
    found = _entries(der, top, _FIELD, names, optional)

    tcb_names = {oid: f"{_FIELD}.tcb.comp{i:02d}" for i, oid in enumerate(_OID_COMPS, start=1)}
    tcb_names[_OID_PCESVN] = f"{_FIELD}.tcb.pcesvn"
    tcb_names[_OID_CPUSVN] = f"{_FIELD}.tcb.cpusvn"
    tcb = _entries(der, found[_OID_TCB], f"{_FIELD}.tcb", tcb_names)
    comps = tuple(_uint(der, tcb[oid], _TAG_INTEGER, 8, tcb_names[oid]) for oid in _OID_COMPS)
    pck_tcb = PckTcb(
        comp_svns=comps,
        pcesvn=_uint(der, tcb[_OID_PCESVN], _TAG_INTEGER, 16, f"{_FIELD}.tcb.pcesvn"),
        cpusvn=_octets(der, tcb[_OID_CPUSVN], 16, f"{_FIELD}.tcb.cpusvn"),
    )
    pii = found.get(_OID_PLATFORM_INSTANCE_ID)
    config = found.get(_OID_CONFIGURATION)
    return PckExtension(
        ppid=_octets(der, found[_OID_PPID], 16, f"{_FIELD}.ppid"),
        tcb=pck_tcb,
        pce_id=_octets(der, found[_OID_PCE_ID], 2, f"{_FIELD}.pce_id"),
        fmspc=_octets(der, found[_OID_FMSPC], 6, f"{_FIELD}.fmspc"),
        sgx_type=_uint(der, found[_OID_SGX_TYPE], _TAG_ENUMERATED, 8, f"{_FIELD}.sgx_type"),
        platform_instance_id=(
            None if pii is None else _octets(der, pii, 16, f"{_FIELD}.platform_instance_id")
        ),
        configuration=None if config is None else _configuration(der, config),
    )


def parse_pck_extension(cert: x509.Certificate) -> PckExtension:
    """The SGX extension of a PCK certificate; a certificate without one is an error."""
    try:
        ext = cert.extensions.get_extension_for_oid(PCK_EXTENSION_OID)
    except x509.ExtensionNotFound:
        raise InvalidQuote(
            "certificate has no SGX extension (OID 1.2.840.113741.1.13.1): not a PCK certificate",
            field=_FIELD,
        ) from None
    except ValueError as error:
        raise InvalidQuote(f"certificate extensions do not decode: {error}", field=_FIELD) from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise InvalidQuote(f"unexpected extension value {type(value).__name__}", field=_FIELD)
    return parse_pck_extension_der(value.value)


# ------------------------------------------------------------------------------------ DER writing


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def _int_body(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _entry(oid: bytes, value: bytes) -> bytes:
    return _tlv(_TAG_SEQUENCE, _tlv(_TAG_OID, oid) + value)


def encode_pck_extension(ext: PckExtension) -> bytes:
    """DER of the extension value in Intel's order and types (for minting PCK certificates)."""
    tcb = b"".join(
        _entry(oid, _tlv(_TAG_INTEGER, _int_body(svn)))
        for oid, svn in zip(_OID_COMPS, ext.tcb.comp_svns, strict=True)
    )
    tcb += _entry(_OID_PCESVN, _tlv(_TAG_INTEGER, _int_body(ext.tcb.pcesvn)))
    tcb += _entry(_OID_CPUSVN, _tlv(_TAG_OCTET_STRING, ext.tcb.cpusvn))
    parts = [
        _entry(_OID_PPID, _tlv(_TAG_OCTET_STRING, ext.ppid)),
        _entry(_OID_TCB, _tlv(_TAG_SEQUENCE, tcb)),
        _entry(_OID_PCE_ID, _tlv(_TAG_OCTET_STRING, ext.pce_id)),
        _entry(_OID_FMSPC, _tlv(_TAG_OCTET_STRING, ext.fmspc)),
        _entry(_OID_SGX_TYPE, _tlv(_TAG_ENUMERATED, _int_body(ext.sgx_type))),
    ]
    if ext.platform_instance_id is not None:
        parts.append(
            _entry(_OID_PLATFORM_INSTANCE_ID, _tlv(_TAG_OCTET_STRING, ext.platform_instance_id))
        )
    if ext.configuration is not None:
        config = b""
        for oid, flag in (
            (_OID_DYNAMIC_PLATFORM, ext.configuration.dynamic_platform),
            (_OID_CACHED_KEYS, ext.configuration.cached_keys),
            (_OID_SMT_ENABLED, ext.configuration.smt_enabled),
        ):
            if flag is not None:
                config += _entry(oid, _tlv(_TAG_BOOLEAN, b"\xff" if flag else b"\x00"))
        parts.append(_entry(_OID_CONFIGURATION, _tlv(_TAG_SEQUENCE, config)))
    return _tlv(_TAG_SEQUENCE, b"".join(parts))
