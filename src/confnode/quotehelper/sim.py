"""``sim`` backend: the simulated platform's quoting enclave behind the AESM wire.

The simulated QE checks each REPORT's MAC under its own report key, exactly as QE3 does, so a
REPORT not made for it is refused with AESM_INVALID_REPORT (47) — what aesmd's ECDSA bundle sends
for QE3's SGX_QL_INVALID_REPORT, and what ``libsgx_quote_ex`` turns into SGX_ERROR_MAC_MISMATCH.
"""

from __future__ import annotations

from pathlib import Path

from confnode.quotehelper.backend import BackendError
from confnode.sim import SimPlatform
from confnode.sim.qe import QuotingError, SimQuotingEnclave

__all__ = ["SimBackend"]


class SimBackend:
    """Adapts :class:`confnode.sim.qe.SimQuotingEnclave` to :class:`QuotingBackend`."""

    name = "sim"

    def __init__(self, quoting_enclave: SimQuotingEnclave) -> None:
        self.qe = quoting_enclave

    @classmethod
    def from_state(cls, state_dir: Path | None = None) -> SimBackend:
        """The QE of the simulated platform persisted in ``state_dir`` (created when absent)."""
        return cls(SimPlatform(state_dir=state_dir).quoting_enclave)

    def target_info(self) -> bytes:
        return self.qe.target_info()

    def pub_key_id(self) -> bytes:
        return self.qe.pub_key_id

    def quote_size(self) -> int:
        return self.qe.quote_size()

    def quote(self, report: bytes, qe_report_info: bytes | None) -> tuple[bytes, bytes | None]:
        try:
            return self.qe.quote(report, qe_report_info)
        except QuotingError as exc:
            raise BackendError(exc.message, aesm_code=exc.aesm_code, hint=exc.hint) from exc
