"""Regenerate the checked-in protobuf/gRPC modules under ``src/confnode/_proto``.

Every ``.proto`` file under ``src/confnode/_proto`` is compiled with ``src`` as both include
root and output directory, so the generated imports are package-qualified
(``confnode._proto.deviceplugin.v1beta1.api_pb2``) while the proto packages (``v1beta1``, ``v1``,
``aesm.message``) and therefore the wire names stay upstream's. ``--grpc_python_out`` is only
passed for files that declare a service, so message-only protos get no empty ``_pb2_grpc.py``.

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


def proto_files(src: Path = SRC) -> list[Path]:
    """All ``.proto`` files under ``<src>/confnode/_proto``, sorted for reproducible runs."""
    return sorted((src / "confnode" / "_proto").rglob("*.proto"))


def generated_names(proto: Path) -> list[str]:
    """File names protoc writes next to ``proto`` (relative to the proto's directory)."""
    stem = proto.stem
    names = [f"{stem}_pb2.py", f"{stem}_pb2.pyi"]
    if _SERVICE.search(proto.read_text(encoding="utf-8")):
        names.append(f"{stem}_pb2_grpc.py")
    return names


def generate(out: Path = SRC, src: Path = SRC) -> list[Path]:
    """Compile every proto under ``src`` into ``out``; return the generated files."""
    well_known = resources.files("grpc_tools") / "_proto"
    written: list[Path] = []
    for proto in proto_files(src):
        rel = proto.relative_to(src)
        args = [
            "grpc_tools.protoc",
            f"-I{src}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
        ]
        if _SERVICE.search(proto.read_text(encoding="utf-8")):
            args.append(f"--grpc_python_out={out}")
        args.append(str(rel))
        (out / rel.parent).mkdir(parents=True, exist_ok=True)
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {rel}")
        written.extend(out / rel.parent / name for name in generated_names(proto))
    if out == src:
        _ensure_packages(src)
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
