"""The real appraiser: collateral from the PCCS client, then confnode's DCAP verifier.

Trust: Intel's root always; an extra root (``--trust-root``, e.g. the simulated platform's) only
when configured. A quote is verified against the extra root only when its own PCK chain ends in
that root's key, and the result is then marked ``simulated`` (``x-confnode-simulated: true``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from confnode.attestation._evidence import Evidence
from confnode.collateral import Collateral
from confnode.sgx import Quote, parse_quote
from confnode.verify import (
    INTEL_SGX_ROOT_CA_PUBLIC_KEY,
    QuoteFormatUnsupported,
    UntrustedRoot,
    VerifiedQuote,
    VerifiedTdQuote,
    verify_quote,
)

CollateralLookup = Callable[[Quote], Collateral]
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_X962 = serialization.Encoding.X962


#: How long a platform's collateral is reused before the collateral client is asked again.
HOT_SECONDS = 60.0


def _pck_pem(quote: Quote) -> bytes | None:
    """The quote's PCK chain (PEM), when its certification data carries one (v3 or v4/v5)."""
    return quote.signature_data.certification.pck_chain_pem


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(_DER, _SPKI)


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _root_points(der: bytes | None) -> tuple[bytes, ...]:
    """The P-256 point of an extra root certificate (the verifier pins roots by this key)."""
    if der is None:
        return ()
    key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return ()  # never matches; the verifier rejects such a root with its own message
    return (key.public_bytes(_X962, serialization.PublicFormat.UncompressedPoint),)


def _chain_reaches(pem: bytes, roots: frozenset[bytes]) -> bool:
    """Whether a PEM chain (leaf first) is signed link by link up to one of ``roots`` (P-256)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
        if len(certs) < 2:
            return False
        for child, parent in itertools.pairwise(certs):
            child.verify_directly_issued_by(parent)
        key = certs[-1].public_key()
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    return key.public_bytes(_X962, serialization.PublicFormat.UncompressedPoint) in roots


def collateral_hashes(quote: bytes, collateral: Collateral) -> dict[str, str]:
    """``x-ms-sgx-collateral``: SHA-256 of the quote and of each collateral part (hex)."""
    root_crl = (
        collateral.root_ca_crl.public_bytes(_DER) if collateral.root_ca_crl is not None else b""
    )
    pck_crl = collateral.pck_crl.public_bytes(_DER) if collateral.pck_crl is not None else b""
    return {
        "qeidcertshash": _sha(*(c.public_bytes(_DER) for c in collateral.qe_identity_issuer_chain)),
        "qeidcrlhash": _sha(root_crl),
        "qeidhash": _sha(collateral.qe_identity.body),
        "quotehash": _sha(quote),
        "tcbinfocertshash": _sha(*(c.public_bytes(_DER) for c in collateral.tcb_info_issuer_chain)),
        "tcbinfocrlhash": _sha(root_crl),
        "tcbinfohash": _sha(collateral.tcb_info.body),
        "pckcrlhash": _sha(pck_crl),
    }


class DcapTrust:
    """What the SGX and TD appraisers share: where collateral comes from and which roots count.

    Intel's root always; the extra root only for quotes whose PCK chain ends in it (those are
    verified against it and marked ``simulated``).
    """

    def __init__(
        self,
        collateral_for: CollateralLookup,
        *,
        extra_root: bytes | None = None,
        allow_expired_collateral: bool = False,
    ) -> None:
        self._collateral_for = collateral_for
        self._extra_root = extra_root
        self._extra_key = (
            _spki(x509.load_der_x509_certificate(extra_root)) if extra_root is not None else None
        )
        self._allow_expired = allow_expired_collateral
        self._roots = frozenset({INTEL_SGX_ROOT_CA_PUBLIC_KEY, *_root_points(extra_root)})
        self._chain_roots: OrderedDict[bytes, bool] = OrderedDict()
        self._trusted_chains: OrderedDict[bytes, bool] = OrderedDict()

    def _uses_extra_root(self, quote: Quote) -> bool:
        """Whether the quote's PCK chain ends in the extra root (memoised by chain bytes)."""
        pem = _pck_pem(quote)
        if self._extra_key is None or pem is None:
            return False
        hit = self._chain_roots.get(pem)
        if hit is None:
            try:
                hit = _spki(x509.load_pem_x509_certificates(pem)[-1]) == self._extra_key
            except (ValueError, UnsupportedAlgorithm):
                hit = False  # not our root; the verifier explains what is wrong with the chain
            self._chain_roots[pem] = hit
            if len(self._chain_roots) > 1024:
                self._chain_roots.popitem(last=False)
        return hit

    def _chain_trusted(self, pem: bytes) -> bool:
        """Whether a PCK chain is signed up to a trusted root (memoised by chain bytes)."""
        trusted = self._trusted_chains.get(pem)
        if trusted is None:
            trusted = _chain_reaches(pem, self._roots)
            self._trusted_chains[pem] = trusted
            if len(self._trusted_chains) > 1024:
                self._trusted_chains.popitem(last=False)
        return trusted

    def _verify(
        self, quote: Quote, collateral: Collateral, now: datetime, simulated: bool
    ) -> VerifiedQuote | VerifiedTdQuote:
        """Verify against Intel's root, or against the extra root for a ``simulated`` quote."""
        return verify_quote(
            quote,
            collateral,
            at=now,
            trusted_root=self._extra_root if simulated else None,
            allow_expired_collateral=self._allow_expired,
        )


