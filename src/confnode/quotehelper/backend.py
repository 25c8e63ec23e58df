"""The quoting backend seam: what the daemon needs from a quoting enclave.

The daemon owns the AESM wire rules (framing, key-id matching, length checks, padding); a backend
only produces the QE's target info, its ECDSA key id and quotes. Backends are called from one
worker thread, one call at a time, as AESM runs its quoting queue.
"""

from __future__ import annotations

from typing import Protocol

from confnode.errors import InfrastructureError

__all__ = ["BackendError", "QuotingBackend"]


class BackendError(InfrastructureError):
    """A backend call failed; ``aesm_code`` is the ``errorCode`` AESM would put on the wire."""

    def __init__(self, message: str, *, aesm_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.aesm_code = aesm_code


class QuotingBackend(Protocol):
    """A quoting enclave, real (``dcap``) or simulated (``sim``).

    Every method may raise :class:`BackendError`; any other exception is answered with
    AESM_UNEXPECTED_ERROR and logged.
    """

    name: str

    def target_info(self) -> bytes:
        """The QE's 512-byte ``sgx_target_info_t``."""
        ...

    def pub_key_id(self) -> bytes | None:
        """The 32-byte ECDSA_ID of the attestation key, or ``None`` while it is not known.

        With ``None`` the daemon answers InitQuoteEx without ``pub_key_id``: ``libsgx_quote_ex``
        then leaves the caller's buffer alone and still succeeds, and no known client (DCAP,
        Open Enclave, Gramine) uses the value.
        """
        ...

    def quote_size(self) -> int:
        """Bytes needed for a quote (``sgx_qe_get_quote_size``)."""
        ...

    def quote(self, report: bytes, qe_report_info: bytes | None) -> tuple[bytes, bytes | None]:
        """Quote a 432-byte REPORT; with a 960-byte ``qe_report_info``, also return it with the
        QE's REPORT filled in (``report_data`` = SHA-256(nonce ‖ quote) ‖ 32 zero bytes)."""
        ...
