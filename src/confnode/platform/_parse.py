"""Pure parsers for the host files detection reads; each accepts any input without crashing."""

from __future__ import annotations

import re
import struct

from confnode.platform._errors import HostDataError

__all__ = [
    "AT_HWCAP2",
    "HWCAP2_FSGSBASE",
    "parse_auxv",
    "parse_cpuinfo_flags",
    "parse_kernel_config",
    "parse_kernel_version",
    "parse_status_ids",
    "parse_sysfs_bytes",
]

#: ``AT_HWCAP2`` auxv key and its FSGSBASE bit (``arch/x86/include/uapi/asm/hwcap2.h``).
AT_HWCAP2 = 26
HWCAP2_FSGSBASE = 1 << 1

_FLAGS_LINE = re.compile(r"^flags\s*:(.*)$", re.MULTILINE)


def parse_cpuinfo_flags(text: str) -> frozenset[str]:
    """Flags present on *every* logical CPU in ``/proc/cpuinfo`` (empty when there are none).

    Intersecting matters on hosts where the kernel cleared a feature on some CPUs only: a feature
    that is missing anywhere cannot be relied on by a process the scheduler may move.
    """
    common: frozenset[str] | None = None
    for match in _FLAGS_LINE.finditer(text):
        flags = frozenset(match.group(1).split())
        common = flags if common is None else common & flags
    return common or frozenset()


def parse_auxv(data: bytes, word_size: int = 8) -> dict[int, int]:
    """Decode an ELF auxiliary vector (``/proc/<pid>/auxv``): native-endian (type, value) pairs.

    Stops at ``AT_NULL``. The first entry of a type wins, as with ``getauxval``. A vector that ends
    inside an entry, or without ``AT_NULL`` and not on an entry boundary, is rejected.
    """
    if word_size not in (4, 8):
        raise HostDataError(f"auxv word size {word_size} is not supported; expected 4 or 8")
    entry = 2 * word_size
    fmt = "=" + ("QQ" if word_size == 8 else "II")
    result: dict[int, int] = {}
    for offset in range(0, len(data) - len(data) % entry, entry):
        key, value = struct.unpack_from(fmt, data, offset)
        if key == 0:
            return result
        result.setdefault(key, value)
    if len(data) % entry:
        raise HostDataError(
            f"auxv is {len(data)} bytes, not a whole number of {entry}-byte entries, "
            "and has no AT_NULL terminator"
        )
    return result


def parse_sysfs_bytes(text: str, what: str = "sgx_total_bytes") -> int:
    """A sysfs decimal byte count such as ``sgx_total_bytes`` (one unsigned integer, newline)."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise HostDataError(f"{what} is {text[:40]!r}; expected a decimal byte count")
    number = int(value)
    if number >= 1 << 64:
        raise HostDataError(f"{what} is {number}, larger than a 64-bit byte count")
    return number


_CONFIG_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_CONFIG_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_kernel_config(text: str) -> dict[str, str]:
    """A kernel ``.config``: ``CONFIG_X=value`` lines, and ``# CONFIG_X is not set`` as ``"n"``."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _CONFIG_SET.match(line):
            config[match.group(1)] = match.group(2).strip().strip('"')
        elif match := _CONFIG_UNSET.match(line):
            config[match.group(1)] = "n"
    return config


_VERSION = re.compile(r"^\s*(\d{1,4})\.(\d{1,4})")


def parse_kernel_version(release: str) -> tuple[int, int] | None:
    """``(major, minor)`` from a release string like ``6.8.0-1015-azure``; ``None`` if absent."""
    match = _VERSION.match(release)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


_ID_LINE = re.compile(r"^(Uid|Gid|Groups):(.*)$", re.MULTILINE)
_MAX_ID = 0xFFFFFFFF


def _ids(line: str, what: str) -> list[int]:
    fields = line.split()
    if not all(f.isascii() and f.isdigit() and int(f) <= _MAX_ID for f in fields):
        raise HostDataError(f"{what} line {line.strip()[:60]!r}: expected 32-bit decimal ids")
    return [int(f) for f in fields]


def parse_status_ids(text: str) -> tuple[int, int, frozenset[int]]:
    """Effective uid, effective gid and supplementary groups from ``/proc/<pid>/status``.

    ``Uid:``/``Gid:`` list real, effective, saved and filesystem ids; the kernel checks file
    access with the filesystem ids, which equal the effective ones unless ``setfsuid`` was used,
    so the fourth column is taken (the second when only two are given).
    """
    found: dict[str, list[int]] = {}
    for match in _ID_LINE.finditer(text):
        found.setdefault(match.group(1), _ids(match.group(2), match.group(1)))
    for key in ("Uid", "Gid"):
        if key not in found or len(found[key]) < 2:
            raise HostDataError(f"process status has no {key}: line with at least two ids")
    uids, gids = found["Uid"], found["Gid"]
    fs_uid = uids[3] if len(uids) >= 4 else uids[1]
    fs_gid = gids[3] if len(gids) >= 4 else gids[1]
    return fs_uid, fs_gid, frozenset(found.get("Groups", ()))