class DcapAppraiser(DcapTrust):
    """Implements :class:`confnode.attestation.Appraiser` with real DCAP verification."""

    def __init__(
        self,
        collateral_for: CollateralLookup,
        *,
        extra_root: bytes | None = None,
        allow_expired_collateral: bool = False,
    ) -> None:
        super().__init__(
            collateral_for, extra_root=extra_root, allow_expired_collateral=allow_expired_collateral
        )
        self._hashes: OrderedDict[int, tuple[Collateral, dict[str, str]]] = OrderedDict()
        self._hot: OrderedDict[bytes, tuple[float, Collateral]] = OrderedDict()

    def _collateral_hashes(self, raw: bytes, collateral: Collateral) -> dict[str, str]:
        cached = self._hashes.get(id(collateral))
        if cached is None or cached[0] is not collateral:
            base = collateral_hashes(b"", collateral)
            cached = (collateral, base)
            self._hashes[id(collateral)] = cached
            if len(self._hashes) > 64:
                self._hashes.popitem(last=False)
        return {**cached[1], "quotehash": _sha(raw)}

    def _appraise_sync(
        self, raw: bytes, collateral: Collateral, quote: Quote, now: datetime
    ) -> Evidence:
        simulated = self._uses_extra_root(quote)
        # A revoked platform raises QuoteRevoked: never attested.
        verified = self._verify(quote, collateral, now, simulated)
        if not isinstance(verified, VerifiedQuote):  # _check_before_fetch admits SGX only
            raise QuoteFormatUnsupported("TDX quote on /attest/SgxEnclave; expected SGX")
        return self._evidence(raw, collateral, verified, simulated)

    def _check_before_fetch(self, quote: Quote) -> None:
        """Refuse what cannot verify before asking the PCCS for collateral.

        The FMSPC that keys the collateral comes from the quote's PCK certificate; unless that
        certificate chains to a trusted root, anyone could make the service fetch collateral for
        arbitrary FMSPCs. TDX quotes are refused here too (this route attests SGX enclaves).
        """
        if not quote.is_sgx:
            raise QuoteFormatUnsupported(
                f"TEE type {quote.header.tee_type:#x} (version {quote.header.version}); "
                "expected an SGX quote on /attest/SgxEnclave"
            )
        pem = _pck_pem(quote)
        if pem is None:
            return  # no chain to fetch collateral for; the verifier explains
        if not self._chain_trusted(pem):
            raise UntrustedRoot(
                "the quote's PCK certificate chain is not signed up to Intel's SGX Root CA "
                "(nor to the configured --trust-root); collateral was not fetched"
            )

    async def appraise(self, quote: bytes, *, now: datetime) -> Evidence:
        parsed = parse_quote(quote)
        self._check_before_fetch(parsed)
        return self._appraise_sync(quote, await self._collateral(parsed), parsed, now)

    async def _collateral(self, quote: Quote) -> Collateral:
        """Collateral for the quote's platform, asking the client at most every HOT_SECONDS.

        The client may block on the network, so it runs in a thread; a thread hop per request
        would cost more than the verification itself, hence this short-lived memo keyed by the
        quote's PCK chain. Freshness stays the client's job (and the verifier checks expiry).
        """
        key = _pck_pem(quote) or b""
        moment = time.monotonic()
        hit = self._hot.get(key)
        if hit is not None and hit[0] > moment:
            return hit[1]
        collateral = await asyncio.to_thread(self._collateral_for, quote)
        self._hot[key] = (moment + HOT_SECONDS, collateral)
        if len(self._hot) > 1024:
            self._hot.popitem(last=False)
        return collateral

    def _evidence(
        self, raw: bytes, collateral: Collateral, verified: VerifiedQuote, simulated: bool
    ) -> Evidence:
        enclave = verified.enclave
        return Evidence(
            mr_enclave=enclave.mr_enclave,
            mr_signer=enclave.mr_signer,
            isv_prod_id=enclave.isv_prod_id,
            isv_svn=enclave.isv_svn,
            debug=enclave.debug,
            report_data=verified.report_data,
            tcb_status=verified.status.value,
            advisory_ids=verified.advisory_ids,
            collateral_expired=verified.collateral_expired,
            simulated=simulated or not verified.trusted_root_is_intel,
            config_id=enclave.config_id,
            config_svn=enclave.config_svn,
            isv_ext_prod_id=enclave.isv_ext_prod_id,
            isv_family_id=enclave.isv_family_id,
            tcb_date=verified.tcb_date,
            fmspc=verified.fmspc,
            collateral_hashes=self._collateral_hashes(raw, collateral),
        )
