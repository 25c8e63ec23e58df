"""``SimPlatform``: one simulated SGX machine plus the simulated Intel services behind it.

A platform is fully determined by a small config (seed, TCB status, CA type, FMSPC, QE SVN,
revocation flag, epoch). Keys, certificates and the config are written to a state directory so
a node keeps its identity across restarts; loading reads them back instead of re-deriving, so a
stored platform stays the same platform even if derivation rules change.

The seed is the platform's only secret: whoever knows it can derive the simulated root and PCK
keys and forge quotes for any enclave. Unless one is given explicitly (tests, demos, or a secret
shared by the simulated nodes of one cluster), it is 32 random bytes, kept only in the state
directory's ``config.json`` (mode 0600, created exclusively).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from confnode.collateral import Collateral
from confnode.errors import InfrastructureError, InvalidInput
from confnode.sgx import (
    Attributes,
    PckExtension,
    PckTcb,
    PlatformConfiguration,
    encode_pck_extension,
    parse_pck_extension,
)
from confnode.sim._derive import expand, private_key, seed_bytes, serial_number
from confnode.sim.enclave import (
    DEFAULT_ATTRIBUTES,
    SimCpu,
    SimEnclave,
    SimEnclaveIdentity,
    with_debug,
)
from confnode.sim.pki import CaType, SimPki
from confnode.sim.qe import SimQuotingEnclave
from confnode.sim.tcb import (
    PLATFORM_STATUSES,
    QE_ISVPRODID,
    platform_tcb,
    qe_identity_body,
    sign_raw,
    tcb_info_body,
    wrap_signed,
)
from confnode.tokens import write_file_atomically

#: Bytes of a random seed.
SEED_BYTES = 32
#: FMSPC of the simulated platform family ("SIM" + zeros): never a real Intel FMSPC.
DEFAULT_FMSPC = "53494D000000"
DEFAULT_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

#: MRSIGNER / MRENCLAVE of the simulated QE: plainly not Intel's production QE3 values.
SIM_QE_MRSIGNER = hashlib.sha256(b"confnode SIMULATED QE3 signer").digest()
SIM_QE_MRENCLAVE = hashlib.sha256(b"confnode SIMULATED QE3 enclave").digest()
#: INIT | MODE64BIT | PROVISIONKEY, like Intel's QE3 report.
SIM_QE_ATTRIBUTES = Attributes(flags=0x15, xfrm=0xE7)

DEFAULT_MR_ENCLAVE = hashlib.sha256(b"confnode SIMULATED application enclave").digest()
DEFAULT_MR_SIGNER = hashlib.sha256(b"confnode SIMULATED application signer").digest()

_CONFIG_FILE = "config.json"
_KEYS = ("root-ca", "processor-ca", "platform-ca", "tcb-signing", "pck", "attestation")
_CERTS = ("root-ca", "processor-ca", "platform-ca", "tcb-signing", "pck")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that defines a simulated platform (persisted as ``config.json``)."""

    seed: str = field(default_factory=lambda: os.urandom(SEED_BYTES).hex())  # hex, secret
    tcb: str = "UpToDate"
    ca: CaType = "processor"
    fmspc: str = DEFAULT_FMSPC
    pce_id: str = "0000"
    qe_svn: int = 8
    revoked_pck: bool = False
    epoch: str = DEFAULT_EPOCH.isoformat()
    tcb_evaluation_data_number: int = 17
    collateral_validity_days: int = 30

    def __post_init__(self) -> None:
        for name, kind in (
            ("seed", str),
            ("tcb", str),
            ("ca", str),
            ("fmspc", str),
            ("pce_id", str),
            ("qe_svn", int),
            ("revoked_pck", bool),
            ("epoch", str),
            ("tcb_evaluation_data_number", int),
            ("collateral_validity_days", int),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise InvalidInput(f"{name} is {value!r}; expected a {kind.__name__}")
        if self.tcb not in PLATFORM_STATUSES:
            raise InvalidInput(
                f"TCB status {self.tcb!r}; expected one of {', '.join(PLATFORM_STATUSES)}"
            )
        if self.ca not in ("processor", "platform"):
            raise InvalidInput(f"CA type {self.ca!r}; expected 'processor' or 'platform'")
        for name, value, size in (
            ("fmspc", self.fmspc, 6),
            ("pce_id", self.pce_id, 2),
            ("seed", self.seed, None),
        ):
            try:
                decoded: bytes | None = bytes.fromhex(value)
            except ValueError:
                decoded = None
            if decoded is None or (size is not None and len(decoded) != size):
                expected = "hex digits" if size is None else f"{2 * size} hex digits"
                raise InvalidInput(f"{name} {value!r}: expected {expected}")
        try:
            epoch = datetime.fromisoformat(self.epoch)
        except ValueError:
            epoch = None
        if epoch is None or epoch.tzinfo is None:
            raise InvalidInput(f"epoch {self.epoch!r}: expected an ISO-8601 time with a zone")
        if not 0 <= self.qe_svn <= 0xFFFF:
            raise InvalidInput(f"qe_svn {self.qe_svn} is not a 16-bit SVN")
        if not 0 <= self.tcb_evaluation_data_number <= 0xFFFFFFFF:
            raise InvalidInput("tcb_evaluation_data_number must be an unsigned 32-bit number")
        if self.collateral_validity_days < 1:
            raise InvalidInput("collateral_validity_days must be at least 1")

    @property
    def seed_bytes(self) -> bytes:
        return bytes.fromhex(self.seed)

    @property
    def epoch_datetime(self) -> datetime:
        return datetime.fromisoformat(self.epoch).astimezone(UTC)

    @property
    def fmspc_bytes(self) -> bytes:
        return bytes.fromhex(self.fmspc)

    @property
    def pce_id_bytes(self) -> bytes:
        return bytes.fromhex(self.pce_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"simulated platform config is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not set(data) <= {f.name for f in fields(cls)}:
            raise InvalidInput(
                "simulated platform config must be an object with known members only"
            )
        return cls(**data)


@dataclass(frozen=True, slots=True)
class SimPcsResponses:
    """What a PCS/PCCS serves for the simulated platform at one issue date (exact bytes)."""

    issue_date: datetime
    next_update: datetime
    tcb_info_body: str
    tcb_info_signature: bytes
    qe_identity_body: str
    qe_identity_signature: bytes
    tcb_info_issuer_chain: str
    qe_identity_issuer_chain: str
    root_ca_crl: bytes
    pck_crls: Mapping[str, bytes] = field(default_factory=dict)
    pck_crl_issuer_chains: Mapping[str, str] = field(default_factory=dict)

    @property
    def tcb_info(self) -> str:
        """The PCS ``/tcb`` response body."""
        return wrap_signed("tcbInfo", self.tcb_info_body, self.tcb_info_signature)

    @property
    def qe_identity(self) -> str:
        """The PCS ``/qe/identity`` response body."""
        return wrap_signed("enclaveIdentity", self.qe_identity_body, self.qe_identity_signature)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _midnight(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


class SimCollateralSource:
    """Collateral as a simulated PCS serves it, re-issued daily (SGX and TDX platforms alike).

    A subclass sets, in its constructor, ``_responses`` (the responses for an issue date and
    next update), ``_bundle_ca`` (the PCK CA whose CRL its bundle carries) and
    ``_validity_days`` (how long collateral stays valid).
    """

    _responses: Callable[[datetime, datetime], SimPcsResponses]
    _bundle_ca: CaType
    _validity_days: int

    def pcs_responses(
        self,
        at: datetime | None = None,
        *,
        issue_date: datetime | None = None,
        next_update: datetime | None = None,
    ) -> SimPcsResponses:
        """The collateral as the simulated PCS serves it at ``at`` (default: now).

        Collateral is re-issued daily: ``issue_date`` defaults to midnight UTC of ``at`` and
        ``next_update`` to ``collateral_validity_days`` later (Intel: about 30 days), so the
        same ``at`` always gives byte-identical collateral.
        """
        when = datetime.now(UTC) if at is None else at
        issued = _midnight(when) if issue_date is None else issue_date.astimezone(UTC)
        expires = (
            issued + timedelta(days=self._validity_days)
            if next_update is None
            else next_update.astimezone(UTC)
        )
        if expires <= issued:
            raise InvalidInput(f"next_update {expires} is not after issue_date {issued}")
        return self._responses(issued.replace(microsecond=0), expires.replace(microsecond=0))

    def collateral_json(
        self,
        at: datetime | None = None,
        *,
        issue_date: datetime | None = None,
        next_update: datetime | None = None,
    ) -> str:
        """The collateral bundle for this platform's quotes (dcap-qvl QuoteCollateralV3 JSON)."""
        r = self.pcs_responses(at, issue_date=issue_date, next_update=next_update)
        bundle = {
            "pck_crl_issuer_chain": r.pck_crl_issuer_chains[self._bundle_ca],
            "root_ca_crl": r.root_ca_crl.hex(),
            "pck_crl": r.pck_crls[self._bundle_ca].hex(),
            "tcb_info_issuer_chain": r.tcb_info_issuer_chain,
            "tcb_info": r.tcb_info_body,
            "tcb_info_signature": r.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": r.qe_identity_issuer_chain,
            "qe_identity": r.qe_identity_body,
            "qe_identity_signature": r.qe_identity_signature.hex(),
        }
        return json.dumps(bundle, indent=2) + "\n"

    def collateral(
        self,
        at: datetime | None = None,
        *,
        issue_date: datetime | None = None,
        next_update: datetime | None = None,
    ) -> Collateral:
        """The collateral bundle as a :class:`confnode.Collateral`."""
        return Collateral.from_json(
            self.collateral_json(at, issue_date=issue_date, next_update=next_update)
        )


class SimPlatform(SimCollateralSource):
    """A simulated SGX platform: PKI, PCK certificate, QE, enclaves and collateral."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        seed: bytes | str | None = None,
        tcb: str | None = None,
        *,
        ca: CaType | None = None,
        fmspc: str | None = None,
        qe_svn: int | None = None,
        revoked_pck: bool | None = None,
        epoch: datetime | None = None,
    ) -> None:
        """Create a platform, or load the one stored in ``state_dir``.

        With an existing ``state_dir`` the stored platform is loaded; any explicit argument that
        disagrees with the stored config is an error rather than silently ignored. With a new
        ``state_dir`` the platform is created and saved there.
        """
        requested: dict[str, Any] = {}
        if seed is not None:
            requested["seed"] = seed_bytes(seed).hex()
        if tcb is not None:
            requested["tcb"] = str(tcb)
        for name, value in (
            ("ca", ca),
            ("fmspc", fmspc.upper() if fmspc else fmspc),
            ("qe_svn", qe_svn),
            ("revoked_pck", revoked_pck),
            ("epoch", epoch.astimezone(UTC).isoformat() if epoch else None),
        ):
            if value is not None:
                requested[name] = value
        self._state_dir = Path(state_dir) if state_dir is not None else None
        if self._state_dir is not None and (self._state_dir / _CONFIG_FILE).exists():
            self._load(self._state_dir, requested)
        else:
            self._create(SimConfig(**requested))
            if self._state_dir is not None:
                self.save(self._state_dir)

    @classmethod
    def load(cls, state_dir: Path | str) -> SimPlatform:
        """Load the platform stored in ``state_dir``; it must exist (see ``confnode sim init``)."""
        if not (Path(state_dir) / _CONFIG_FILE).is_file():
            raise InfrastructureError(
                f"no simulated platform in {state_dir} ({_CONFIG_FILE} not found)",
                hint=f"create one with `confnode sim init --state {state_dir}`",
            )
        return cls(state_dir)

    # -- construction -------------------------------------------------------------------------

    def _create(self, config: SimConfig) -> None:
        seed = config.seed_bytes
        pki = SimPki.create(seed, config.epoch_datetime)
        pck_key = private_key(seed, "pck")
        label = f"{config.ca}/{config.tcb}/{config.fmspc}/{config.pce_id}"
        pck_cert = pki.issue_pck(
            config.ca, pck_key.public_key(), self._sgx_extension(config), label
        )
        self._init(config, pki, pck_key, pck_cert, private_key(seed, "attestation"))

    def _load(self, state_dir: Path, requested: dict[str, Any]) -> None:
        try:
            config = SimConfig.from_json((state_dir / _CONFIG_FILE).read_text())
            keys = {
                name: serialization.load_pem_private_key(
                    (state_dir / "keys" / f"{name}.key.pem").read_bytes(), password=None
                )
                for name in _KEYS
            }
            certs = {
                name: x509.load_pem_x509_certificate(
                    (state_dir / "certs" / f"{name}.pem").read_bytes()
                )
                for name in _CERTS
            }
        except OSError as exc:
            raise InfrastructureError(f"cannot read simulated platform state: {exc}") from exc
        except ValueError as exc:
            raise InvalidInput(
                f"simulated platform state in {state_dir} is corrupt: {exc}"
            ) from exc
        stored = asdict(config)
        for name, value in requested.items():
            if stored[name] != value:
                raise InvalidInput(
                    f"{state_dir} holds a platform with {name}={stored[name]!r}, not {value!r}",
                    hint="use another --state directory or omit the option",
                )
        ec_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        for name, key in keys.items():
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise InvalidInput(f"key {name} in {state_dir} is not an EC private key")
            ec_keys[name] = key
        pki = SimPki(
            seed=config.seed_bytes,
            epoch=config.epoch_datetime,
            root_key=ec_keys["root-ca"],
            root_cert=certs["root-ca"],
            processor_ca_key=ec_keys["processor-ca"],
            processor_ca_cert=certs["processor-ca"],
            platform_ca_key=ec_keys["platform-ca"],
            platform_ca_cert=certs["platform-ca"],
            tcb_signing_key=ec_keys["tcb-signing"],
            tcb_signing_cert=certs["tcb-signing"],
        )
        if certs["pck"].public_key() != ec_keys["pck"].public_key():
            raise InvalidInput(f"PCK certificate and key in {state_dir} do not match")
        self._init(config, pki, ec_keys["pck"], certs["pck"], ec_keys["attestation"])

    def _init(
        self,
        config: SimConfig,
        pki: SimPki,
        pck_key: ec.EllipticCurvePrivateKey,
        pck_cert: x509.Certificate,
        attestation_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self._config = config
        self._pki = pki
        self._pck_key = pck_key
        self._pck_cert = pck_cert
        self._attestation_key = attestation_key
        seed = config.seed_bytes
        comps, _ = platform_tcb(config.tcb)
        self._cpu = SimCpu(
            secret=expand(seed, "cpu-secret", 32),
            cpu_svn=bytes(comps),
            report_key_id=expand(seed, "report-key-id", 32),
        )
        _, intermediate = pki.intermediate(config.ca)
        self._pck_issuer_chain_pem = _pem(intermediate) + _pem(pki.root_cert)
        self._pck_chain_pem = _pem(pck_cert) + self._pck_issuer_chain_pem
        self._pck_extension = parse_pck_extension(pck_cert)
        qe_identity = SimEnclaveIdentity(
            mr_enclave=SIM_QE_MRENCLAVE,
            mr_signer=SIM_QE_MRSIGNER,
            isv_prod_id=QE_ISVPRODID,
            isv_svn=config.qe_svn,
            attributes=SIM_QE_ATTRIBUTES,
        )
        self._qe = SimQuotingEnclave(
            cpu=self._cpu,
            identity=qe_identity,
            attestation_key=attestation_key,
            pck_key=pck_key,
            pck_chain_pem=self._pck_chain_pem.encode("ascii"),
            pce_svn=platform_tcb(config.tcb)[1],
            qe_id=expand(seed, "qe-id", 16),
        )
        self._responses = lru_cache(maxsize=8)(self._make_responses)
        self._bundle_ca = config.ca
        self._validity_days = config.collateral_validity_days

    @staticmethod
    def _sgx_extension(config: SimConfig) -> bytes:
        seed = config.seed_bytes
        comps, pcesvn = platform_tcb(config.tcb)
        platform_ca = config.ca == "platform"
        return encode_pck_extension(
            PckExtension(
                ppid=expand(seed, "ppid", 16),
                tcb=PckTcb(comp_svns=comps, pcesvn=pcesvn, cpusvn=bytes(comps)),
                pce_id=config.pce_id_bytes,
                fmspc=config.fmspc_bytes,
                sgx_type=1 if platform_ca else 0,
                platform_instance_id=(
                    expand(seed, "platform-instance-id", 16) if platform_ca else None
                ),
                configuration=(
                    PlatformConfiguration(
                        dynamic_platform=False, cached_keys=True, smt_enabled=True
                    )
                    if platform_ca
                    else None
                ),
            )
        )

    def save(self, state_dir: Path | str) -> None:
        """Write config, keys (mode 0600) and certificates under ``state_dir``."""
        root = Path(state_dir)
        keys = {
            "root-ca": self._pki.root_key,
            "processor-ca": self._pki.processor_ca_key,
            "platform-ca": self._pki.platform_ca_key,
            "tcb-signing": self._pki.tcb_signing_key,
            "pck": self._pck_key,
            "attestation": self._attestation_key,
        }
        certs = {
            "root-ca": self._pki.root_cert,
            "processor-ca": self._pki.processor_ca_cert,
            "platform-ca": self._pki.platform_ca_cert,
            "tcb-signing": self._pki.tcb_signing_cert,
            "pck": self._pck_cert,
        }
        try:
            (root / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
            (root / "certs").mkdir(parents=True, exist_ok=True)
            for name, key in keys.items():
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                write_file_atomically(root / "keys" / f"{name}.key.pem", pem, 0o600)
            for name, cert in certs.items():
                write_file_atomically(root / "certs" / f"{name}.pem", _pem(cert).encode(), 0o644)
            write_file_atomically(root / "certs" / "root-ca.der", self.root_certificate(), 0o644)
            write_file_atomically(
                root / "certs" / "pck-chain.pem", self._pck_chain_pem.encode(), 0o644
            )
            # The config holds the seed (a secret) and goes last: its presence marks a complete
            # state directory. It is never replaced: a second writer must not swap the seed
            # (and so every key) of a platform that is already in use.
            write_file_atomically(
                root / _CONFIG_FILE, self._config.to_json().encode(), 0o600, exclusive=True
            )
        except FileExistsError as exc:
            raise InvalidInput(
                f"{root} already holds a simulated platform; refusing to overwrite its seed",
                hint="open it with SimPlatform(state_dir) or use another directory",
            ) from exc
        except OSError as exc:
            raise InfrastructureError(f"cannot write simulated platform state: {exc}") from exc

    # -- identity -------------------------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        return self._config

    @property
    def state_dir(self) -> Path | None:
        return self._state_dir

    @property
    def pki(self) -> SimPki:
        return self._pki

    @property
    def tcb_status(self) -> str:
        return self._config.tcb

    @property
    def ca_type(self) -> CaType:
        return self._config.ca

    @property
    def fmspc(self) -> bytes:
        return self._config.fmspc_bytes

    @property
    def pck_certificate(self) -> x509.Certificate:
        return self._pck_cert

    @property
    def pck_chain_pem(self) -> str:
        """PCK leaf ‖ intermediate ‖ root, PEM: the quote's certification data (minus NUL)."""
        return self._pck_chain_pem

    @property
    def pck_issuer_chain_pem(self) -> str:
        """Intermediate ‖ root, PEM: PCS's ``SGX-PCK-Certificate-Issuer-Chain``."""
        return self._pck_issuer_chain_pem

    @property
    def pck_extension(self) -> PckExtension:
        """The SGX extension of the PCK certificate (TCB components, FMSPC, PPID, ...)."""
        return self._pck_extension

    @property
    def qe_id(self) -> bytes:
        """The 16-byte QE-ID in every quote header (what PCCS ``/pckcert`` is asked with)."""
        return expand(self._config.seed_bytes, "qe-id", 16)

    def root_certificate(self) -> bytes:
        """The simulated root CA certificate (DER): the trust root for simulated quotes."""
        return self._pki.root_cert.public_bytes(serialization.Encoding.DER)

    # -- enclaves and quotes --------------------------------------------------------------------

    @property
    def quoting_enclave(self) -> SimQuotingEnclave:
        return self._qe

    def enclave(
        self,
        mr_enclave: bytes = DEFAULT_MR_ENCLAVE,
        mr_signer: bytes = DEFAULT_MR_SIGNER,
        *,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        debug: bool = False,
        attributes: Attributes = DEFAULT_ATTRIBUTES,
        misc_select: int = 0,
        config_id: bytes = bytes(64),
        config_svn: int = 0,
        isv_ext_prod_id: bytes = bytes(16),
        isv_family_id: bytes = bytes(16),
    ) -> SimEnclave:
        """An enclave with the given identity running on this platform."""
        identity = SimEnclaveIdentity(
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            attributes=with_debug(attributes, debug),
            misc_select=misc_select,
            config_id=config_id,
            config_svn=config_svn,
            isv_ext_prod_id=isv_ext_prod_id,
            isv_family_id=isv_family_id,
        )
        return SimEnclave(identity, self._cpu)

    def quote(self, report: bytes) -> bytes:
        """Quote a REPORT made for :attr:`quoting_enclave` (raises ``QuotingError`` if not)."""
        return self._qe.quote(report)[0]

    # -- collateral -----------------------------------------------------------------------------

    def _make_responses(self, issued: datetime, expires: datetime) -> SimPcsResponses:
        cfg = self._config
        pki = self._pki
        tcb_body = tcb_info_body(
            fmspc=cfg.fmspc_bytes,
            pce_id=cfg.pce_id_bytes,
            issue_date=issued,
            next_update=expires,
            tcb_evaluation_data_number=cfg.tcb_evaluation_data_number,
        )
        qe_body = qe_identity_body(
            mrsigner=SIM_QE_MRSIGNER,
            issue_date=issued,
            next_update=expires,
            tcb_evaluation_data_number=cfg.tcb_evaluation_data_number,
        )
        signing_chain = _pem(pki.tcb_signing_cert) + _pem(pki.root_cert)
        crls: dict[str, bytes] = {}
        chains: dict[str, str] = {}
        ca_type: CaType
        for ca_type in ("processor", "platform"):
            crls[ca_type] = pck_crl_der(self, ca_type, issued, expires)
            chains[ca_type] = _pem(pki.intermediate(ca_type)[1]) + _pem(pki.root_cert)
        return SimPcsResponses(
            issue_date=issued,
            next_update=expires,
            tcb_info_body=tcb_body,
            tcb_info_signature=sign_raw(pki.tcb_signing_key, tcb_body.encode()),
            qe_identity_body=qe_body,
            qe_identity_signature=sign_raw(pki.tcb_signing_key, qe_body.encode()),
            tcb_info_issuer_chain=signing_chain,
            qe_identity_issuer_chain=signing_chain,
            root_ca_crl=pki.root_crl(issued, expires).public_bytes(serialization.Encoding.DER),
            pck_crls=crls,
            pck_crl_issuer_chains=chains,
        )


def pck_crl_der(
    platform: SimPlatform,
    ca_type: CaType,
    issued: datetime,
    expires: datetime,
    also_revoked: Iterable[int] = (),
) -> bytes:
    """The simulated PCK CRL (DER) of ``ca_type``: a decoy serial, ``platform``'s PCK if it is
    revoked and issued by ``ca_type``, and ``also_revoked``."""
    cfg = platform.config
    revoked = {serial_number(cfg.seed_bytes, "revoked-decoy"), *also_revoked}
    if cfg.revoked_pck and ca_type == cfg.ca:
        revoked.add(platform.pck_certificate.serial_number)
    crl = platform.pki.pck_crl(ca_type, issued, expires, revoked)
    return crl.public_bytes(serialization.Encoding.DER)
