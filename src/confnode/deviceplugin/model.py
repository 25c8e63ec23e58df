"""The pure half of the device plugin: resources, device lists, Allocate payloads, preferences.

Nothing here touches sockets or files: the server feeds in what the host looks like
(:class:`SgxNode`) and what exists at call time (the quote-helper directory), and gets protobuf
messages back. That keeps every kubelet-visible decision testable without gRPC.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from confnode._proto.deviceplugin.v1beta1 import api_pb2
from confnode.deviceplugin.errors import UnknownDeviceError
from confnode.errors import InvalidInput

__all__ = [
    "AESM_CONTAINER_DIR",
    "AESM_RESOURCE",
    "AKS_EPC_RESOURCE",
    "API_VERSION",
    "DEFAULT_LIST_BUDGET_BYTES",
    "ENCLAVE_RESOURCE",
    "HEALTHY",
    "INTEL_EPC_RESOURCE",
    "KUBELET_MAX_MESSAGE_BYTES",
    "MIB",
    "PROVISION_RESOURCE",
    "UNHEALTHY",
    "DeviceResource",
    "EpcMode",
    "ResourceKind",
    "SgxNode",
    "choose_epc_mode",
    "epc_unit_bytes",
    "parse_size",
    "per_unit_list_size",
    "socket_name",
]

MIB = 1 << 20
#: The kubelet dials plugins with gRPC's default 4 MiB receive limit; one ListAndWatchResponse
#: larger than this is rejected ("received message larger than max").
KUBELET_MAX_MESSAGE_BYTES = 4 * MIB
#: Per-unit EPC devices are used only while the worst-case list stays under half the limit.
DEFAULT_LIST_BUDGET_BYTES = KUBELET_MAX_MESSAGE_BYTES // 2

API_VERSION = "v1beta1"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"

AKS_EPC_RESOURCE = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
INTEL_EPC_RESOURCE = "sgx.intel.com/epc"
ENCLAVE_RESOURCE = "sgx.intel.com/enclave"
PROVISION_RESOURCE = "sgx.intel.com/provision"
#: The out-of-process quoting opt-in (ADR 0009): the webhook adds it to the SGX containers of
#: pods annotated ``confnode.io/aesm-socket: "true"``; its Allocate alone mounts the socket.
AESM_RESOURCE = "confnode.io/aesm-socket"

#: In-container directory of the quote-helper (aesmd) socket; libsgx-quote-ex hard-codes it.
AESM_CONTAINER_DIR = "/var/run/aesmd"
_ENCLAVE_NODE = "/dev/sgx_enclave"
_PROVISION_NODE = "/dev/sgx_provision"
#: Paths older SDK/PSW versions open; mapped to the in-kernel node when only that exists.
_LEGACY_ALIASES = {_ENCLAVE_NODE: "/dev/sgx/enclave", _PROVISION_NODE: "/dev/sgx/provision"}

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGTP]i?)?B?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """Parse ``28MiB``, ``256Gi``, ``1TiB`` or a plain byte count (binary units only).

    EPC sizes are powers of two in every public source, so ``G`` means GiB here too.
    """
    match = _SIZE.match(text)
    if match is None:
        raise InvalidInput(
            f"size {text!r} is not a byte count with an optional binary unit",
            hint="write e.g. 28MiB, 256GiB or 1TiB",
        )
    unit = (match.group(2) or "")[:1].lower()
    return int(match.group(1)) * _SIZE_FACTORS[unit]


def epc_unit_bytes(resource_name: str) -> int:
    """Bytes per unit of an EPC resource: Intel's name counts bytes, every other name MiB."""
    return 1 if resource_name == INTEL_EPC_RESOURCE else MIB


def socket_name(resource_name: str) -> str:
    """Plugin socket file name for a resource, e.g. ``confnode-sgx.intel.com-enclave.sock``."""
    return "confnode-" + resource_name.replace("/", "-") + ".sock"


class EpcMode(StrEnum):
    """How EPC reaches the scheduler (ADR 0005)."""

    #: One device per unit through ListAndWatch, with NUMA topology (small EPC).
    DEVICES = "devices"
    #: EPC as a node-status extended resource patched through the API server, plus shared
    #: enclave devices through the plugin (large EPC, or a byte-counted resource name).
    NODE_STATUS = "node-status"


class ResourceKind(StrEnum):
    EPC = "epc"
    ENCLAVE = "enclave"
    PROVISION = "provision"
    #: The quote-helper socket (``confnode.io/aesm-socket``), not a device node.
    AESM = "aesm"


