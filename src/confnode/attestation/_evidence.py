"""What the service needs to know about a verified quote, and the seam that produces it.

The HTTP layer depends only on the :class:`Appraiser` protocol, so tests run the whole service
with a fake appraiser and the real one (DCAP verification with fetched collateral) is plugged in
by the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Evidence:
    """A quote that passed verification: enclave identity plus the platform's TCB verdict."""

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool
    report_data: bytes  # 64 bytes
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()
    collateral_expired: bool = False
    #: True when the quote chained to a root other than Intel's (e.g. the simulated one).
    simulated: bool = False
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)
    tcb_date: datetime | None = None
    fmspc: str = ""
    #: ``x-ms-sgx-collateral``: SHA-256 (hex) of the quote and of each collateral part.
    collateral_hashes: Mapping[str, str] = field(default_factory=dict)


class Appraiser(Protocol):
    """Verifies a quote (signature, certificate chain, collateral, TCB) as of ``now``.

    Raises :class:`confnode.InvalidInput` for bytes that are not a quote,
    :class:`confnode.VerificationError` for evidence that fails verification (including a revoked
    platform) and :class:`confnode.InfrastructureError` when collateral cannot be obtained.
    """

    async def appraise(self, quote: bytes, *, now: datetime) -> Evidence: ...
