"""Kubelet device-plugin v1beta1 server for SGX EPC, the API-server EPC patcher, and a probe.

Small-EPC nodes advertise one device per MiB with NUMA topology; large-EPC nodes publish EPC
as a node-status extended resource (ADR 0005). Both serve a pool of shared enclave devices, and
the quote-helper socket as the opt-in ``confnode.io/aesm-socket`` pool (ADR 0009).
"""

from __future__ import annotations

from confnode.deviceplugin.agent import (
    DEFAULT_AESM_SOCKET,
    DEFAULT_PLUGIN_DIR,
    KUBELET_SOCKET,
    AgentConfig,
    DevicePluginAgent,
    ResourcePlan,
    foreign_plugin_sockets,
    plan_resources,
    quote_helper_reachable,
)
from confnode.deviceplugin.errors import (
    DevicePluginError,
    NodeStatusPatchError,
    PluginSocketInUse,
    ProbeError,
    ResourceServedElsewhere,
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
from confnode.deviceplugin.kubeconfig import ApiServerConfig, parse_kubeconfig
from confnode.deviceplugin.model import (
    AESM_RESOURCE,
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
    ApiServerNodeStatusPatcher,
    NodePublisher,
    NodeStatusPatcher,
    capacity_json_patch,
    capacity_removal_patch,
    epc_capacity,
    labels_merge_patch,
)
from confnode.deviceplugin.podresources import (
    EpcAllocation,
    GrpcPodResourcesClient,
    PodResourcesSource,
    epc_allocations,
)
from confnode.deviceplugin.probe import ProbeResult, probe_plugin

__all__ = [
    "AESM_RESOURCE",
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
    "ApiServerConfig",
    "ApiServerNodeStatusPatcher",
    "DetectedNode",
    "DevicePathsProbe",
    "DevicePluginAgent",
    "DevicePluginError",
    "DeviceResource",
    "DriverProbe",
    "EpcAllocation",
    "EpcMode",
    "GrpcPodResourcesClient",
    "NodePublisher",
    "NodeStatusPatchError",
    "NodeStatusPatcher",
    "PluginSocketInUse",
    "PodResourcesSource",
    "ProbeError",
    "ProbeResult",
    "ResourceKind",
    "ResourcePlan",
    "ResourceServedElsewhere",
    "SgxNode",
    "UnknownDeviceError",
    "capacity_json_patch",
    "capacity_removal_patch",
    "choose_epc_mode",
    "detect_node",
    "epc_allocations",
    "epc_capacity",
    "foreign_plugin_sockets",
    "labels_merge_patch",
    "node_from_platform",
    "parse_kubeconfig",
    "parse_size",
    "per_unit_list_size",
    "plan_resources",
    "probe_plugin",
    "quote_helper_reachable",
    "simulated_node_labels",
]
