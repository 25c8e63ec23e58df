"""Node labels, NFD local feature files, and the label documentation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from platform_trees import SPECS, Tree

from confnode.errors import InvalidInput
from confnode.platform import (
    LABEL_KEYS,
    SgxPlatform,
    detect,
    nfd_features,
    node_labels,
    validate_label,
    write_nfd_features,
)

MakeTree = Callable[[str], Tree]
DOC = Path(__file__).resolve().parents[2] / "docs" / "node-labels.md"

# The Kubernetes label-value grammar, written independently of the code under test.
K8S_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def platform_for(tree: Tree) -> SgxPlatform:
    return detect(tree.roots, cpuid=tree.cpuid, aesm_socket=tree.aesm_socket)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_labels_are_valid_and_documented(make_tree: MakeTree, name: str) -> None:
    labels = node_labels(platform_for(make_tree(name)))
    for key, value in labels.items():
        assert key in LABEL_KEYS
        assert len(value) <= 63 and K8S_VALUE.match(value), (key, value)
    assert labels["confnode.io/sgx"] in ("true", "false")


def test_dcsv2_labels(make_tree: MakeTree) -> None:
    labels = node_labels(platform_for(make_tree("dcsv2")))
    assert labels == {
        "confnode.io/sgx": "true",
        "confnode.io/sgx.sgx1": "true",
        "confnode.io/sgx.sgx2": "false",
        "confnode.io/sgx.flc": "true",
        "confnode.io/sgx.kss": "false",
        "confnode.io/sgx.aex-notify": "false",
        "confnode.io/sgx.driver": "dcap",
        "confnode.io/sgx.provision": "true",
        "confnode.io/sgx.epc-mib": "28",
        "confnode.io/sgx.epc-numa-nodes": "1",
        "confnode.io/sgx.aesm": "true",
        "confnode.io/fsgsbase": "false",
    }


def test_two_socket_labels(make_tree: MakeTree) -> None:
    labels = node_labels(platform_for(make_tree("two-socket")))
    assert labels["confnode.io/sgx.epc-mib"] == str(1 << 20)  # 1 TiB in MiB
    assert labels["confnode.io/sgx.epc-numa-nodes"] == "2"
    assert labels["confnode.io/sgx.aex-notify"] == "true"
    assert labels["confnode.io/sgx.driver"] == "in-kernel"
    assert labels["confnode.io/sgx.aesm"] == "false"


def test_no_sgx_labels(make_tree: MakeTree) -> None:
    labels = node_labels(platform_for(make_tree("no-sgx")))
    assert labels["confnode.io/sgx"] == "false"
    assert labels["confnode.io/sgx.epc-mib"] == "0"
    assert labels["confnode.io/sgx.driver"] == "none"
    assert labels["confnode.io/fsgsbase"] == "true"


def test_unknown_facts_are_left_out(make_tree: MakeTree) -> None:
    labels = node_labels(platform_for(make_tree("dcsv3-no-cpuid")))
    for key in ("confnode.io/sgx.sgx1", "confnode.io/sgx.sgx2", "confnode.io/sgx.kss"):
        assert key not in labels
    assert labels["confnode.io/sgx.epc-mib"] == str(256 * 1024)  # sysfs still knows


def test_legacy_labels(make_tree: MakeTree) -> None:
    labels = node_labels(platform_for(make_tree("legacy-isgx")))
    assert labels["confnode.io/sgx.driver"] == "legacy-isgx"
    assert labels["confnode.io/sgx.flc"] == "false"
    assert labels["confnode.io/sgx.provision"] == "false"
    assert labels["confnode.io/sgx.epc-mib"] == "93"  # 93.5 MiB rounds down


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("confnode.io/sgx", "x" * 64),
        ("confnode.io/sgx", "-true"),
        ("confnode.io/sgx", "true-"),
        ("confnode.io/sgx", "a b"),
        ("confnode.io/sgx", "1/2"),
        ("confnode.io/" + "n" * 64, "true"),
        ("Confnode.IO/sgx", "true"),
        ("confnode.io/", "true"),
    ],
)
def test_validate_label_rejects(key: str, value: str) -> None:
    with pytest.raises(InvalidInput):
        validate_label(key, value)


@pytest.mark.parametrize("value", ["", "true", "1048576", "in-kernel", "a.b_c-d", "x" * 63])
def test_validate_label_accepts(value: str) -> None:
    validate_label("confnode.io/sgx.driver", value)


def test_nfd_features_round_trip(make_tree: MakeTree) -> None:
    platform = platform_for(make_tree("dcsv3"))
    text = nfd_features(platform)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].startswith("#")
    parsed = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert parsed == node_labels(platform)
    keys = [line.split("=", 1)[0] for line in lines[1:]]
    assert keys == sorted(keys)


def test_write_nfd_features_is_atomic(make_tree: MakeTree, tmp_path: Path) -> None:
    platform = platform_for(make_tree("dcsv2"))
    features_d = tmp_path / "features.d"
    features_d.mkdir()
    target = features_d / "confnode-sgx"
    target.write_text("stale=1\n")
    write_nfd_features(target, platform)
    assert target.read_text() == nfd_features(platform)
    assert [p.name for p in features_d.iterdir()] == ["confnode-sgx"]  # no temp file left
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(OSError):
        write_nfd_features(tmp_path / "missing" / "confnode-sgx", platform)


def test_docs_list_exactly_the_label_keys() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"`(confnode\.io/[a-z0-9.-]+)`", text))
    # The node agent adds one key of its own on simulated nodes (deviceplugin.inventory).
    assert documented == set(LABEL_KEYS) | {"confnode.io/sgx.simulated"}
