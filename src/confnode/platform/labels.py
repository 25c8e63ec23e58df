"""Node labels and node-feature-discovery local features derived from an :class:`SgxPlatform`.

Heterogeneous pools need labels to steer enclave pods (AKS documents none). The keys live under
``confnode.io/`` and are documented in ``docs/node-labels.md``; a label whose value the detector
cannot know is omitted rather than guessed, so ``DoesNotExist`` selectors stay meaningful.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from confnode.errors import InvalidInput
from confnode.platform.model import MIB, SgxPlatform

__all__ = [
    "LABEL_KEYS",
    "LABEL_PREFIX",
    "NFD_FEATURES_DIR",
    "NFD_FEATURES_FILE",
    "nfd_features",
    "node_labels",
    "validate_label",
    "write_nfd_features",
]

LABEL_PREFIX = "confnode.io/"

#: Every label key ``node_labels`` can emit, with its meaning (the docs list the same keys).
LABEL_KEYS: dict[str, str] = {
    "confnode.io/sgx": "true when the node can run SGX enclaves, else false",
    "confnode.io/sgx.sgx1": "CPUID.0x12.0:EAX[0], SGX1 instructions",
    "confnode.io/sgx.sgx2": "CPUID.0x12.0:EAX[1], SGX2/EDMM",
    "confnode.io/sgx.flc": "flexible launch control usable (cpuinfo sgx_lc)",
    "confnode.io/sgx.kss": "KSS attribute allowed (CPUID.0x12.1 bit 7)",
    "confnode.io/sgx.aex-notify": "AEX-Notify attribute allowed (CPUID.0x12.1 bit 10)",
    "confnode.io/sgx.driver": "in-kernel, dcap, legacy-isgx or none",
    "confnode.io/sgx.provision": "a provisioning device node exists",
    "confnode.io/sgx.epc-mib": "total EPC in MiB (rounded down)",
    "confnode.io/sgx.epc-numa-nodes": "number of NUMA nodes that have EPC",
    "confnode.io/sgx.aesm": "the AESM / quote-helper socket exists",
    "confnode.io/fsgsbase": "the kernel enabled FSGSBASE for userspace (AT_HWCAP2 bit 1)",
}

#: Where nfd-worker's ``local`` source reads feature files.
NFD_FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
NFD_FEATURES_FILE = NFD_FEATURES_DIR + "/confnode-sgx"

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_label(key: str, value: str) -> None:
    """Reject a label the API server would reject (prefix ≤ 253, name and value ≤ 63 chars)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _PREFIX.match(prefix)):
        raise InvalidInput(f"label key {key!r} has an invalid prefix; expected a DNS subdomain")
    if len(name) > 63 or not _NAME.match(name):
        raise InvalidInput(f"label key {key!r} has an invalid name; expected ≤ 63 [-A-Za-z0-9_.]")
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise InvalidInput(
            f"label value {value!r} for {key} is invalid; expected ≤ 63 alphanumerics, '-', '_', "
            "'.', starting and ending alphanumeric"
        )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def node_labels(platform: SgxPlatform) -> dict[str, str]:
    """The ``confnode.io/`` labels for ``platform``; unknown facts are left out."""
    cpu = platform.cpu
    labels: dict[str, str] = {"confnode.io/sgx": _bool(platform.can_run_enclaves)}
    optional = {
        "confnode.io/sgx.sgx1": cpu.sgx1,
        "confnode.io/sgx.sgx2": cpu.sgx2,
        "confnode.io/sgx.flc": cpu.flc,
        "confnode.io/sgx.kss": cpu.kss,
        "confnode.io/sgx.aex-notify": cpu.aex_notify,
    }
    labels.update({key: _bool(value) for key, value in optional.items() if value is not None})
    labels["confnode.io/sgx.driver"] = str(platform.driver)
    labels["confnode.io/sgx.provision"] = _bool(bool(platform.provision_devices))
    if platform.epc_source != "none" or cpu.sgx is False:
        labels["confnode.io/sgx.epc-mib"] = str(platform.epc_total // MIB)
        labels["confnode.io/sgx.epc-numa-nodes"] = str(len(platform.epc_by_numa))
    labels["confnode.io/sgx.aesm"] = _bool(platform.aesm_socket is not None)
    if platform.fsgsbase_kernel is not None:
        labels["confnode.io/fsgsbase"] = _bool(platform.fsgsbase_kernel)
    for key, value in labels.items():
        validate_label(key, value)
    return labels


def nfd_features(platform: SgxPlatform) -> str:
    """The content of an NFD ``local`` feature file: one ``name=value`` line per label.

    Prefixed names are published as-is by nfd-master (only ``*.kubernetes.io`` prefixes are
    denied by default), so the labels match :func:`node_labels` exactly.
    """
    lines = ["# Written by `confnode doctor --nfd-features-file`; regenerated, do not edit."]
    lines += [f"{key}={value}" for key, value in sorted(node_labels(platform).items())]
    return "\n".join(lines) + "\n"


def write_nfd_features(path: str | os.PathLike[str], platform: SgxPlatform) -> Path:
    """Write :func:`nfd_features` atomically (temp file + rename) so nfd-worker never reads half."""
    target = Path(path)
    text = nfd_features(platform)
    fd, tmp = tempfile.mkstemp(prefix=".confnode-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
