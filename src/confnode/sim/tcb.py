"""Simulated TCB Info v3 and QE Identity v2, signed over their exact compact bytes like Intel's.

The TCB level table is fixed and ordered the way Intel orders it (descending by component SVNs,
then PCESVN). Each verifier outcome has a level whose components a platform can copy into its PCK
certificate, so choosing a platform's status is choosing its TCB components.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from confnode.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class SimTcbLevel:
    status: str
    sgx_components: tuple[int, ...]
    pcesvn: int
    tcb_date: str
    advisory_ids: tuple[str, ...] = ()


def _comps(first: int, config: int) -> tuple[int, ...]:
    # Components 0/1 carry the microcode SVN; component 6 stands for the "configuration"
    # component whose absence makes Intel report ...ConfigurationNeeded.
    return (first, first, 3, 3, 255, 255, config, 0, 0, 0, 0, 0, 0, 0, 0, 0)


_SA_CONFIG = "INTEL-SA-00289"
_SA_HARDENING = "INTEL-SA-00615"
_SA_OLD = ("INTEL-SA-00828", "INTEL-SA-00657")

#: The simulated FMSPC's TCB levels, in Intel's order (highest first).
TCB_LEVELS: tuple[SimTcbLevel, ...] = (
    SimTcbLevel("UpToDate", _comps(14, 12), 14, "2025-05-14T00:00:00Z"),
    SimTcbLevel("ConfigurationNeeded", _comps(14, 0), 14, "2025-05-14T00:00:00Z", (_SA_CONFIG,)),
    SimTcbLevel("SWHardeningNeeded", _comps(13, 12), 13, "2024-11-13T00:00:00Z", (_SA_HARDENING,)),
    SimTcbLevel(
        "ConfigurationAndSWHardeningNeeded",
        _comps(13, 0),
        13,
        "2024-11-13T00:00:00Z",
        (_SA_CONFIG, _SA_HARDENING),
    ),
    SimTcbLevel("OutOfDate", _comps(11, 12), 13, "2023-08-09T00:00:00Z", (*_SA_OLD, _SA_HARDENING)),
    SimTcbLevel(
        "OutOfDateConfigurationNeeded",
        _comps(11, 0),
        13,
        "2023-08-09T00:00:00Z",
        (_SA_CONFIG, *_SA_OLD, _SA_HARDENING),
    ),
    SimTcbLevel(
        "Revoked",
        _comps(9, 12),
        11,
        "2021-11-10T00:00:00Z",
        ("INTEL-SA-00614", *_SA_OLD, _SA_HARDENING),
    ),
)

#: Below every level: the verifier finds no matching TCB level.
TCB_LEVEL_NOT_FOUND = "TcbLevelNotFound"
_NOT_FOUND_TCB = (_comps(8, 12), 10)

#: Statuses a simulated platform can be configured at.
PLATFORM_STATUSES: tuple[str, ...] = (*(lvl.status for lvl in TCB_LEVELS), TCB_LEVEL_NOT_FOUND)


@dataclass(frozen=True, slots=True)
class SimQeLevel:
    isvsvn: int
    status: str
    tcb_date: str
    advisory_ids: tuple[str, ...] = ()


#: The simulated QE's identity levels (highest first). A QE at ISVSVN 8 is UpToDate.
QE_LEVELS: tuple[SimQeLevel, ...] = (
    SimQeLevel(8, "UpToDate", "2024-03-13T00:00:00Z"),
    SimQeLevel(6, "OutOfDate", "2021-11-10T00:00:00Z", (_SA_HARDENING,)),
    SimQeLevel(5, "OutOfDate", "2020-11-11T00:00:00Z", ("INTEL-SA-00477", _SA_HARDENING)),
    SimQeLevel(2, "Revoked", "2019-05-15T00:00:00Z", ("INTEL-SA-00219", _SA_HARDENING)),
)

#: QE Identity constants, Intel's values (attributes require INIT|PROVISIONKEY, forbid DEBUG).
QE_MISCSELECT = "00000000"
QE_MISCSELECT_MASK = "FFFFFFFF"
QE_ATTRIBUTES = "11000000000000000000000000000000"
QE_ATTRIBUTES_MASK = "FBFFFFFFFFFFFFFF0000000000000000"
QE_ISVPRODID = 1


def platform_tcb(status: str) -> tuple[tuple[int, ...], int]:
    """The (16 component SVNs, PCESVN) a platform needs for the verifier to report ``status``."""
    for level in TCB_LEVELS:
        if level.status == status:
            return level.sgx_components, level.pcesvn
    if status == TCB_LEVEL_NOT_FOUND:
        return _NOT_FOUND_TCB
    raise InvalidInput(
        f"unknown simulated TCB status {status!r}; expected one of {', '.join(PLATFORM_STATUSES)}"
    )


def format_time(when: datetime) -> str:
    """Intel's timestamp form: UTC, seconds precision, ``Z`` suffix."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact(obj: object) -> str:
    """The compact JSON text Intel signs (no spaces, non-ASCII kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Deterministic ECDSA-P256-SHA256 signature as raw 64-byte r‖s (Intel's JSON form)."""
    r, s = decode_dss_signature(
        key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    )
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class LevelDates(Protocol):
    """What every simulated TCB or identity level carries besides its ``tcb``."""

    @property
    def status(self) -> str: ...

    @property
    def tcb_date(self) -> str: ...

    @property
    def advisory_ids(self) -> tuple[str, ...]: ...


