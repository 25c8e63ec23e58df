"""gRPC stubs for the tests' peers (the kubelet, a PodResources server), compiled from our .proto.

confnode itself builds its method tables by hand (it moves pre-serialized bytes), so the stubs are
not checked in; the peers here use protoc's own service code, independent of that hand-built table.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


@cache
def _generated() -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = Path(tempfile.mkdtemp(prefix="confnode-grpc-"))
    atexit.register(shutil.rmtree, out, True)
    written: dict[str, Path] = gen.generate_grpc(out)
    return written


def grpc_module(proto: str) -> ModuleType:
    """The ``_pb2_grpc`` module of ``proto``, e.g. ``confnode/_proto/podresources/v1/api.proto``."""
    path = _generated()[proto]
    name = "test_grpc_" + proto.replace("/", "_").removesuffix(".proto")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deviceplugin_grpc = grpc_module("confnode/_proto/deviceplugin/v1beta1/api.proto")
podresources_grpc = grpc_module("confnode/_proto/podresources/v1/api.proto")
