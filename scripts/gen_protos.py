"""Regenerate the checked-in protobuf modules under ``src/confnode/_proto``.

Every ``.proto`` file under ``src/confnode/_proto`` is compiled with ``src`` as both include
root and output directory, so the generated imports are package-qualified
(``confnode._proto.deviceplugin.v1beta1.api_pb2``) while the proto packages (``v1beta1``, ``v1``,
``aesm.message``) and therefore the wire names stay upstream's.

gRPC service stubs (``_pb2_grpc.py``) are not checked in: confnode's own server and clients build
their method tables from the generated messages because they move pre-serialized bytes
(ListAndWatch is encoded once per health change; the probe measures the raw message).
:func:`generate_grpc` writes the stubs for the tests' peers — a kubelet and a PodResources
server written from the public definition — into a temporary directory.

Usage: ``.venv/bin/python scripts/gen_protos.py [--out DIR]`` (DIR defaults to ``src``; tests
generate into a temporary directory and compare the bytes with the committed files).
The generated code is pinned to grpcio-tools' protoc: bump ``grpcio``/``protobuf`` lower bounds
in pyproject.toml whenever the generator version changes.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parent.parent / "src"
PROTO_ROOT = SRC / "confnode" / "_proto"
_SERVICE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)
_WELL_KNOWN = resources.files("grpc_tools") / "_proto"


def proto_files(src: Path = SRC) -> list[Path]:
    """All ``.proto`` files under ``<src>/confnode/_proto``, sorted for reproducible runs."""
    return sorted((src / "confnode" / "_proto").rglob("*.proto"))


def generated_names(proto: Path) -> list[str]:
    """File names protoc writes next to ``proto`` (relative to the proto's directory)."""
    return [f"{proto.stem}_pb2.py", f"{proto.stem}_pb2.pyi"]


def _protoc(args: list[str], rel: Path) -> None:
    code = protoc.main(["grpc_tools.protoc", *args, str(rel)])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {rel}")


def generate(out: Path = SRC, src: Path = SRC) -> list[Path]:
    """Compile every proto under ``src`` into ``out``; return the generated files."""
    written: list[Path] = []
    for proto in proto_files(src):
        rel = proto.relative_to(src)
        (out / rel.parent).mkdir(parents=True, exist_ok=True)
        _protoc([f"-I{src}", f"-I{_WELL_KNOWN}", f"--python_out={out}", f"--pyi_out={out}"], rel)
        written.extend(out / rel.parent / name for name in generated_names(proto))
    if out == src:
        _ensure_packages(src)
    return written


def generate_grpc(out: Path, src: Path = SRC) -> dict[str, Path]:
    """gRPC stubs for every proto that declares a service, keyed by the proto's path under src."""
    written: dict[str, Path] = {}
    for proto in proto_files(src):
        if not _SERVICE.search(proto.read_text(encoding="utf-8")):
            continue
        rel = proto.relative_to(src)
        (out / rel.parent).mkdir(parents=True, exist_ok=True)
        _protoc([f"-I{src}", f"-I{_WELL_KNOWN}", f"--grpc_python_out={out}"], rel)
        written[rel.as_posix()] = out / rel.parent / f"{proto.stem}_pb2_grpc.py"
    return written


def _ensure_packages(src: Path) -> None:
    """Every directory between ``confnode/_proto`` and a proto must be an importable package."""
    root = src / "confnode" / "_proto"
    for proto in proto_files(src):
        directory = proto.parent
        while True:
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("", encoding="utf-8")
            if directory == root:
                break
            directory = directory.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SRC, help="output root (default: src)")
    args = parser.parse_args(argv)
    for path in generate(args.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