def level_entry(tcb: dict[str, object], level: LevelDates) -> dict[str, object]:
    """One ``tcbLevels`` entry: ``tcb``, ``tcbDate``, ``tcbStatus`` and any ``advisoryIDs``."""
    entry: dict[str, object] = {"tcb": tcb, "tcbDate": level.tcb_date, "tcbStatus": level.status}
    if level.advisory_ids:
        entry["advisoryIDs"] = list(level.advisory_ids)
    return entry


def svn_components(svns: Iterable[int]) -> list[dict[str, int]]:
    """A ``...tcbcomponents`` list: ``[{"svn": n}, ...]``."""
    return [{"svn": svn} for svn in svns]


def identity_levels(levels: Iterable[SimQeLevel]) -> list[dict[str, object]]:
    """The ``tcbLevels`` of an enclave or module identity (``tcb`` is ``{"isvsvn": n}``)."""
    return [level_entry({"isvsvn": level.isvsvn}, level) for level in levels]


def tcb_info_text(
    tcb_id: str,
    levels: list[dict[str, object]],
    *,
    fmspc: bytes,
    pce_id: bytes,
    issue_date: datetime,
    next_update: datetime,
    tcb_evaluation_data_number: int,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The exact compact text of a TCB Info v3 ``"tcbInfo"`` value (key order as Intel's PCS).

    ``extra`` members (TDX's module identities) stand between the header and ``tcbLevels``.
    """
    return compact(
        {
            "id": tcb_id,
            "version": 3,
            "issueDate": format_time(issue_date),
            "nextUpdate": format_time(next_update),
            "fmspc": fmspc.hex().upper(),
            "pceId": pce_id.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": tcb_evaluation_data_number,
            **(extra or {}),
            "tcbLevels": levels,
        }
    )


def tcb_info_body(
    *,
    fmspc: bytes,
    pce_id: bytes,
    issue_date: datetime,
    next_update: datetime,
    tcb_evaluation_data_number: int,
) -> str:
    """The exact compact text of the SGX ``"tcbInfo"`` value (key order as Intel's PCS emits it)."""
    levels = [
        level_entry(
            {"sgxtcbcomponents": svn_components(level.sgx_components), "pcesvn": level.pcesvn},
            level,
        )
        for level in TCB_LEVELS
    ]
    return tcb_info_text(
        "SGX",
        levels,
        fmspc=fmspc,
        pce_id=pce_id,
        issue_date=issue_date,
        next_update=next_update,
        tcb_evaluation_data_number=tcb_evaluation_data_number,
    )


def qe_identity_body(
    *,
    mrsigner: bytes,
    issue_date: datetime,
    next_update: datetime,
    tcb_evaluation_data_number: int,
    identity_id: str = "QE",
    isvprodid: int = QE_ISVPRODID,
    levels: Iterable[SimQeLevel] = QE_LEVELS,
) -> str:
    """The exact compact text of the ``"enclaveIdentity"`` value for a simulated QE.

    The defaults describe the SGX QE3; the TD QE passes its own ``id``, ISVPRODID and levels.
    """
    return compact(
        {
            "id": identity_id,
            "version": 2,
            "issueDate": format_time(issue_date),
            "nextUpdate": format_time(next_update),
            "tcbEvaluationDataNumber": tcb_evaluation_data_number,
            "miscselect": QE_MISCSELECT,
            "miscselectMask": QE_MISCSELECT_MASK,
            "attributes": QE_ATTRIBUTES,
            "attributesMask": QE_ATTRIBUTES_MASK,
            "mrsigner": mrsigner.hex().upper(),
            "isvprodid": isvprodid,
            "tcbLevels": identity_levels(levels),
        }
    )


def wrap_signed(field: str, body: str, signature: bytes) -> str:
    """The PCS response body: ``{"<field>":<body verbatim>,"signature":"<hex r‖s>"}``."""
    return f'{{"{field}":{body},"signature":"{signature.hex()}"}}'
