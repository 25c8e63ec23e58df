"""Parsed TCB Info (v2, v3) and Enclave Identity (v2) documents.

The models hold what a verifier needs, in the types it compares with: SVNs as ints, identity
fields as raw bytes (``miscselect`` stays 4 bytes because Intel's QVL reads it little-endian),
datetimes timezone-aware UTC. Unknown members are ignored, as Intel's QVL does; unknown versions
and unknown TCB statuses are rejected.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from confnode.errors import InvalidCollateral

__all__ = [
    "SUPPORTED_ENCLAVE_IDENTITY_VERSIONS",
    "SUPPORTED_TCB_INFO_VERSIONS",
    "EnclaveIdentity",
    "QeTcbLevel",
    "TcbInfo",
    "TcbLevel",
    "TcbStatus",
    "TdxModule",
    "TdxModuleIdentity",
    "clear_date_cache",
    "parse_enclave_identity",
    "parse_tcb_info",
]

SUPPORTED_TCB_INFO_VERSIONS = (2, 3)
SUPPORTED_ENCLAVE_IDENTITY_VERSIONS = (2,)
_COMPONENTS = 16


class TcbStatus(StrEnum):
    """TCB status with Intel's spellings.

    ``TcbLevelNotFound`` and the two ``TDRelaunchAdvised…`` statuses are verdicts (QVL
    ``STATUS_TCB_TD_RELAUNCH_ADVISED…``), never in collateral.
    """

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"
    TCB_LEVEL_NOT_FOUND = "TcbLevelNotFound"
    TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
    TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"


_VERDICT_ONLY = {
    TcbStatus.TCB_LEVEL_NOT_FOUND,
    TcbStatus.TD_RELAUNCH_ADVISED,
    TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
}
#: Statuses a TCB Info platform level may carry (QVL ``VALID_TCB_INFO_STATUSES``).
_COLLATERAL_STATUSES = {s.value: s for s in TcbStatus if s not in _VERDICT_ONLY}
#: Statuses an Enclave Identity level may carry (QVL ``parseStringToTcbStatus``: five).
_ENCLAVE_STATUSES = {
    s.value: s
    for s in (
        TcbStatus.UP_TO_DATE,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.OUT_OF_DATE,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.REVOKED,
    )
}
#: Statuses a TDX module identity level may carry (QVL ``VALID_MODULE_TCB_STATUSES``).
_MODULE_STATUSES = {
    s.value: s for s in (TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED)
}


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """One platform TCB level: 16 SGX component SVNs + PCESVN (+ 16 TDX SVNs for TDX)."""

    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QeTcbLevel:
    """One enclave (QE / TDX module) TCB level, keyed by ISVSVN."""

    isvsvn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModule:
    """TCB Info v3 ``tdxModule``: the expected TDX module signer and attributes."""

    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    """TCB Info v3 ``tdxModuleIdentities[]`` entry (``id`` such as ``TDX_01``)."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[QeTcbLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """TCB Info v2/v3. ``id`` is ``"SGX"`` for v2 (implied) and ``"SGX"``/``"TDX"`` for v3.

    ``tcb_levels`` keeps the document order; ordering for matching is the verifier's business.
    """

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()


@dataclass(frozen=True, slots=True)
class EnclaveIdentity:
    """Enclave Identity v2 (``id`` QE, TD_QE, QVE or QAE).

    ``miscselect``/``miscselect_mask`` are the 4 bytes the hex string encodes, in document order;
    Intel's QVL interprets them as a little-endian uint32 (see :attr:`miscselect_le`).
    """

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    tcb_levels: tuple[QeTcbLevel, ...]

    @property
    def miscselect_le(self) -> int:
        """``miscselect`` as Intel QVL reads it (``vectorToUint32``: little-endian)."""
        return int.from_bytes(self.miscselect, "little")

    @property
    def miscselect_mask_le(self) -> int:
        """``miscselectMask`` as Intel QVL reads it (little-endian)."""
        return int.from_bytes(self.miscselect_mask, "little")


# ------------------------------------------------------------------------------------ parsing

_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")


class _Reader:
    """Typed access to one JSON object, with error messages that carry the member path."""

    __slots__ = ("_obj", "_path", "_what")

    def __init__(self, obj: Any, path: str, what: str) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidCollateral(
                f"{what}: {path or 'document'}: expected an object, found {_kind(obj)}"
            )
        self._obj: Mapping[str, Any] = obj
        self._path = path
        self._what = what

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, expected: str, found: Any) -> InvalidCollateral:
        return InvalidCollateral(
            f"{self._what}: {self._where(key)}: expected {expected}, found {_show(found)}"
        )

    def has(self, key: str) -> bool:
        return key in self._obj

    def tdx_only(self, key: str) -> InvalidCollateral:
        """``key`` is present in SGX TCB Info, which must not carry TDX members."""
        return InvalidCollateral(
            f"{self._what}: {self._where(key)}: a TDX-only member in SGX TCB Info (expected id "
            "'TDX')"
        )

    def raw(self, key: str, expected: str) -> Any:
        if key not in self._obj:
            raise InvalidCollateral(
                f"{self._what}: {self._where(key)}: missing (expected {expected})"
            )
        return self._obj[key]

    def get_int(self, key: str, lo: int, hi: int) -> int:
        value = self.raw(key, f"an integer {lo}..{hi}")
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(key, f"an integer {lo}..{hi}", value)
        return value

    def get_str(self, key: str) -> str:
        value = self.raw(key, "a string")
        if not isinstance(value, str):
            raise self.fail(key, "a string", value)
        return value

    def get_hex(self, key: str, size: int) -> bytes:
        expected = f"{2 * size} hex digits"
        value = self.raw(key, expected)
        if not isinstance(value, str) or len(value) != 2 * size or not _HEX_RE.fullmatch(value):
            raise self.fail(key, expected, value)
        return bytes.fromhex(value)

    def get_datetime(self, key: str) -> datetime:
        expected = "an ISO-8601 date-time with a UTC offset (e.g. 2025-06-19T10:56:11Z)"
        value = self.raw(key, expected)
        parsed = _parse_datetime(value) if isinstance(value, str) else None
        if parsed is None:
            raise self.fail(key, expected, value)
        return parsed

    def get_list(self, key: str, *, nonempty: bool = True) -> Sequence[Any]:
        expected = "a non-empty array" if nonempty else "an array"
        value = self.raw(key, expected)
        if not isinstance(value, list) or (nonempty and not value):
            raise self.fail(key, expected, value)
        return value

    def get_obj(self, key: str) -> _Reader:
        return _Reader(self.raw(key, "an object"), self._where(key), self._what)

    def item(self, key: str, index: int, value: Any) -> _Reader:
        return _Reader(value, f"{self._where(key)}[{index}]", self._what)

    def status(
        self, key: str, allowed: Mapping[str, TcbStatus] = _COLLATERAL_STATUSES
    ) -> TcbStatus:
        value = self.raw(key, "a TCB status")
        status = allowed.get(value) if isinstance(value, str) else None
        if status is None:
            raise self.fail(key, "one of " + ", ".join(allowed) + " (unrecognised status)", value)
        return status

    def advisories(self, key: str) -> tuple[str, ...]:
        if key not in self._obj:
            return ()
        value = self._obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "an array of strings", value)
        return tuple(value)


@functools.lru_cache(maxsize=1024)
def _parse_datetime(value: str) -> datetime | None:
    """Strict ISO-8601 with an offset, as UTC; cached because levels repeat the same dates."""
    if not _DATETIME_RE.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def clear_date_cache() -> None:
    """Forget parsed dates (part of :func:`confnode.collateral.clear_parse_caches`)."""
    _parse_datetime.cache_clear()


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _version(doc: _Reader, supported: tuple[int, ...], what: str) -> int:
    version = doc.raw("version", f"one of {supported}")
    if type(version) is not int or version not in supported:
        raise InvalidCollateral(
            f"{what}: unsupported version {_show(version)}; supported: "
            + ", ".join(str(v) for v in supported)
        )
    return version


def _svn_list(reader: _Reader, key: str) -> tuple[int, ...]:
    items = reader.get_list(key)
    if len(items) != _COMPONENTS:
        raise reader.fail(key, f"{_COMPONENTS} components", f"{len(items)} components")
    try:
        svns = tuple([item["svn"] for item in items])
    except (KeyError, TypeError, IndexError):
        svns = None
    if svns is not None and set(map(type, svns)) == {int} and 0 <= min(svns) <= max(svns) <= 255:
        return svns
    # Slow path, only to name the offending component in the error.
    return tuple(reader.item(key, i, item).get_int("svn", 0, 255) for i, item in enumerate(items))


def _tcb_level(level: _Reader, version: int, tee: str) -> TcbLevel:
    tcb = level.get_obj("tcb")
    if version == 2:
        sgx = tuple(tcb.get_int(f"sgxtcbcomp{i:02d}svn", 0, 255) for i in range(1, _COMPONENTS + 1))
    else:
        sgx = _svn_list(tcb, "sgxtcbcomponents")
    tdx: tuple[int, ...] | None = None
    if tee == "TDX":
        tdx = _svn_list(tcb, "tdxtcbcomponents")
    elif tcb.has("tdxtcbcomponents"):
        # Else TDX component SVNs would reach SGX level ordering and matching.
        raise tcb.tdx_only("tdxtcbcomponents")
    return TcbLevel(
        sgx_components=sgx,
        pcesvn=tcb.get_int("pcesvn", 0, 0xFFFF),
        tdx_components=tdx,
        tcb_date=level.get_datetime("tcbDate"),
        status=level.status("tcbStatus"),
        advisory_ids=level.advisories("advisoryIDs"),
    )


def _fast_svns(tcb: dict[str, Any], key: str) -> tuple[int, ...] | None:
    items = tcb.get(key)
    if type(items) is not list or len(items) != _COMPONENTS:
        return None
    try:
        svns = tuple([item["svn"] for item in items])
    except (KeyError, TypeError, IndexError):
        return None
    if set(map(type, svns)) == {int} and 0 <= min(svns) <= max(svns) <= 255:
        return svns
    return None


def _fast_tcb_level(value: Any, tee: str) -> TcbLevel | None:
    """A well-formed v3 TCB level read straight from the decoded JSON.

    Returns ``None`` as soon as anything differs from the well-formed shape; the checked path
    (:func:`_tcb_level`) then reads the level and raises its precise error. When it returns a
    level, the checked path would have returned the same one.
    """
    if type(value) is not dict:
        return None
    tcb = value.get("tcb")
    if type(tcb) is not dict:
        return None
    sgx = _fast_svns(tcb, "sgxtcbcomponents")
    if sgx is None:
        return None
    tdx = None
    if tee == "TDX":
        tdx = _fast_svns(tcb, "tdxtcbcomponents")
        if tdx is None:
            return None
    elif "tdxtcbcomponents" in tcb:
        return None
    pcesvn = tcb.get("pcesvn")
    date = value.get("tcbDate")
    tcb_date = _parse_datetime(date) if type(date) is str else None
    status_text = value.get("tcbStatus")
    status = _COLLATERAL_STATUSES.get(status_text) if type(status_text) is str else None
    advisories = value.get("advisoryIDs", [])
    if (
        type(pcesvn) is not int
        or not 0 <= pcesvn <= 0xFFFF
        or tcb_date is None
        or status is None
        or type(advisories) is not list
        or not all(type(a) is str for a in advisories)
    ):
        return None
    return TcbLevel(
        sgx_components=sgx,
        pcesvn=pcesvn,
        tdx_components=tdx,
        tcb_date=tcb_date,
        status=status,
        advisory_ids=tuple(advisories),
    )


def _level(doc: _Reader, index: int, value: Any, version: int, tee: str) -> TcbLevel:
    fast = _fast_tcb_level(value, tee) if version == 3 else None
    if fast is not None:
        return fast
    return _tcb_level(doc.item("tcbLevels", index, value), version, tee)


def _qe_tcb_level(level: _Reader, allowed: Mapping[str, TcbStatus]) -> QeTcbLevel:
    return QeTcbLevel(
        isvsvn=level.get_obj("tcb").get_int("isvsvn", 0, 0xFFFF),
        tcb_date=level.get_datetime("tcbDate"),
        status=level.status("tcbStatus", allowed),
        advisory_ids=level.advisories("advisoryIDs"),
    )


def _tdx_module_identity(ident: _Reader) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=ident.get_str("id"),
        mrsigner=ident.get_hex("mrsigner", 48),
        attributes=ident.get_hex("attributes", 8),
        attributes_mask=ident.get_hex("attributesMask", 8),
        tcb_levels=tuple(
            _qe_tcb_level(ident.item("tcbLevels", i, lvl), _MODULE_STATUSES)
            for i, lvl in enumerate(ident.get_list("tcbLevels"))
        ),
    )


def parse_tcb_info(obj: Any) -> TcbInfo:
    """Build :class:`TcbInfo` from the decoded ``tcbInfo`` object (v2 or v3)."""
    what = "TCB Info"
    doc = _Reader(obj, "", what)
    version = _version(doc, SUPPORTED_TCB_INFO_VERSIONS, what)
    if version == 2:
        tee = doc.get_str("id") if doc.has("id") else "SGX"
        allowed: tuple[str, ...] = ("SGX",)
    else:
        tee = doc.get_str("id")
        allowed = ("SGX", "TDX")
    if tee not in allowed:
        raise doc.fail("id", " or ".join(repr(a) for a in allowed) + f" for version {version}", tee)
    if tee == "SGX":
        # TDX-only members in SGX TCB Info mean a mislabelled document: refuse it rather than
        # let TDX component SVNs reach SGX level ordering or matching.
        for member in ("tdxModule", "tdxModuleIdentities"):
            if doc.has(member):
                raise doc.tdx_only(member)
    elif not doc.has("tdxModule"):
        raise InvalidCollateral(f"{what}: tdxModule: missing (expected in TDX TCB Info)")
    tdx_module = None
    identities: tuple[TdxModuleIdentity, ...] = ()
    if doc.has("tdxModule"):
        module = doc.get_obj("tdxModule")
        tdx_module = TdxModule(
            mrsigner=module.get_hex("mrsigner", 48),
            attributes=module.get_hex("attributes", 8),
            attributes_mask=module.get_hex("attributesMask", 8),
        )
    if doc.has("tdxModuleIdentities"):
        identities = tuple(
            _tdx_module_identity(doc.item("tdxModuleIdentities", i, ident))
            for i, ident in enumerate(doc.get_list("tdxModuleIdentities", nonempty=False))
        )
    levels = tuple(
        _level(doc, i, lvl, version, tee) for i, lvl in enumerate(doc.get_list("tcbLevels"))
    )
    seen: set[tuple[object, ...]] = set()
    for i, level in enumerate(levels):
        key = (level.sgx_components, level.pcesvn, level.tdx_components)
        if key in seen:
            raise InvalidCollateral(
                f"{what}: tcbLevels[{i}]: duplicate TCB level (same component SVNs and pcesvn)"
            )
        seen.add(key)
    return TcbInfo(
        id=tee,
        version=version,
        issue_date=doc.get_datetime("issueDate"),
        next_update=doc.get_datetime("nextUpdate"),
        fmspc=doc.get_hex("fmspc", 6),
        pce_id=doc.get_hex("pceId", 2),
        tcb_type=doc.get_int("tcbType", 0, 0xFFFF),
        tcb_evaluation_data_number=doc.get_int("tcbEvaluationDataNumber", 0, 0xFFFFFFFF),
        tcb_levels=levels,
        tdx_module=tdx_module,
        tdx_module_identities=identities,
    )


def parse_enclave_identity(obj: Any) -> EnclaveIdentity:
    """Build :class:`EnclaveIdentity` from the decoded ``enclaveIdentity`` object (v2)."""
    what = "Enclave Identity"
    doc = _Reader(obj, "", what)
    version = _version(doc, SUPPORTED_ENCLAVE_IDENTITY_VERSIONS, what)
    return EnclaveIdentity(
        id=doc.get_str("id"),
        version=version,
        issue_date=doc.get_datetime("issueDate"),
        next_update=doc.get_datetime("nextUpdate"),
        tcb_evaluation_data_number=doc.get_int("tcbEvaluationDataNumber", 0, 0xFFFFFFFF),
        miscselect=doc.get_hex("miscselect", 4),
        miscselect_mask=doc.get_hex("miscselectMask", 4),
        attributes=doc.get_hex("attributes", 16),
        attributes_mask=doc.get_hex("attributesMask", 16),
        mrsigner=doc.get_hex("mrsigner", 32),
        isvprodid=doc.get_int("isvprodid", 0, 0xFFFF),
        tcb_levels=tuple(
            _qe_tcb_level(doc.item("tcbLevels", i, lvl), _ENCLAVE_STATUSES)
            for i, lvl in enumerate(doc.get_list("tcbLevels"))
        ),
    )
