"""Can a process open an SGX device node read-write? Its ids against the node's owner and mode.

Linux creates ``/dev/sgx_enclave`` and ``/dev/sgx_provision`` root-owned and 0600; Intel's udev
rules make them 0666 and root:sgx_prv 0660. A container runtime passes device nodes into a pod
with the host's owner and mode unless ``device_ownership_from_security_context`` is on, so a
non-root quote helper often cannot open them, and DCAP then fails quotes with codes that do not
say why. This module only appraises; :mod:`confnode.platform.hostids` reads ids and modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Access",
    "DeviceAccess",
    "DeviceNode",
    "ProcessIdentity",
    "access_fix",
    "appraise_access",
]

_RW = 0o6


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """The ids the kernel checks a process's file access with.

    ``groups`` is ``None`` when the supplementary groups cannot be seen (a socket peer in another
    PID namespace gives its uid and gid only).
    """

    uid: int
    gid: int
    groups: frozenset[int] | None = frozenset()
    pid: int | None = None

    def describe(self) -> str:
        if self.groups is None:
            groups = "supplementary groups not visible"
        elif self.groups:
            groups = "groups " + ",".join(str(g) for g in sorted(self.groups))
        else:
            groups = "no supplementary groups"
        who = f"uid {self.uid}, gid {self.gid}, {groups}"
        return f"pid {self.pid}: {who}" if self.pid else who


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A device node's host path, owner and permission bits (``st_mode & 0o7777``)."""

    path: str
    uid: int
    gid: int
    mode: int

    def describe(self) -> str:
        return f"{self.path} (owner {self.uid}:{self.gid}, mode {self.mode:04o})"


class Access(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    #: Only membership of the device's group would allow it, and the groups are not visible.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    device: DeviceNode
    identity: ProcessIdentity
    access: Access
    #: The permission class that decided: "root", "owner", "group" or "others".
    via: str

    def describe(self, who: str) -> str:
        """One line saying whether ``who`` (e.g. "the quote helper") can open the device."""
        verb = {
            Access.ALLOWED: "can",
            Access.DENIED: "cannot",
            Access.UNKNOWN: "may not be able to",
        }[self.access]
        return f"{who} ({self.identity.describe()}) {verb} open {self.device.describe()} read-write"


def appraise_access(device: DeviceNode, identity: ProcessIdentity) -> DeviceAccess:
    """Linux's discretionary check for ``open(O_RDWR)``: the first matching class decides.

    uid 0 passes (CAP_DAC_OVERRIDE, which runtimes grant root by default; a root without it
    still owns the usual root-owned nodes). ACLs and LSMs are not modelled: device nodes have
    none by default, and an LSM denial is not a permission-bit problem.
    """
    if identity.uid == 0:
        return DeviceAccess(device, identity, Access.ALLOWED, "root")
    if identity.uid == device.uid:
        via, bits = "owner", device.mode >> 6
    elif identity.gid == device.gid or (
        identity.groups is not None and device.gid in identity.groups
    ):
        via, bits = "group", device.mode >> 3
    elif identity.groups is None and (device.mode >> 3) & _RW == _RW:
        # Membership of the device's group would allow it; whether the process has it is unknown.
        return DeviceAccess(device, identity, Access.UNKNOWN, "group")
    else:
        via, bits = "others", device.mode
    return DeviceAccess(
        device, identity, Access.ALLOWED if bits & _RW == _RW else Access.DENIED, via
    )


_RUNTIME_FIX = (
    "set device_ownership_from_security_context = true in the container runtime (containerd's "
    "CRI plugin config, or CRI-O's [crio.runtime]) so device nodes are given to the pod's "
    "runAsUser/runAsGroup"
)


def access_fix(device: DeviceNode) -> str:
    """What to change so a non-root pod can open ``device``."""
    if (device.mode >> 3) & _RW == _RW:
        return (
            f"add gid {device.gid} (the device's group, which has read-write) to the pod's "
            f"securityContext.supplementalGroups (on a host: add the user to that group), "
            f"or {_RUNTIME_FIX}"
        )
    return (
        f"{_RUNTIME_FIX}; supplementalGroups cannot help while the device's group has no "
        f"read-write (mode {device.mode:04o}), unless a host udev rule makes it group-writable "
        '(KERNEL=="sgx_provision", GROUP="sgx_prv", MODE="0660")'
    )
