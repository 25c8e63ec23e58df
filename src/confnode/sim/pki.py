"""The simulated SGX PKI: root CA, PCK Platform/Processor CAs, PCK leaves, TCB signing, CRLs.

Profiles copy Intel's (see docs/reference sgx-dcap.md §2): P-256/SHA-256, basicConstraints and
keyUsage critical, AKI/SKI, CRL distribution points, the root with pathlen 1 and the
intermediates with pathlen 0, leaves with digitalSignature + nonRepudiation. Common names keep
the substrings verifiers match on ("SGX Root CA", "CA", "SGX PCK Certificate", "SGX TCB
Signing") but every subject says plainly that it is a confnode simulation, so nothing here can be
mistaken for Intel's production PKI. All signatures are deterministic (RFC 6979) and all dates and
serials are fixed, so the same seed yields byte-identical certificates and CRLs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from confnode.sim._derive import private_key, serial_number

CaType = Literal["processor", "platform"]

#: OID of Intel's SGX extension in PCK certificates.
SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")

#: Base of the (never resolvable) URLs placed in CRL distribution points.
CDP_BASE = "https://sim.confnode.invalid"
ROOT_CRL_URL = f"{CDP_BASE}/SimulatedSGXRootCA.der"

_ORG = "confnode simulation (not Intel)"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Simulated"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "ZZ"),
        ]
    )


ROOT_NAME = _name("confnode SIMULATED SGX Root CA")
PROCESSOR_CA_NAME = _name("confnode SIMULATED SGX PCK Processor CA")
PLATFORM_CA_NAME = _name("confnode SIMULATED SGX PCK Platform CA")
PCK_NAME = _name("confnode SIMULATED SGX PCK Certificate")
TCB_SIGNING_NAME = _name("confnode SIMULATED SGX TCB Signing")

_ROOT_NOT_AFTER = datetime.fromisoformat("2049-12-31T23:59:59+00:00")


def pck_crl_url(ca: CaType) -> str:
    return f"{CDP_BASE}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"


def _cdp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_SIGNER_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _build(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    ca_pathlen: int | None,
    cdp_url: str,
    extra: Iterable[x509.ExtensionType] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(_cdp(cdp_url), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_SIGNER_USAGE if ca_pathlen is None else _CA_USAGE, critical=True)
        .add_extension(
            x509.BasicConstraints(ca=ca_pathlen is not None, path_length=ca_pathlen),
            critical=True,
        )
    )
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


@dataclass(frozen=True, slots=True)
class SimPki:
    """The CA hierarchy of one simulated "Intel": everything but the per-platform PCK leaf."""

    seed: bytes
    epoch: datetime
    root_key: ec.EllipticCurvePrivateKey
    root_cert: x509.Certificate
    processor_ca_key: ec.EllipticCurvePrivateKey
    processor_ca_cert: x509.Certificate
    platform_ca_key: ec.EllipticCurvePrivateKey
    platform_ca_cert: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey
    tcb_signing_cert: x509.Certificate

    @classmethod
    def create(cls, seed: bytes, epoch: datetime) -> SimPki:
        """Derive the hierarchy; ``epoch`` is every certificate's notBefore."""
        root_key = private_key(seed, "root-ca")
        root_cert = _build(
            subject=ROOT_NAME,
            issuer=ROOT_NAME,
            public_key=root_key.public_key(),
            issuer_key=root_key,
            serial=serial_number(seed, "root-ca"),
            not_before=epoch,
            not_after=_ROOT_NOT_AFTER,
            ca_pathlen=1,
            cdp_url=ROOT_CRL_URL,
        )
        intermediates: dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]] = {}
        for ca, name in (("processor", PROCESSOR_CA_NAME), ("platform", PLATFORM_CA_NAME)):
            key = private_key(seed, f"{ca}-ca")
            intermediates[ca] = (
                key,
                _build(
                    subject=name,
                    issuer=ROOT_NAME,
                    public_key=key.public_key(),
                    issuer_key=root_key,
                    serial=serial_number(seed, f"{ca}-ca"),
                    not_before=epoch,
                    not_after=epoch + timedelta(days=15 * 365),
                    ca_pathlen=0,
                    cdp_url=ROOT_CRL_URL,
                ),
            )
        tcb_key = private_key(seed, "tcb-signing")
        tcb_cert = _build(
            subject=TCB_SIGNING_NAME,
            issuer=ROOT_NAME,
            public_key=tcb_key.public_key(),
            issuer_key=root_key,
            serial=serial_number(seed, "tcb-signing"),
            not_before=epoch,
            not_after=epoch + timedelta(days=10 * 365),
            ca_pathlen=None,
            cdp_url=ROOT_CRL_URL,
        )
        return cls(
            seed=seed,
            epoch=epoch,
            root_key=root_key,
            root_cert=root_cert,
            processor_ca_key=intermediates["processor"][0],
            processor_ca_cert=intermediates["processor"][1],
            platform_ca_key=intermediates["platform"][0],
            platform_ca_cert=intermediates["platform"][1],
            tcb_signing_key=tcb_key,
            tcb_signing_cert=tcb_cert,
        )

    def intermediate(self, ca: CaType) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if ca == "processor":
            return self.processor_ca_key, self.processor_ca_cert
        return self.platform_ca_key, self.platform_ca_cert

    def issue_pck(
        self,
        ca: CaType,
        public_key: ec.EllipticCurvePublicKey,
        sgx_extension_der: bytes,
        label: str,
    ) -> x509.Certificate:
        """A PCK leaf carrying ``sgx_extension_der`` (DER value of OID 1.2.840.113741.1.13.1)."""
        issuer_key, issuer_cert = self.intermediate(ca)
        return _build(
            subject=PCK_NAME,
            issuer=issuer_cert.subject,
            public_key=public_key,
            issuer_key=issuer_key,
            serial=serial_number(self.seed, "pck/" + label),
            not_before=self.epoch,
            not_after=self.epoch + timedelta(days=7 * 365),
            ca_pathlen=None,
            cdp_url=pck_crl_url(ca),
            extra=[x509.UnrecognizedExtension(SGX_EXTENSION_OID, sgx_extension_der)],
        )

    def root_crl(
        self, this_update: datetime, next_update: datetime, revoked: Iterable[int] = ()
    ) -> x509.CertificateRevocationList:
        return _crl(self.root_key, ROOT_NAME, this_update, next_update, revoked)

    def pck_crl(
        self,
        ca: CaType,
        this_update: datetime,
        next_update: datetime,
        revoked: Iterable[int] = (),
    ) -> x509.CertificateRevocationList:
        key, cert = self.intermediate(ca)
        return _crl(key, cert.subject, this_update, next_update, revoked)


def _crl(
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    this_update: datetime,
    next_update: datetime,
    revoked: Iterable[int],
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for serial in sorted(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