@dataclass(frozen=True, slots=True)
class SgxNode:
    """What the plugin needs to know about the host, as host paths (no root prefix)."""

    #: ``(numa_node, bytes)`` pairs sorted by node.
    epc_by_numa: tuple[tuple[int, int], ...]
    #: Host enclave device nodes that exist, in the SGX runtime's probe order.
    enclave_devices: tuple[str, ...] = ()
    provision_devices: tuple[str, ...] = ()
    #: Simulation: no device nodes are handed out, containers get ``SGX_MODE=SIM``.
    simulated: bool = False

    @classmethod
    def from_numa_map(
        cls,
        epc_by_numa: Mapping[int, int],
        enclave_devices: Iterable[str] = (),
        provision_devices: Iterable[str] = (),
        *,
        simulated: bool = False,
    ) -> SgxNode:
        return cls(
            epc_by_numa=tuple(sorted((int(n), int(b)) for n, b in epc_by_numa.items())),
            enclave_devices=tuple(enclave_devices),
            provision_devices=tuple(provision_devices),
            simulated=simulated,
        )

    @classmethod
    def simulated_node(cls, epc_bytes: int, numa_nodes: int = 1) -> SgxNode:
        """A node with ``epc_bytes`` of EPC split evenly (in whole MiB) over ``numa_nodes``."""
        if epc_bytes < MIB or numa_nodes < 1:
            raise InvalidInput(
                f"simulated EPC of {epc_bytes} bytes over {numa_nodes} NUMA node(s); "
                "expected at least 1 MiB and one node"
            )
        per_node = (epc_bytes // MIB // numa_nodes) * MIB
        sizes = {n: per_node for n in range(numa_nodes)}
        sizes[numa_nodes - 1] += epc_bytes - per_node * numa_nodes
        return cls.from_numa_map(sizes, simulated=True)

    @property
    def epc_total(self) -> int:
        return sum(size for _, size in self.epc_by_numa)

    @property
    def multi_numa(self) -> bool:
        return sum(1 for _, size in self.epc_by_numa if size > 0) > 1


def _varint_len(value: int) -> int:
    length = 1
    while value >= 0x80:
        value >>= 7
        length += 1
    return length


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _topology_field(numa: int) -> bytes:
    """``Device.topology`` (field 3) = TopologyInfo{nodes: [NUMANode{ID: numa}]}."""
    node = b"" if numa == 0 else b"\x08" + _varint(numa)
    info = b"\x0a" + _varint(len(node)) + node
    return b"\x1a" + _varint(len(info)) + info


def _device_entry_size(id_len: int, health: str, numa: int | None) -> int:
    """Wire bytes of one ``Device`` inside ``ListAndWatchResponse`` (incl. tag and length)."""
    inner = 2 + id_len + 2 + len(health)
    if numa is not None:
        node = 0 if numa == 0 else 1 + _varint_len(numa)
        topology = 2 + node  # TopologyInfo.nodes entry
        inner += 1 + _varint_len(topology) + topology
    return 1 + _varint_len(inner) + inner


def _range_size(start: int, end: int, health: str, numa: int | None) -> int:
    """Wire bytes of devices with decimal IDs ``start … end-1``, grouped by ID length."""
    total = 0
    low, digits = start, 1
    while low < end:
        high = min(end, 10**digits)
        if high > low:
            total += (high - low) * _device_entry_size(digits, health, numa)
            low = high
        digits += 1
    return total


def per_unit_list_size(
    units_by_numa: Sequence[tuple[int, int]], *, health: str = UNHEALTHY, topology: bool
) -> int:
    """Exact size of a per-unit ListAndWatchResponse with decimal IDs ``0 … N-1``.

    Computed, not built, so the mode decision costs nothing even for 1 TiB of EPC.
    """
    total = 0
    start = 0
    for numa, count in units_by_numa:
        total += _range_size(start, start + count, health, numa if topology else None)
        start += count
    return total


def _units_by_numa(node: SgxNode, unit: int) -> tuple[tuple[int, int], ...]:
    return tuple((numa, size // unit) for numa, size in node.epc_by_numa if size // unit > 0)


def choose_epc_mode(
    node: SgxNode, resource_name: str, *, budget_bytes: int = DEFAULT_LIST_BUDGET_BYTES
) -> EpcMode:
    """Per-unit devices while the worst-case list (all unhealthy) fits the budget, else node status.

    A byte-counted resource can never be a device per unit, so it always goes to node status.
    """
    unit = epc_unit_bytes(resource_name)
    if unit == 1:
        return EpcMode.NODE_STATUS
    size = per_unit_list_size(
        _units_by_numa(node, unit), health=UNHEALTHY, topology=node.multi_numa
    )
    return EpcMode.DEVICES if size <= budget_bytes else EpcMode.NODE_STATUS


@dataclass(frozen=True, slots=True)
class DeviceResource:
    """One extended resource served by one plugin socket.

    ``EPC`` resources have one device per unit with decimal IDs laid out NUMA node by NUMA node;
    ``ENCLAVE``/``PROVISION``/``AESM`` are shared pools (``enclave-<i>``) without topology.
    """

    kind: ResourceKind
    name: str
    node: SgxNode
    count: int
    #: For EPC: ``(first_id, numa_node)`` per NUMA range, ascending.
    _ranges: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    _topology: bool = field(default=False, repr=False)
    #: For AESM: the host directory of the quote-helper socket.
    aesm_host_dir: str | None = None

    @classmethod
    def epc(cls, node: SgxNode, name: str = AKS_EPC_RESOURCE) -> DeviceResource:
        unit = epc_unit_bytes(name)
        if unit == 1:
            raise InvalidInput(
                f"resource {name} counts bytes; expected a per-MiB resource for EPC devices",
                hint="byte-counted EPC is published through node status (--epc-mode node-status)",
            )
        ranges: list[tuple[int, int]] = []
        start = 0
        for numa, count in _units_by_numa(node, unit):
            ranges.append((start, numa))
            start += count
        return cls(ResourceKind.EPC, name, node, start, tuple(ranges), node.multi_numa)

    @classmethod
    def pool(cls, kind: ResourceKind, node: SgxNode, name: str, count: int) -> DeviceResource:
        if kind not in (ResourceKind.ENCLAVE, ResourceKind.PROVISION) or count < 1:
            raise InvalidInput(f"a {kind} pool of {count} devices; expected enclave/provision ≥ 1")
        return cls(kind, name, node, count)

    @classmethod
    def aesm(cls, node: SgxNode, name: str, count: int, host_dir: str) -> DeviceResource:
        if count < 1:
            raise InvalidInput(f"an AESM socket pool of {count} devices; expected ≥ 1")
        return cls(ResourceKind.AESM, name, node, count, aesm_host_dir=host_dir)

    @property
    def unit_bytes(self) -> int:
        return epc_unit_bytes(self.name) if self.kind is ResourceKind.EPC else 0

    @property
    def prefers_allocation(self) -> bool:
        """GetPreferredAllocation only helps where devices differ (NUMA)."""
        return self._topology

    def device_ids(self) -> list[str]:
        if self.kind is ResourceKind.EPC:
            return [str(i) for i in range(self.count)]
        return [f"{self.kind}-{i}" for i in range(self.count)]

    def numa_of(self, device_id: str) -> int | None:
        if not self._topology:
            return None
        index = self._index(device_id)
        pos = bisect.bisect_right(self._ranges, (index, 1 << 62)) - 1
        return self._ranges[pos][1]

    def _index(self, device_id: str) -> int:
        prefix = "" if self.kind is ResourceKind.EPC else f"{self.kind}-"
        digits = device_id[len(prefix) :] if device_id.startswith(prefix) else ""
        # ASCII only: str.isdigit() also accepts "²" and other digits int() rejects or maps.
        # Longer than the largest ID cannot be ours (and int() refuses > 4300 digits).
        if (
            digits.isascii()
            and digits.isdigit()
            and len(digits) <= len(str(self.count))
            and (len(digits) == 1 or digits[0] != "0")
        ):
            index = int(digits)
            if index < self.count:
                return index
        raise UnknownDeviceError(
            f"device ID {device_id[:70]!r} is not one of the {self.count} devices of {self.name}"
        )

    def list_size(self, *, healthy: bool) -> int:
        """Wire size of :meth:`list_response`, computed without building it."""
        health = HEALTHY if healthy else UNHEALTHY
        if self.kind is not ResourceKind.EPC:
            return sum(_device_entry_size(len(d), health, None) for d in self.device_ids())
        bounds = [start for start, _ in self._ranges[1:]] + [self.count]
        return sum(
            _range_size(start, end, health, numa if self._topology else None)
            for (start, numa), end in zip(self._ranges, bounds, strict=True)
        )

    def list_response(self, *, healthy: bool) -> api_pb2.ListAndWatchResponse:
        """The full device list as a message; the server sends :meth:`list_bytes` instead."""
        health = HEALTHY if healthy else UNHEALTHY
        response = api_pb2.ListAndWatchResponse()
        if not self._topology:
            response.devices.extend(
                api_pb2.Device(ID=device_id, health=health) for device_id in self.device_ids()
            )
            return response
        bounds = [start for start, _ in self._ranges[1:]] + [self.count]
        for (start, numa), end in zip(self._ranges, bounds, strict=True):
            topology = api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=numa)])
            response.devices.extend(
                api_pb2.Device(ID=str(i), health=health, topology=topology)
                for i in range(start, end)
            )
        return response

    def list_bytes(self, *, healthy: bool) -> bytes:
        """:meth:`list_response` already serialized, encoded directly.

        Byte-identical to ``list_response(...).SerializeToString()``, twice as fast to build, and
        the plugin keeps 1.6 MB of bytes at 64 GiB instead of ≈ 10 MB of message objects.
        """
        health = (HEALTHY if healthy else UNHEALTHY).encode()
        health_field = b"\x12" + _varint(len(health)) + health
        prefix = "" if self.kind is ResourceKind.EPC else f"{self.kind}-"
        bounds = [start for start, _ in self._ranges[1:]] + [self.count]
        ranges = zip(self._ranges, bounds, strict=True) if self._ranges else [((0, 0), self.count)]
        parts: list[bytes] = []
        for (start, numa), end in ranges:
            tail = health_field + (_topology_field(numa) if self._topology else b"")
            for i in range(start, end):
                device_id = f"{prefix}{i}".encode()
                inner = b"\x0a" + _varint(len(device_id)) + device_id + tail
                parts.append(b"\x0a" + _varint(len(inner)) + inner)
        return b"".join(parts)

    def options(self) -> api_pb2.DevicePluginOptions:
        return api_pb2.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=self.prefers_allocation
        )

    def allocate(self, device_ids: Sequence[str]) -> api_pb2.ContainerAllocateResponse:
        """What one container gets for its devices of this resource.

        EPC, enclave and provision hand out device nodes only. The quote-helper socket directory
        and ``SGX_AESM_ADDR=1`` come from the AESM resource alone, because the variable switches
        the DCAP library and Open Enclave to out-of-process quoting: a pod gets it only by opting
        in (ADR 0009), and the quote helper itself never does.
        Raises :class:`UnknownDeviceError` for IDs this resource never advertised.
        """
        for device_id in device_ids:
            self._index(device_id)
        response = api_pb2.ContainerAllocateResponse()
        if self.kind is ResourceKind.AESM:
            assert self.aesm_host_dir is not None
            response.mounts.append(
                api_pb2.Mount(
                    container_path=AESM_CONTAINER_DIR, host_path=self.aesm_host_dir, read_only=True
                )
            )
            response.envs["SGX_AESM_ADDR"] = "1"
            return response
        if self.node.simulated:
            response.envs["SGX_MODE"] = "SIM"
        elif self.kind is ResourceKind.PROVISION:
            response.devices.extend(_device_specs(self.node.provision_devices))
        else:
            response.devices.extend(_device_specs(self.node.enclave_devices))
        if self.kind is ResourceKind.EPC:
            allocated = len(set(device_ids)) * self.unit_bytes
            response.envs["SGX_EPC_MIB"] = str(allocated // MIB)
        return response

    def preferred(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        """Pick ``size`` devices, on one NUMA node when one node can hold them (best fit)."""
        must = list(dict.fromkeys(must_include))
        for device_id in must:
            self._index(device_id)
        if size <= len(must):
            return must[: max(size, 0)]
        chosen = set(must)
        pool = sorted(
            (d for d in dict.fromkeys(available) if d not in chosen and self._known(d)),
            key=self._index,
        )
        need = size - len(must)
        if not self._topology:
            return must + pool[:need]
        by_node: dict[int, list[str]] = {}
        for device_id in pool:
            by_node.setdefault(self.numa_of(device_id) or 0, []).append(device_id)
        must_nodes = {self.numa_of(d) or 0 for d in must}
        fits = [n for n, ids in by_node.items() if len(ids) >= need and must_nodes <= {n}]
        if fits:
            best = min(fits, key=lambda n: (len(by_node[n]), n))
            return must + by_node[best][:need]
        order = sorted(by_node, key=lambda n: (n not in must_nodes, -len(by_node[n]), n))
        result = list(must)
        for n in order:
            result.extend(by_node[n][: size - len(result)])
            if len(result) >= size:
                break
        return result

    def _known(self, device_id: str) -> bool:
        try:
            self._index(device_id)
        except UnknownDeviceError:
            return False
        return True


def _device_specs(host_paths: Sequence[str]) -> list[api_pb2.DeviceSpec]:
    specs = [
        api_pb2.DeviceSpec(container_path=path, host_path=path, permissions="rw")
        for path in host_paths
    ]
    present = set(host_paths)
    for path in host_paths:
        alias = _LEGACY_ALIASES.get(path)
        if alias is not None and alias not in present:
            specs.append(api_pb2.DeviceSpec(container_path=alias, host_path=path, permissions="rw"))
            present.add(alias)
    return specs
