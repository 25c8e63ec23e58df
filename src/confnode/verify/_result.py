"""The verifier's verdicts: :class:`VerifiedQuote` (SGX) and :class:`VerifiedTdQuote` (TDX).

:func:`confnode.verify.verify_quote` returns one or the other (:data:`VerificationResult`),
chosen by the quote's TEE type; both carry the same platform verdict fields (``status``,
``advisory_ids``, ``tcb_date``, ``fmspc``, ``qe_status``, ``collateral_expired``,
``crl_checked``, ``report_data``, ``quote``, ``trusted_root_is_intel``, ``root_key_sha256``,
``platform_status``, ``pce_id``, ``sgx_type``, ``tcb_evaluation_data_number``,
``earliest_expiration``, ``revocation``), and what the quote vouches for: ``enclave`` (SGX) or
``td`` + ``tdx_module`` (TDX). Narrow with ``isinstance``; a caller that attests only one kind
must reject the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confnode.collateral import TcbStatus
from confnode.sgx import Quote

__all__ = [
    "VerificationResult",
    "VerifiedEnclave",
    "VerifiedQuote",
    "VerifiedTd",
    "VerifiedTdQuote",
    "VerifiedTdxModule",
]


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
    is only ever returned to a caller that passed ``allow_revoked=True`` (otherwise
    :func:`~confnode.verify.verify_quote` raises :class:`~confnode.verify.QuoteRevoked`): the
    evidence is genuine but its platform, its PCK certificate, its CA or the collateral signer is
    revoked; ``revocation`` says which. Such a caller must not treat ``Revoked`` as acceptable
    (the CLI exits 1 for it).
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


@dataclass(frozen=True, slots=True)
class VerifiedTd:
    """The TD identity from a verified TDX quote's TD report (1.0, or 1.5 in a v5 quote).

    Measurements are raw bytes as the TDX module reports them (48-byte SHA-384 registers).
    ``debug`` (TD attribute bit 0, TUD.DEBUG) is reported, not judged: rejecting a debuggable TD
    is the relying party's policy. ``tee_tcb_svn2`` and ``mr_servicetd`` exist only in TD 1.5.
    """

    mr_td: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    tee_tcb_svn: bytes
    debug: bool
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name).hex()
            for name in (
                "mr_td",
                "rtmr0",
                "rtmr1",
                "rtmr2",
                "rtmr3",
                "mr_seam",
                "mr_signer_seam",
                "seam_attributes",
                "td_attributes",
                "xfam",
                "mr_config_id",
                "mr_owner",
                "mr_owner_config",
                "tee_tcb_svn",
            )
        }
        out["debug"] = self.debug
        if self.tee_tcb_svn2 is not None and self.mr_servicetd is not None:
            out["tee_tcb_svn2"] = self.tee_tcb_svn2.hex()
            out["mr_servicetd"] = self.mr_servicetd.hex()
        return out


@dataclass(frozen=True, slots=True)
class VerifiedTdxModule:
    """The TDX module (SEAM) identity the quote was matched against (TCB Info v3).

    ``identity_id`` is the ``tdxModuleIdentities`` entry used (``TDX_<major version>``, from
    ``tee_tcb_svn[1]``), or ``None`` for a version-0 module checked against ``tdxModule``, which
    carries no TCB levels (``status`` is then ``None``). ``isv_svn`` is ``tee_tcb_svn[0]``.
    """

    identity_id: str | None
    version: int
    isv_svn: int
    mr_signer: bytes
    status: TcbStatus | None
    tcb_date: datetime | None
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedTdQuote:
    """A TDX quote that passed every checklist step, with Intel's TCB verdict.

    ``status`` is QVL's final status: the TDX TCB level's status converged with the TDX module's,
    possibly turned into ``TDRelaunchAdvised`` / ``TDRelaunchAdvisedConfigurationNeeded`` for a
    TD 1.5 whose TDX module was updated in place (QVL ``checkForRelaunch``: relaunching the TD
    would make it up to date), then converged with the TD QE's status. ``platform_status`` is
    the SGX TCB level's status, ``tdx_status`` the TDX TCB level's. ``advisory_ids`` are the TDX
    TCB level's and the TDX module TCB level's (Intel reports the platform's, not the QE's).
    ``Revoked``: see :class:`VerifiedQuote`.
    """

    status: TcbStatus
    advisory_ids: tuple[str, ...]
    tcb_date: datetime
    fmspc: str
    qe_status: TcbStatus
    collateral_expired: bool
    crl_checked: bool
    td: VerifiedTd
    tdx_module: VerifiedTdxModule
    report_data: bytes
    quote: Quote
    trusted_root_is_intel: bool
    root_key_sha256: str
    platform_status: TcbStatus
    tdx_status: TcbStatus
    pce_id: str
    sgx_type: int
    tcb_evaluation_data_number: int
    earliest_expiration: datetime
    revocation: str | None = None

    @property
    def revoked(self) -> bool:
        return self.status is TcbStatus.REVOKED

    @property
    def relaunch_advised(self) -> bool:
        """QVL advises relaunching the TD: the running TDX module is newer than the TD's TCB."""
        return self.status in (
            TcbStatus.TD_RELAUNCH_ADVISED,
            TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The ``confnode quote verify --json`` object for a TD quote."""
        return {
            "tee": "TDX",
            "status": self.status.value,
            "advisory_ids": list(self.advisory_ids),
            "tcb_date": _iso(self.tcb_date),
            "fmspc": self.fmspc,
            "qe_status": self.qe_status.value,
            "platform_status": self.platform_status.value,
            "tdx_status": self.tdx_status.value,
            "tdx_module": {
                "identity_id": self.tdx_module.identity_id,
                "version": self.tdx_module.version,
                "isv_svn": self.tdx_module.isv_svn,
                "status": None if self.tdx_module.status is None else self.tdx_module.status.value,
            },
            "collateral_expired": self.collateral_expired,
            "crl_checked": self.crl_checked,
            "td": self.td.to_json_dict(),
            "report_data": self.report_data.hex(),
        }


#: What :func:`confnode.verify.verify_quote` returns, by the quote's TEE type.
VerificationResult = VerifiedQuote | VerifiedTdQuote
