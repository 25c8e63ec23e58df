"""Simulated enclaves with SGX REPORT semantics: TARGETINFO, EREPORT MACs, EGETKEY seal keys.

On real hardware EREPORT MACs the report body with AES-128-CMAC under a *report key* that only
EGETKEY inside the target enclave can derive (it mixes a per-CPU secret with the target's own
MRENCLAVE, ATTRIBUTES, MISCSELECT, CONFIGID and CONFIGSVN). Here the per-CPU secret is derived
from the platform seed, so a REPORT made on one simulated platform for one target enclave is
checkable by that enclave alone, and a REPORT forged without the secret is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from confnode.errors import InvalidInput
from confnode.sgx import (
    REPORT_BODY_SIZE,
    REPORT_SIZE,
    Attributes,
    EnclaveReportBody,
    Report,
    TargetInfo,
)
from confnode.sgx.structs import ATTRIBUTE_DEBUG, ATTRIBUTE_INIT, ATTRIBUTE_MODE64BIT

SealPolicy = Literal["mrenclave", "mrsigner"]

#: INIT | MODE64BIT, XFRM x87+SSE: what a freshly initialised production enclave reports.
DEFAULT_ATTRIBUTES = Attributes(flags=ATTRIBUTE_INIT | ATTRIBUTE_MODE64BIT, xfrm=0x3)

# EGETKEY masks attributes before mixing them into seal keys (SDK default: the security-relevant
# flags INIT/DEBUG/MODE64BIT..., ignore XFRM): TSEAL_DEFAULT_FLAGSMASK.
_SEAL_FLAGS_MASK = 0xFF0000000000000B


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


@dataclass(frozen=True, slots=True)
class SimEnclaveIdentity:
    """What SGX measures and records for an enclave (the SECS fields a REPORT carries)."""

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0
    attributes: Attributes = DEFAULT_ATTRIBUTES
    misc_select: int = 0
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_ext_prod_id: bytes = bytes(16)
    isv_family_id: bytes = bytes(16)

    def __post_init__(self) -> None:
        # Building the body validates every field size and range once, up front.
        self.report_body(bytes(16), bytes(64))

    @property
    def debug(self) -> bool:
        return self.attributes.debug

    def target_info(self) -> TargetInfo:
        return TargetInfo(
            mr_enclave=self.mr_enclave,
            attributes=self.attributes,
            config_svn=self.config_svn,
            misc_select=self.misc_select,
            config_id=self.config_id,
        )

    def report_body(self, cpu_svn: bytes, report_data: bytes) -> EnclaveReportBody:
        return EnclaveReportBody(
            cpu_svn=cpu_svn,
            misc_select=self.misc_select,
            isv_ext_prod_id=self.isv_ext_prod_id,
            attributes=self.attributes,
            mr_enclave=self.mr_enclave,
            mr_signer=self.mr_signer,
            config_id=self.config_id,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            config_svn=self.config_svn,
            isv_family_id=self.isv_family_id,
            report_data=report_data,
        )


def with_debug(attributes: Attributes, debug: bool) -> Attributes:
    flags = attributes.flags | ATTRIBUTE_DEBUG if debug else attributes.flags & ~ATTRIBUTE_DEBUG
    return Attributes(flags=flags, xfrm=attributes.xfrm)


@dataclass(frozen=True, slots=True)
class SimCpu:
    """The simulated CPU: its fused secret, its CPUSVN and the current report KEYID."""

    secret: bytes
    cpu_svn: bytes
    report_key_id: bytes
    _key_cache: dict[bytes, bytes] = field(default_factory=dict, compare=False, repr=False)

    def report_key(self, target: TargetInfo, key_id: bytes) -> bytes:
        """EGETKEY(REPORT) as executed inside ``target``: 16 bytes, AES-128-CMAC key."""
        material = b"".join(
            (
                b"REPORT",
                target.mr_enclave,
                target.attributes.to_bytes(),
                target.misc_select.to_bytes(4, "little"),
                target.config_id,
                target.config_svn.to_bytes(2, "little"),
                key_id,
            )
        )
        cached = self._key_cache.get(material)
        if cached is None:
            cached = hmac.new(self.secret, material, hashlib.sha256).digest()[:16]
            if len(self._key_cache) < 4096:
                self._key_cache[material] = cached
        return cached

    def ereport(self, source: SimEnclaveIdentity, target: TargetInfo, report_data: bytes) -> bytes:
        """EREPORT: ``source``'s identity and ``report_data`` MACed for ``target`` (432 bytes)."""
        if len(report_data) > 64:
            raise InvalidInput(f"report_data is {len(report_data)} bytes, expected at most 64")
        body = source.report_body(self.cpu_svn, report_data.ljust(64, b"\0")).to_bytes()
        mac = _cmac(self.report_key(target, self.report_key_id), body)
        return body + self.report_key_id + mac

    def check_report(self, target: TargetInfo, report: bytes) -> bool:
        """``sgx_verify_report`` inside ``target``: does the MAC verify under its report key?"""
        if len(report) != REPORT_SIZE:
            return False
        key_id = report[REPORT_BODY_SIZE : REPORT_BODY_SIZE + 32]
        mac = CMAC(algorithms.AES(self.report_key(target, key_id)))
        mac.update(report[:REPORT_BODY_SIZE])
        try:
            mac.verify(report[REPORT_BODY_SIZE + 32 :])
        except InvalidSignature:
            return False
        return True


