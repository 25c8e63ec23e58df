"""Real SGX vector sets for the verifier tests, with the windows from dcap-vectors/README.txt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confnode.collateral import (
    Collateral,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class VectorSet:
    """One quote with its collateral and the README's validity window."""

    name: str
    quote: bytes
    collateral_json: str
    window: tuple[datetime, datetime]

    def collateral(self) -> Collateral:
        return Collateral.from_json(self.collateral_json)

    @property
    def midpoint(self) -> datetime:
        start, end = self.window
        return start + (end - start) / 2


def oasis_collateral(
    base: Path, chain_file: str = "tcb_info_v3_fmspc_00606A000000_certs.pem"
) -> str:
    chain = (base / chain_file).read_text()
    return Collateral.from_pcs_responses(
        tcb_info_body=(base / "tcb_info_v3_fmspc_00606A000000.json").read_bytes(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=(base / "qe_identity_v2.json").read_bytes(),
        qe_identity_issuer_chain=chain,
    ).to_json()
