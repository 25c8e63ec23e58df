"""``--kubeconfig``: the parser, and the patcher over real TLS with client certificates."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from confnode.cli import main_group
from confnode.deviceplugin import (
    AKS_EPC_RESOURCE,
    ApiServerConfig,
    ApiServerNodeStatusPatcher,
    DevicePluginAgent,
    DevicePluginError,
    NodeStatusPatchError,
    SgxNode,
    parse_kubeconfig,
)
from confnode.deviceplugin.model import MIB
from confnode.errors import InvalidInput


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://wrong.example"}},
            {"name": "c", "cluster": cluster},
        ],
        "users": [{"name": "u", "user": user}, {"name": "nobody", "user": {"token": "x"}}],
        "contexts": [
            {"name": "elsewhere", "context": {"cluster": "other", "user": "nobody"}},
            {"name": "agent", "context": {"cluster": "c", "user": "u", "namespace": "ignored"}},
        ],
        "current-context": "agent",
    }


def _parse(cluster: dict[str, Any], user: dict[str, Any]) -> ApiServerConfig:
    return parse_kubeconfig(yaml.safe_dump(_kubeconfig(cluster, user)), base_dir=Path("/etc/k"))


def test_current_context_with_inline_data_and_impersonation() -> None:
    config = _parse(
        {
            "server": "https://10.0.0.1:6443/",
            "certificate-authority-data": _b64(b"CA PEM"),
            "certificate-authority": "ignored.crt",  # the data wins, as in client-go
            "tls-server-name": "kubernetes.default",
        },
        {
            "client-certificate-data": _b64(b"CERT"),
            "client-key-data": _b64(b"KEY"),
            "as": "system:serviceaccount:confnode-system:confnode-node-agent",
            "as-uid": "1234",
            "as-groups": ["g1", "g2"],
            "as-user-extra": {"scopes.example/x": ["a", "b"]},
        },
    )
    assert config == ApiServerConfig(
        server="https://10.0.0.1:6443",
        ca_pem=b"CA PEM",
        tls_server_name="kubernetes.default",
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
        impersonate_user="system:serviceaccount:confnode-system:confnode-node-agent",
        impersonate_uid="1234",
        impersonate_groups=("g1", "g2"),
        impersonate_extra=(("scopes.example/x", ("a", "b")),),
    )


def test_file_references_resolve_against_the_kubeconfig_directory() -> None:
    config = _parse(
        {"server": "https://api:443", "certificate-authority": "pki/ca.crt"},
        {
            "client-certificate": "/abs/node.crt",
            "client-key": "node.key",
            "token": "static",
            "tokenFile": "token",  # the token wins, as in client-go
        },
    )
    assert config.ca_file == Path("/etc/k/pki/ca.crt")
    assert config.client_cert_file == Path("/abs/node.crt")
    assert config.client_key_file == Path("/etc/k/node.key")
    assert (config.token, config.token_file) == ("static", None)
    only_file = _parse({"server": "https://api"}, {"tokenFile": "sa/token"})
    assert only_file.token_file == Path("/etc/k/sa/token")
    assert only_file.ca_file is None  # system roots, as client-go


@pytest.mark.parametrize(
    ("cluster", "user", "expected"),
    [
        ({"server": "https://a", "insecure-skip-tls-verify": True}, {}, "insecure-skip"),
        ({"server": "http://a:8080"}, {}, "expected an https:// URL"),
        ({"server": "https://a", "proxy-url": "http://p"}, {}, "proxy-url is not supported"),
        ({"server": "https://a"}, {"exec": {"command": "x"}}, "exec is not supported"),
        ({"server": "https://a"}, {"username": "u", "password": "p"}, "username is not"),
        ({"server": "https://a"}, {"client-certificate-data": _b64(b"C")}, "needs its key"),
        ({"server": "https://a"}, {"as-groups": ["g"]}, "as-groups without as"),
        ({"server": "https://a", "certificate-authority-data": "%%%"}, {}, "not base64"),
        ({}, {}, "server: found NoneType"),
        ({"server": "https://a"}, {"token": 12345}, "token: found int, expected"),
    ],
)
def test_settings_that_would_change_identity_or_trust_are_refused(
    cluster: dict[str, Any], user: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidInput, match=expected):
        _parse(cluster, user)


def test_structural_errors_name_what_is_missing() -> None:
    document = _kubeconfig({"server": "https://a"}, {})
    for mutate, expected in (
        (lambda d: d.pop("current-context"), "current-context: found NoneType"),
        (lambda d: d.update({"current-context": "gone"}), "no entry named 'gone'"),
        (lambda d: d.update({"clusters": {"c": {}}}), "expected a list"),
    ):
        broken = json.loads(json.dumps(document))
        mutate(broken)
        with pytest.raises(InvalidInput, match=expected):
            parse_kubeconfig(yaml.safe_dump(broken), base_dir=Path("."))
    with pytest.raises(InvalidInput, match="not YAML"):
        parse_kubeconfig("clusters: [", base_dir=Path("."))


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1)


@given(
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,30}(:[0-9]{1,5})?", fullmatch=True),
    ca=st.binary(min_size=1, max_size=64),
    token=_text,
    user=st.none() | _text,
    groups=st.lists(_text, max_size=3),
)
def test_round_trip_of_generated_kubeconfigs(
    host: str, ca: bytes, token: str, user: str | None, groups: list[str]
) -> None:
    body: dict[str, Any] = {"token": token}
    if user is not None:
        body |= {"as": user, "as-groups": groups}
    config = _parse({"server": f"https://{host}", "certificate-authority-data": _b64(ca)}, body)
    assert (config.server, config.ca_pem, config.token) == (f"https://{host}", ca, token)
    assert config.impersonate_user == user
    assert config.impersonate_groups == (tuple(groups) if user is not None else ())


_KEYS = ["current-context", "contexts", "clusters", "users", "name", "context", "cluster", "user"]
_KEYS += ["server", "token", "tokenFile", "as", "as-groups", "certificate-authority-data"]
_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=20,
).map(yaml.safe_dump)


@given(st.text(max_size=300) | _documents)
def test_arbitrary_documents_only_ever_raise_invalid_input(text: str) -> None:
    try:
        parse_kubeconfig(text, base_dir=Path("."))
    except InvalidInput:
        pass


# --- the patcher over real TLS ---------------------------------------------------------------


@dataclass
class TlsApiServer:
    """An HTTPS server that requires a client certificate and records each request."""

    server_ca: trustme.CA = field(default_factory=trustme.CA)
    client_ca: trustme.CA = field(default_factory=trustme.CA)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        method, path, _ = head[0].split(" ")
        headers = [tuple(line.split(": ", 1)) for line in head[1:] if line]
        length = int(next(v for k, v in headers if k.lower() == "content-length"))
        subject = dict(item[0] for item in writer.get_extra_info("peercert")["subject"])
        self.requests.append(
            {
                "method": method,
                "path": path,
                "headers": headers,
                "client": subject["commonName"],
                "body": json.loads(await reader.readexactly(length)),
            }
        )
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    def header(self, index: int, name: str) -> list[str]:
        return [v for k, v in self.requests[index]["headers"] if k.lower() == name.lower()]


@pytest.fixture
async def tls_api() -> AsyncIterator[TlsApiServer]:
    api = TlsApiServer()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    api.server_ca.issue_cert("127.0.0.1").configure_cert(context)
    api.client_ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server = await asyncio.start_server(api._handle, "127.0.0.1", 0, ssl=context)
    api.port = server.sockets[0].getsockname()[1]
    async with server:
        yield api


def _write_kubeconfig(path: Path, api: TlsApiServer, user: dict[str, Any]) -> Path:
    cluster = {
        "server": f"https://127.0.0.1:{api.port}",
        "certificate-authority-data": _b64(api.server_ca.cert_pem.bytes()),
    }
    path.write_text(yaml.safe_dump(_kubeconfig(cluster, user)))
    return path


async def test_client_certificate_data_and_impersonation_reach_the_server(
    tls_api: TlsApiServer, tmp_path: Path
) -> None:
    admin = tls_api.client_ca.issue_cert("e2e-admin", common_name="e2e-admin")
    sa = "system:serviceaccount:confnode-system:confnode-node-agent"
    user = {
        "client-certificate-data": _b64(admin.cert_chain_pems[0].bytes()),
        "client-key-data": _b64(admin.private_key_pem.bytes()),
        "as": sa,
        "as-groups": ["system:serviceaccounts", "system:authenticated"],
    }
    patcher = ApiServerNodeStatusPatcher.from_kubeconfig(
        _write_kubeconfig(tmp_path / "kubeconfig", tls_api, user)
    )
    try:
        await patcher.patch_capacity("sgx-1", {AKS_EPC_RESOURCE: "28"})
        await patcher.patch_labels("sgx-1", {"confnode.io/sgx": "true"})
    finally:
        await patcher.aclose()
    status, labels = tls_api.requests
    assert (status["method"], status["path"]) == ("PATCH", "/api/v1/nodes/sgx-1/status")
    assert labels["path"] == "/api/v1/nodes/sgx-1"
    assert status["client"] == "e2e-admin"
    assert tls_api.header(0, "Impersonate-User") == [sa]
    assert tls_api.header(0, "Impersonate-Group") == user["as-groups"]
    assert tls_api.header(0, "Authorization") == []


async def test_token_file_is_reread_and_files_resolve_next_to_the_kubeconfig(
    tls_api: TlsApiServer, tmp_path: Path
) -> None:
    node = tls_api.client_ca.issue_cert("node-1", common_name="system:node:node-1")
    node.cert_chain_pems[0].write_to_path(str(tmp_path / "node.crt"))
    node.private_key_pem.write_to_path(str(tmp_path / "node.key"))
    (tmp_path / "token").write_text("one\n")
    user = {"client-certificate": "node.crt", "client-key": "node.key", "tokenFile": "token"}
    patcher = ApiServerNodeStatusPatcher.from_kubeconfig(
        _write_kubeconfig(tmp_path / "kubeconfig", tls_api, user)
    )
    try:
        await patcher.patch_capacity("n", {AKS_EPC_RESOURCE: "1"})
        (tmp_path / "token").write_text("two\n")
        await patcher.patch_capacity("n", {AKS_EPC_RESOURCE: "1"})
    finally:
        await patcher.aclose()
    assert [r["client"] for r in tls_api.requests] == ["system:node:node-1"] * 2
    assert tls_api.header(0, "Authorization") == ["Bearer one"]
    assert tls_api.header(1, "Authorization") == ["Bearer two"]


async def test_a_server_the_kubeconfig_ca_does_not_vouch_for_is_refused(
    tls_api: TlsApiServer, tmp_path: Path
) -> None:
    path = _write_kubeconfig(tmp_path / "kubeconfig", tls_api, {"token": "t"})
    document = yaml.safe_load(path.read_text())
    document["clusters"][1]["cluster"]["certificate-authority-data"] = _b64(
        trustme.CA().cert_pem.bytes()
    )
    path.write_text(yaml.safe_dump(document))
    patcher = ApiServerNodeStatusPatcher.from_kubeconfig(path)
    try:
        with pytest.raises(NodeStatusPatchError, match="CERTIFICATE_VERIFY_FAILED"):
            await patcher.patch_capacity("n", {AKS_EPC_RESOURCE: "1"})
    finally:
        await patcher.aclose()
    assert tls_api.requests == []


def test_unloadable_client_key_is_one_infrastructure_error(tmp_path: Path) -> None:
    config = ApiServerConfig(
        server="https://a", client_cert_pem=b"not a cert", client_key_pem=b"not a key"
    )
    with pytest.raises(DevicePluginError, match="client certificate"):
        ApiServerNodeStatusPatcher(config)
    with pytest.raises(DevicePluginError, match="cannot read the kubeconfig"):
        ApiServerNodeStatusPatcher.from_kubeconfig(tmp_path / "missing")


async def test_agent_publishes_capacity_and_labels_before_any_kubelet_exists(
    tls_api: TlsApiServer, tmp_path: Path, plugin_dir: Path, config_for: Any, run_agent: Any
) -> None:
    """The scheduler e2e runs the agent against an API server with no kubelet at all."""
    admin = tls_api.client_ca.issue_cert("e2e-admin", common_name="e2e-admin")
    user = {
        "client-certificate-data": _b64(admin.cert_chain_pems[0].bytes()),
        "client-key-data": _b64(admin.private_key_pem.bytes()),
    }
    patcher = ApiServerNodeStatusPatcher.from_kubeconfig(
        _write_kubeconfig(tmp_path / "kubeconfig", tls_api, user)
    )
    assert not (plugin_dir / "kubelet.sock").exists()
    node = SgxNode.simulated_node(1 << 40, 2)
    config = config_for(
        plugin_dir, node_name="big-1", epc_mode=None, node_labels={"confnode.io/sgx": "true"}
    )
    try:
        async with run_agent(DevicePluginAgent(node, config, patcher=patcher)):
            for _ in range(200):
                if len(tls_api.requests) >= 2:
                    break
                await asyncio.sleep(0.02)
    finally:
        await patcher.aclose()
    status, labels = tls_api.requests[:2]
    assert status["body"][0]["value"] == str((1 << 40) // MIB)
    assert labels["body"]["metadata"]["labels"]["confnode.io/sgx"] == "true"


def test_cli_reports_an_unreadable_kubeconfig_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main_group,
        [
            "device-plugin",
            "--sim-epc=1TiB",
            f"--device-plugin-dir={tmp_path}",
            "--node-name=n",
            f"--kubeconfig={tmp_path / 'absent'}",
        ],
    )
    assert result.exit_code != 0
    assert "cannot read the kubeconfig" in result.output
    assert "Traceback" not in result.output
