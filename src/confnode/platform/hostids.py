"""Read the ids :mod:`confnode.platform.access` appraises: a process's, a socket peer's, a device's.

Everything is read below :class:`HostRoots`, so tests hand in fake ``/proc`` and ``/dev`` trees.
Unreadable or malformed data gives ``None`` ("cannot tell"), never an exception.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Iterable

from confnode.platform._errors import HostDataError
from confnode.platform._parse import parse_status_ids
from confnode.platform.access import DeviceAccess, DeviceNode, ProcessIdentity, appraise_access
from confnode.platform.model import HostRoots

__all__ = ["device_access", "device_node", "process_identity", "socket_peer"]

_UCRED = struct.Struct("=iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid


def process_identity(roots: HostRoots, pid: int | str = "self") -> ProcessIdentity | None:
    """The file-access ids of ``pid`` (default: the reading process) from its ``status``."""
    try:
        text = roots.proc_path(str(pid), "status").read_text(encoding="utf-8", errors="replace")
        uid, gid, groups = parse_status_ids(text)
    except (OSError, HostDataError):
        return None
    return ProcessIdentity(uid, gid, groups, pid if isinstance(pid, int) else None)


def device_node(roots: HostRoots, host_path: str) -> DeviceNode | None:
    """Owner and mode of the host device ``host_path``, following symlinks as ``open`` does."""
    try:
        st = os.stat(roots.dev_path(host_path))
    except OSError:
        return None
    return DeviceNode(host_path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def socket_peer(path: str | os.PathLike[str], roots: HostRoots) -> ProcessIdentity | None:
    """Who serves the unix socket ``path``: ``SO_PEERCRED`` of a connection to it.

    The kernel reports the listener's pid (in this process's PID namespace, 0 if not visible),
    uid and gid. When the pid is visible its ``<proc>/<pid>/status`` adds the supplementary
    groups (so ``roots.proc`` must be this process's own procfs, as it is unless a test fakes
    it), else the groups are unknown. The connection is closed without sending anything: aesmd
    and the quote helper drop it as an empty request.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(os.fspath(path))
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError:
            return None
    pid, uid, gid = _UCRED.unpack(raw)
    seen = process_identity(roots, pid) if pid > 0 else None
    return seen if seen is not None else ProcessIdentity(uid, gid, None, pid or None)


def device_access(
    roots: HostRoots, identity: ProcessIdentity, host_paths: Iterable[str]
) -> tuple[DeviceAccess, ...]:
    """Whether ``identity`` can open each of ``host_paths`` that exists as a device node (or, in
    a fake tree, a file): directories such as DCAP's ``/dev/sgx`` are skipped."""
    found = []
    for host_path in host_paths:
        if roots.dev_path(host_path).is_dir():
            continue
        node = device_node(roots, host_path)
        if node is not None:
            found.append(appraise_access(node, identity))
    return tuple(found)
