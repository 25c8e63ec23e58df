"""Kubelet device-plugin v1beta1 server for SGX EPC, the API-server EPC patcher, and a probe.

Small-EPC nodes advertise one device per MiB with NUMA topology; large-EPC nodes publish EPC
as a node-status extended resource and serve a pool of shared enclave devices (ADR 0005).
"""

from __future__ import annotations

from confnode.deviceplugin.agent import (
    DEFAULT_AESM_SOCKET,
    DEFAULT_PLUGIN_DIR,
    KUBELET_SOCKET,
    AgentConfig,
    DevicePluginAgent,
    ResourcePlan,
    plan_resources,
    quote_helper_reachable,
)
from confnode.deviceplugin.errors import (
    DevicePluginError,
    NodeStatusPatchError,
    PluginSocketInUse,
    ProbeError,
    UnknownDeviceError,
)
from confnode.deviceplugin.inventory import (
    AlwaysPresent,
    DetectedNode,
    DevicePathsProbe,
    DriverProbe,
    detect_node,
    node_from_platform,
    simulated_node_labels,
)
from confnode.deviceplugin.model import (
    AKS_EPC_RESOURCE,
    ENCLAVE_RESOURCE,
    INTEL_EPC_RESOURCE,
    KUBELET_MAX_MESSAGE_BYTES,
    MIB,
    PROVISION_RESOURCE,
    DeviceResource,
    EpcMode,
    ResourceKind,
    SgxNode,
    choose_epc_mode,
    parse_size,
    per_unit_list_size,
)
from confnode.deviceplugin.nodestatus import (
    InClusterNodeStatusPatcher,
    NodePublisher,
    NodeStatusPatcher,
    capacity_json_patch,
    epc_capacity,
    labels_merge_patch,
)
from confnode.deviceplugin.podresources import (
    ContainerAssignment,
    EpcAllocation,
    GrpcPodResourcesClient,
    PodResourcesSource,
    epc_allocations,
)
from confnode.deviceplugin.probe import ProbeResult, probe_plugin

__all__ = [
    "AKS_EPC_RESOURCE",
    "DEFAULT_AESM_SOCKET",
    "DEFAULT_PLUGIN_DIR",
    "ENCLAVE_RESOURCE",
    "INTEL_EPC_RESOURCE",
    "KUBELET_MAX_MESSAGE_BYTES",
    "KUBELET_SOCKET",
    "MIB",
    "PROVISION_RESOURCE",
    "AgentConfig",
    "AlwaysPresent",
    "ContainerAssignment",
    "DetectedNode",
    "DevicePathsProbe",
    "DevicePluginAgent",
    "DevicePluginError",
    "DeviceResource",
    "DriverProbe",
    "EpcAllocation",
    "EpcMode",
    "GrpcPodResourcesClient",
    "InClusterNodeStatusPatcher",
    "NodePublisher",
    "NodeStatusPatchError",
    "NodeStatusPatcher",
    "PluginSocketInUse",
    "PodResourcesSource",
    "ProbeError",
    "ProbeResult",
    "ResourceKind",
    "ResourcePlan",
    "SgxNode",
    "UnknownDeviceError",
    "capacity_json_patch",
    "choose_epc_mode",
    "detect_node",
    "epc_allocations",
    "epc_capacity",
    "labels_merge_patch",
    "node_from_platform",
    "parse_size",
    "per_unit_list_size",
    "plan_resources",
    "probe_plugin",
    "quote_helper_reachable",
    "simulated_node_labels",
]