class SimEnclave:
    """An enclave on a simulated platform: reports, report checks and seal keys with SGX rules."""

    __slots__ = ("_cpu", "_identity", "_target_info")

    def __init__(self, identity: SimEnclaveIdentity, cpu: SimCpu) -> None:
        self._identity = identity
        self._cpu = cpu
        self._target_info = identity.target_info()

    @property
    def identity(self) -> SimEnclaveIdentity:
        return self._identity

    def target_info(self) -> bytes:
        """This enclave's 512-byte TARGETINFO, for other enclaves to make REPORTs for it."""
        return self._target_info.to_bytes()

    def report(self, target_info: bytes, report_data: bytes = b"") -> bytes:
        """EREPORT: a 432-byte REPORT for the enclave ``target_info`` names.

        ``report_data`` (at most 64 bytes) is zero-padded to 64 bytes, as the SDK's callers do.
        """
        return self._cpu.ereport(self._identity, TargetInfo.parse(target_info), report_data)

    def verify_report(self, report: bytes) -> Report:
        """Accept a REPORT made for *this* enclave on this platform, else raise InvalidInput."""
        if not self._cpu.check_report(self._target_info, report):
            raise InvalidInput(
                "REPORT MAC does not verify: it was not made for this enclave on this platform"
            )
        return Report.parse(report)

    def seal_key(
        self,
        policy: SealPolicy = "mrsigner",
        *,
        key_id: bytes = bytes(32),
        isv_svn: int | None = None,
        cpu_svn: bytes | None = None,
    ) -> bytes:
        """EGETKEY(SEAL): a 16-byte key bound to MRENCLAVE or to MRSIGNER + ISVPRODID.

        As on hardware, a key for an older ISVSVN/CPUSVN can be requested (to unseal old data),
        a newer one cannot.
        """
        ident = self._identity
        svn = ident.isv_svn if isv_svn is None else isv_svn
        cpusvn = self._cpu.cpu_svn if cpu_svn is None else cpu_svn
        if svn > ident.isv_svn:
            raise InvalidInput(
                f"seal key ISVSVN {svn} is above the enclave's ISVSVN {ident.isv_svn}"
            )
        if len(cpusvn) != 16 or any(a > b for a, b in zip(cpusvn, self._cpu.cpu_svn, strict=True)):
            raise InvalidInput("seal key CPUSVN is not at or below the platform's CPUSVN")
        if len(key_id) != 32:
            raise InvalidInput(f"seal key_id is {len(key_id)} bytes, expected 32")
        if policy == "mrenclave":
            measurement = b"MRENCLAVE" + ident.mr_enclave
        elif policy == "mrsigner":
            measurement = b"MRSIGNER" + ident.mr_signer
        else:
            raise InvalidInput(f"seal policy {policy!r}; expected 'mrenclave' or 'mrsigner'")
        flags = ident.attributes.flags & _SEAL_FLAGS_MASK
        material = b"".join(
            (
                b"SEAL",
                measurement,
                ident.isv_prod_id.to_bytes(2, "little"),
                svn.to_bytes(2, "little"),
                cpusvn,
                flags.to_bytes(8, "little"),
                ident.misc_select.to_bytes(4, "little"),
                ident.config_id,
                ident.config_svn.to_bytes(2, "little"),
                ident.isv_family_id,
                ident.isv_ext_prod_id,
                key_id,
            )
        )
        return hmac.new(self._cpu.secret, material, hashlib.sha256).digest()[:16]
