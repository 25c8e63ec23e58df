"""Device-node access for a process and for the quote helper (defect 3: non-root helper and
``/dev/sgx_provision``): the appraisal, the readers, and the doctor rows built from them."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from platform_trees import Tree

from confnode.cli._common import console, main_group
from confnode.platform import (
    Access,
    DeviceNode,
    HostDataError,
    HostRoots,
    ProcessIdentity,
    Status,
    access_fix,
    appraise_access,
    detect,
    device_access,
    device_node,
    parse_status_ids,
    process_identity,
    socket_peer,
)

MakeTree = Callable[[str], Tree]
HELPER = ProcessIdentity(65532, 65532, frozenset())
PROVISION_0600 = DeviceNode("/dev/sgx_provision", 0, 0, 0o600)
PROVISION_SGX_PRV = DeviceNode("/dev/sgx_provision", 0, 1001, 0o660)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 250)


# --- appraisal ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "identity", "access", "via"),
    [
        (PROVISION_0600, ProcessIdentity(0, 0), Access.ALLOWED, "root"),
        (PROVISION_0600, HELPER, Access.DENIED, "others"),
        (PROVISION_SGX_PRV, HELPER, Access.DENIED, "others"),
        (PROVISION_SGX_PRV, ProcessIdentity(65532, 65532, frozenset({1001})), Access.ALLOWED,
         "group"),
        (PROVISION_SGX_PRV, ProcessIdentity(65532, 1001, frozenset()), Access.ALLOWED, "group"),
        (DeviceNode("/dev/sgx_enclave", 0, 0, 0o666), HELPER, Access.ALLOWED, "others"),
        (DeviceNode("/dev/sgx_provision", 65532, 0, 0o600), HELPER, Access.ALLOWED, "owner"),
        # The first matching class decides, as in the kernel: owner bits, even if others have rw.
        (DeviceNode("/dev/sgx_provision", 65532, 0, 0o066), HELPER, Access.DENIED, "owner"),
        # ...and group bits for a member, even if others have rw.
        (DeviceNode("/dev/sgx_provision", 0, 1001, 0o606), ProcessIdentity(7, 1001), Access.DENIED,
         "group"),
        # Groups not visible: only the group class could allow it.
        (PROVISION_SGX_PRV, ProcessIdentity(65532, 65532, None), Access.UNKNOWN, "group"),
        (PROVISION_0600, ProcessIdentity(65532, 65532, None), Access.DENIED, "others"),
    ],
)  # fmt: skip
def test_appraise_access(
    device: DeviceNode, identity: ProcessIdentity, access: Access, via: str
) -> None:
    result = appraise_access(device, identity)
    assert (result.access, result.via) == (access, via)


def test_describe_says_who_cannot_open_what() -> None:
    line = appraise_access(PROVISION_0600, HELPER).describe("the quote helper")
    assert line == (
        "the quote helper (uid 65532, gid 65532, no supplementary groups) cannot open "
        "/dev/sgx_provision (owner 0:0, mode 0600) read-write"
    )
    unknown = appraise_access(PROVISION_SGX_PRV, ProcessIdentity(5, 5, None, pid=42))
    assert unknown.describe("x") == (
        "x (pid 42: uid 5, gid 5, supplementary groups not visible) may not be able to open "
        "/dev/sgx_provision (owner 0:1001, mode 0660) read-write"
    )


def test_fix_for_a_group_writable_device_is_supplemental_groups() -> None:
    fix = access_fix(PROVISION_SGX_PRV)
    assert fix.startswith("add gid 1001 (the device's group, which has read-write)")
    assert "supplementalGroups" in fix and "device_ownership_from_security_context" in fix


def test_fix_for_a_0600_device_is_the_runtime_setting() -> None:
    fix = access_fix(PROVISION_0600)
    assert fix.startswith("set device_ownership_from_security_context = true")
    assert "supplementalGroups cannot help" in fix and "mode 0600" in fix


# --- /proc/<pid>/status -------------------------------------------------------------------------

STATUS = (
    "Name:\tconfnode\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t7\n"
    "Uid:\t1000\t65532\t65532\t65532\nGid:\t1000\t65533\t65533\t65533\n"
    "FDSize:\t64\nGroups:\t4 1001 \n"
)


def test_status_ids_are_the_filesystem_ids() -> None:
    assert parse_status_ids(STATUS) == (65532, 65533, frozenset({4, 1001}))
    fs_differs = STATUS.replace("Uid:\t1000\t65532\t65532\t65532", "Uid:\t0\t0\t0\t1234")
    assert parse_status_ids(fs_differs)[0] == 1234


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Uid:\t1\t1\t1\t1\n",
        "Uid:\t1\nGid:\t1\n",
        "Uid:\tx y\nGid:\t1 1\n",
        "Uid: 1 99999999999\n",
    ],
)
def test_status_without_usable_ids_is_rejected(text: str) -> None:
    with pytest.raises(HostDataError):
        parse_status_ids(text)


ids = st.integers(min_value=0, max_value=0xFFFFFFFF)


@settings(max_examples=150, deadline=None)
@given(st.tuples(ids, ids, ids, ids), st.tuples(ids, ids, ids, ids), st.frozensets(ids, max_size=8))
def test_status_round_trip(
    uids: tuple[int, ...], gids: tuple[int, ...], groups: frozenset[int]
) -> None:
    text = (
        "Name:\tx\n"
        + "Uid:\t" + "\t".join(map(str, uids)) + "\n"
        + "Gid:\t" + "\t".join(map(str, gids)) + "\n"
        + "Groups:\t" + " ".join(map(str, sorted(groups))) + " \n"
    )  # fmt: skip
    assert parse_status_ids(text) == (uids[3], gids[3], groups)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_status_any_text(text: str) -> None:
    try:
        uid, gid, groups = parse_status_ids(text)
    except HostDataError as exc:
        assert exc.message
        return
    assert 0 <= uid <= 0xFFFFFFFF and 0 <= gid <= 0xFFFFFFFF
    assert all(0 <= g <= 0xFFFFFFFF for g in groups)


# --- readers ------------------------------------------------------------------------------------


def _write_status(proc: Path, pid: int | str, uid: int, gid: int, groups: str = "") -> None:
    directory = proc / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "status").write_text(
        f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\n"
        f"Groups:\t{groups}\n"
    )


def test_readers_over_a_fake_tree(tmp_path: Path) -> None:
    roots = HostRoots(dev=tmp_path / "dev", proc=tmp_path / "proc")
    _write_status(tmp_path / "proc", "self", 65532, 65532, "1001")
    (tmp_path / "dev" / "sgx").mkdir(parents=True)
    provision = tmp_path / "dev" / "sgx_provision"
    provision.write_bytes(b"")
    provision.chmod(0o640)
    assert process_identity(roots) == ProcessIdentity(65532, 65532, frozenset({1001}))
    assert process_identity(roots, 99) is None
    st_ = provision.stat()
    assert device_node(roots, "/dev/sgx_provision") == DeviceNode(
        "/dev/sgx_provision", st_.st_uid, st_.st_gid, 0o640
    )
    assert device_node(roots, "/dev/sgx_enclave") is None
    # /dev/sgx is DCAP's directory of symlinks, not a device: skipped.
    found = device_access(roots, HELPER, ("/dev/sgx", "/dev/sgx_enclave", "/dev/sgx_provision"))
    assert [a.device.path for a in found] == ["/dev/sgx_provision"]


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="peer-", dir="/tmp")) / "aesm.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(4)
        yield path
    path.unlink()
    path.parent.rmdir()


def test_socket_peer_is_the_listening_process(listening: Path) -> None:
    peer = socket_peer(listening, HostRoots())
    assert peer == ProcessIdentity(
        os.geteuid(), os.getegid(), frozenset(os.getgroups()), os.getpid()
    )


def test_socket_peer_without_its_proc_entry_has_unknown_groups(
    listening: Path, tmp_path: Path
) -> None:
    peer = socket_peer(listening, HostRoots(proc=tmp_path))
    assert peer == ProcessIdentity(os.geteuid(), os.getegid(), None, os.getpid())


def test_socket_peer_of_nothing(tmp_path: Path) -> None:
    assert socket_peer(tmp_path / "none.socket", HostRoots()) is None
    (tmp_path / "file").write_bytes(b"")
    assert socket_peer(tmp_path / "file", HostRoots()) is None


# --- doctor rows --------------------------------------------------------------------------------


def _rows(tree: Tree, helper: ProcessIdentity | None = None) -> dict[str, tuple[str, Status, str]]:
    platform = detect(tree.roots, cpuid=tree.cpuid, aesm_socket=tree.aesm_socket, helper=helper)
    return {f.capability: (f.found, f.status, f.fix or "") for f in platform.findings}


def test_doctor_warns_when_this_process_cannot_open_the_provisioning_device(
    make_tree: MakeTree,
) -> None:
    tree = make_tree("dcsv3")
    _write_status(Path(tree.roots.proc), "self", 65532, 65532)
    Path(tree.roots.dev, "sgx_enclave").chmod(0o666)
    Path(tree.roots.dev, "sgx_provision").chmod(0o600)
    rows = _rows(tree)
    found, status, fix = rows["Provisioning device"]
    assert status is Status.WARN
    assert "this process (uid 65532, gid 65532, no supplementary groups) cannot open" in found
    assert "mode 0600" in found and "in-process DCAP quoting" in found
    assert fix.startswith("set device_ownership_from_security_context = true")
    assert rows["Enclave device"][1] is Status.OK


def test_doctor_accepts_the_device_group_as_a_supplementary_group(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    provision = Path(tree.roots.dev, "sgx_provision")
    provision.chmod(0o660)
    _write_status(Path(tree.roots.proc), "self", 65532, 65532, str(provision.stat().st_gid))
    Path(tree.roots.dev, "sgx_enclave").chmod(0o666)
    rows = _rows(tree)
    assert rows["Provisioning device"] == ("/dev/sgx_provision", Status.OK, "")


def test_doctor_without_own_ids_leaves_the_rows_alone(make_tree: MakeTree) -> None:
    """Fake trees without ``proc/self/status``: no access to judge, the rows say what exists."""
    rows = _rows(make_tree("dcsv3"))
    assert rows["Provisioning device"] == ("/dev/sgx_provision", Status.OK, "")
    assert "Quote helper devices" not in rows


def test_doctor_row_for_a_helper_that_cannot_open_the_devices(make_tree: MakeTree) -> None:
    tree = make_tree("dcsv3")
    Path(tree.roots.dev, "sgx_enclave").chmod(0o666)
    provision = Path(tree.roots.dev, "sgx_provision")
    provision.chmod(0o660)
    found, status, fix = _rows(tree, helper=HELPER)["Quote helper devices"]
    assert status is Status.WARN
    assert found.startswith("the quote helper (uid 65532, gid 65532, no supplementary groups)")
    assert "cannot open /dev/sgx_provision" in found and "sgx_enclave" not in found
    assert "AESM_UNEXPECTED_ERROR" in found
    assert fix.startswith(f"add gid {provision.stat().st_gid} ")
    member = ProcessIdentity(65532, 65532, frozenset({provision.stat().st_gid}))
    found, status, _ = _rows(tree, helper=member)["Quote helper devices"]
    assert status is Status.OK
    assert "can open /dev/sgx_enclave, /dev/sgx_provision read-write" in found


def test_doctor_cli_checks_the_process_behind_the_socket(
    make_tree: MakeTree, listening: Path
) -> None:
    """The CLI asks the socket who serves it (SO_PEERCRED) and reads that pid's groups from
    ``--proc-root``; here the fake proc says the listener (this test) runs as uid 65532."""
    tree = make_tree("dcsv3")
    Path(tree.roots.dev, "sgx_enclave").chmod(0o666)
    Path(tree.roots.dev, "sgx_provision").chmod(0o600)
    _write_status(Path(tree.roots.proc), os.getpid(), 65532, 65532)
    args = ["doctor", *tree.cli_args(), "--aesm-socket", str(listening), "--json"]
    result = CliRunner().invoke(main_group, args)
    assert result.exit_code == 0, result.output
    rows = {row["capability"]: row for row in json.loads(result.output)["capabilities"]}
    row = rows["Quote helper devices"]
    assert row["status"] == "warn"
    assert row["found"].startswith(f"the quote helper (pid {os.getpid()}: uid 65532")
    assert "device_ownership_from_security_context" in row["fix"]
