"""The real-hardware SGX and TDX vector sets of ``../shared/dcap-vectors``, ready to verify.

Each set is one genuine quote with the Intel collateral published next to it, the verification
window its README gives, and the result it expects. The demo verifies them; the verifier's tests
use the same loaders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confnode.collateral import (
    Collateral,
    SignedQeIdentity,
    SignedTcbInfo,
    parse_signature_der,
)

#: Where the shared vectors live relative to a checkout (``<repo>/../shared/dcap-vectors``).
DEFAULT_VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "dcap-vectors"


def vectors_dir() -> Path:
    return Path(os.environ.get("CONFNODE_DCAP_VECTORS", DEFAULT_VECTORS))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class VectorSet:
    """One real quote, its collateral, the README's window and what the README expects."""

    name: str
    quote: bytes
    collateral_json: str
    window: tuple[datetime, datetime]
    expected_status: str
    expected_advisories: tuple[str, ...]
    #: The set ships no (usable) CRLs for its window, so CRL checks must be skipped explicitly.
    needs_crl_skip: bool

    def collateral(self) -> Collateral:
        return Collateral.from_json(self.collateral_json)

    @property
    def midpoint(self) -> datetime:
        start, end = self.window
        return start + (end - start) / 2


def dcapqvl(base: Path) -> VectorSet:
    sample = base / "Phala-Network_dcap-qvl" / "sample"
    return VectorSet(
        "Phala dcap-qvl sgx_quote (Processor CA)",
        (sample / "sgx_quote").read_bytes(),
        (sample / "sgx_quote_collateral.json").read_text(),
        (utc("2025-06-19T10:56:11Z"), utc("2025-07-19T10:01:18Z")),
        "ConfigurationAndSWHardeningNeeded",
        ("INTEL-SA-00289", "INTEL-SA-00615"),
        needs_crl_skip=False,
    )


def dcapqvl_tdx(base: Path) -> VectorSet:
    """The TDX v4 (TD 1.0) sample: a real TD quote with 70 trailing zero bytes."""
    sample = base / "Phala-Network_dcap-qvl" / "sample"
    return VectorSet(
        "Phala dcap-qvl tdx_quote (v4, TD 1.0)",
        (sample / "tdx_quote").read_bytes(),
        (sample / "tdx_quote_collateral.json").read_text(),
        (utc("2025-06-19T10:32:27Z"), utc("2025-07-19T10:00:35Z")),
        "UpToDate",
        (),
        needs_crl_skip=False,
    )


def oasis_collateral(
    base: Path,
    chain_file: str = "tcb_info_v3_fmspc_00606A000000_certs.pem",
    *,
    tcb_info: str = "tcb_info_v3_fmspc_00606A000000.json",
    qe_identity: str = "qe_identity_v2.json",
) -> str:
    """Raw PCS v4 bodies plus the issuer-chain header value; the set has no CRLs."""
    chain = (base / chain_file).read_text()
    return Collateral.from_pcs_responses(
        tcb_info_body=(base / tcb_info).read_bytes(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=(base / qe_identity).read_bytes(),
        qe_identity_issuer_chain=chain,
    ).to_json()


def oasis_dir(base: Path) -> Path:
    return base / "oasisprotocol_oasis-core" / "go" / "common" / "sgx" / "pcs" / "testdata"


def oasis(base: Path) -> VectorSet:
    data = oasis_dir(base)
    return VectorSet(
        "Oasis Ice Lake-SP (Platform CA, PCS v4 bodies)",
        (data / "quote_v3_ecdsa_p256_pck_chain.bin").read_bytes(),
        oasis_collateral(data),
        (utc("2022-12-19T09:40:10Z"), utc("2023-01-15T12:45:36Z")),
        "SWHardeningNeeded",
        ("INTEL-SA-00615", "INTEL-SA-00657"),
        needs_crl_skip=True,
    )


def fortanix_dir(base: Path) -> Path:
    return base / "fortanix_rust-sgx" / "intel-sgx" / "pcs" / "tests" / "data"


def fortanix_collateral(data: Path) -> str:
    """TCB Info v2 + QE Identity in Fortanix's wrappers (DER signatures), processor CRL only."""
    tcb = json.loads((data / "00906ea10000.tcb").read_text())
    qe = json.loads((data / "qe3_identity.id").read_text())
    crl = json.loads((data / "processor.crl").read_text())
    return Collateral.from_parts(
        tcb_info=SignedTcbInfo.from_parts(
            tcb["raw_tcb_info"], parse_signature_der(tcb["signature"])
        ),
        tcb_info_issuer_chain="".join(tcb["ca_chain"]),
        qe_identity=SignedQeIdentity.from_parts(
            qe["raw_enclave_identity"], parse_signature_der(qe["signature"])
        ),
        qe_identity_issuer_chain="".join(qe["ca_chain"]),
        pck_crl=crl["crl"],
        pck_crl_issuer_chain="".join(crl["ca_chain"]),
    ).to_json()


def fortanix(base: Path) -> VectorSet:
    data = fortanix_dir(base)
    return VectorSet(
        "Fortanix Coffee Lake 2020 (TCB Info v2, debug enclave)",
        (data / "quote.bin").read_bytes(),
        fortanix_collateral(data),
        (utc("2020-05-18T17:49:24Z"), utc("2020-06-17T17:49:21Z")),
        "SWHardeningNeeded",
        (),
        needs_crl_skip=True,  # its Root CA CRL is from 2026 and does not cover the 2020 window
    )


SETS: tuple[Callable[[Path], VectorSet], ...] = (dcapqvl, oasis, fortanix)
