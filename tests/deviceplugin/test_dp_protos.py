"""The checked-in generated code matches the protos, and the protos match upstream's wire names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from confnode._proto.deviceplugin.v1beta1 import api_pb2 as dp
from confnode._proto.podresources.v1 import api_pb2 as pr

REPO = Path(__file__).resolve().parents[2]
OURS = (
    "confnode/_proto/deviceplugin/v1beta1/api.proto",
    "confnode/_proto/podresources/v1/api.proto",
)


def _gen_protos():
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerated_code_is_byte_identical(tmp_path: Path) -> None:
    gen = _gen_protos()
    src = REPO / "src"
    written = gen.generate(out=tmp_path, src=src)
    compared = 0
    for path in written:
        rel = path.relative_to(tmp_path)
        if str(rel.parent / "api.proto") not in OURS:
            continue
        assert (src / rel).read_bytes() == path.read_bytes(), f"{rel} is stale: run gen_protos.py"
        compared += 1
    assert compared == 4  # _pb2.py and _pb2.pyi for both protos
    for proto in OURS:
        assert (src / proto).parent.joinpath("__init__.py").is_file()
        # Service stubs are generated for the tests' peers only, never checked in.
        assert not (src / proto).parent.joinpath("api_pb2_grpc.py").exists()


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ("RegisterRequest", {"version": 1, "endpoint": 2, "resource_name": 3, "options": 4}),
        (
            "DevicePluginOptions",
            {"pre_start_required": 1, "get_preferred_allocation_available": 2},
        ),
        ("Device", {"ID": 1, "health": 2, "topology": 3}),
        ("NUMANode", {"ID": 1}),
        (
            "ContainerPreferredAllocationRequest",
            {"available_deviceIDs": 1, "must_include_deviceIDs": 2, "allocation_size": 3},
        ),
        (
            "ContainerAllocateResponse",
            {"envs": 1, "mounts": 2, "devices": 3, "annotations": 4, "cdi_devices": 5},
        ),
        ("Mount", {"container_path": 1, "host_path": 2, "read_only": 3}),
        ("DeviceSpec", {"container_path": 1, "host_path": 2, "permissions": 3}),
    ],
)
def test_device_plugin_field_numbers(message: str, fields: dict[str, int]) -> None:
    descriptor = dp.DESCRIPTOR.message_types_by_name[message]
    assert {f.name: f.number for f in descriptor.fields} == fields


def test_rpc_paths_keep_upstream_packages() -> None:
    assert dp.DESCRIPTOR.package == "v1beta1"
    assert pr.DESCRIPTOR.package == "v1"
    plugin = dp.DESCRIPTOR.services_by_name["DevicePlugin"]
    assert [m.name for m in plugin.methods] == [
        "GetDevicePluginOptions",
        "ListAndWatch",
        "GetPreferredAllocation",
        "Allocate",
        "PreStartContainer",
    ]
    assert plugin.methods_by_name["ListAndWatch"].server_streaming
    assert dp.DESCRIPTOR.services_by_name["Registration"].full_name == "v1beta1.Registration"
    lister = pr.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert lister.full_name == "v1.PodResourcesLister"
    devices = pr.DESCRIPTOR.message_types_by_name["ContainerDevices"]
    assert {f.name: f.number for f in devices.fields} == {
        "resource_name": 1,
        "device_ids": 2,
        "topology": 3,
    }
    dynamic = pr.DESCRIPTOR.message_types_by_name["DynamicResource"]
    assert 1 not in {f.number for f in dynamic.fields}  # class_name, removed upstream
