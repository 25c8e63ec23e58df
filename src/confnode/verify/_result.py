"""The verifier's verdict: :class:`VerifiedQuote` and the enclave identity it vouches for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confnode.collateral import TcbStatus
from confnode.sgx import Quote

__all__ = ["VerifiedEnclave", "VerifiedQuote"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class VerifiedEnclave:
    """The ISV enclave identity from a verified quote's report body.

    ``debug`` is reported, not judged: a debug enclave's memory is readable by the host, and it is
    the relying party's policy (not Intel's verifier) that rejects it.
    """

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool
    attributes: bytes
    misc_select: int
    config_id: bytes
    config_svn: int
    isv_ext_prod_id: bytes
    isv_family_id: bytes

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "mr_enclave": self.mr_enclave.hex(),
            "mr_signer": self.mr_signer.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "debug": self.debug,
            "attributes": self.attributes.hex(),
        }


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote that passed every checklist step, with Intel's TCB verdict.

    ``status`` is the converged status (QVL ``convergeTcbStatusWithQeTcbStatus``). ``Revoked``
    is a verdict, not an exception: the evidence is genuine but its platform, its PCK
    certificate, its CA or the collateral signer is revoked; ``revocation`` says which. Callers
    must not treat ``Revoked`` as acceptable (the CLI exits 1 for it).
    """

    status: TcbStatus
    advisory_ids: tuple[str, ...]
    tcb_date: datetime
    fmspc: str
    qe_status: TcbStatus
    collateral_expired: bool
    crl_checked: bool
    enclave: VerifiedEnclave
    report_data: bytes
    quote: Quote
    trusted_root_is_intel: bool
    root_key_sha256: str
    platform_status: TcbStatus
    pce_id: str
    sgx_type: int
    tcb_evaluation_data_number: int
    earliest_expiration: datetime
    revocation: str | None = None

    @property
    def revoked(self) -> bool:
        return self.status is TcbStatus.REVOKED

    def to_json_dict(self) -> dict[str, Any]:
        """The ``confnode quote verify --json`` object."""
        return {
            "status": self.status.value,
            "advisory_ids": list(self.advisory_ids),
            "tcb_date": _iso(self.tcb_date),
            "fmspc": self.fmspc,
            "qe_status": self.qe_status.value,
            "collateral_expired": self.collateral_expired,
            "crl_checked": self.crl_checked,
            "enclave": self.enclave.to_json_dict(),
            "report_data": self.report_data.hex(),
        }
