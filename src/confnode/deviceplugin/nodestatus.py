"""What the node agent writes to its Node object through the API server.

- EPC as a node-status extended resource (ADR 0005): large EPC cannot travel as one device per
  MiB (the kubelet's 4 MiB ListAndWatch limit), so the agent writes the capacity into
  ``nodes/<name>/status`` with a JSON patch, as Intel's epchook does, and re-patches
  periodically: the kubelet zeroes externally patched extended resources when it cannot trust
  them (kubernetes PR #64784), and a daemon puts them back. When the SGX devices disappear the
  capacity is removed again (a merge patch with ``null``), so the scheduler stops placing EPC
  pods there; a stopping agent leaves it, as SIGTERM cannot tell an uninstall from a restart
  (``docs/operations.md``: uninstalling).
- The ``confnode.io/`` node labels (``docs/node-labels.md``) with a merge patch on
  ``nodes/<name>``, so heterogeneous pools can be targeted without NFD.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from confnode.deviceplugin.errors import DevicePluginError, NodeStatusPatchError
from confnode.deviceplugin.kubeconfig import ApiServerConfig, parse_kubeconfig
from confnode.deviceplugin.model import MIB, SgxNode, epc_unit_bytes
from confnode.platform import LABEL_KEYS

__all__ = [
    "MANAGED_LABEL_KEYS",
    "SERVICE_ACCOUNT_DIR",
    "SIMULATED_LABEL",
    "ApiServerNodeStatusPatcher",
    "NodePublisher",
    "NodeStatusPatcher",
    "capacity_json_patch",
    "capacity_removal_patch",
    "epc_capacity",
    "json_pointer_escape",
    "labels_merge_patch",
]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"

SIMULATED_LABEL = "confnode.io/sgx.simulated"
#: Every label the agent owns on its Node (docs/node-labels.md).
MANAGED_LABEL_KEYS: tuple[str, ...] = (*LABEL_KEYS, SIMULATED_LABEL)


class NodeStatusPatcher(Protocol):
    """Writes extended-resource capacity into a Node's status, and labels onto the Node."""

    async def patch_capacity(self, node_name: str, capacity: Mapping[str, str]) -> None: ...

    async def remove_capacity(self, node_name: str, names: Iterable[str]) -> None: ...

    async def patch_labels(self, node_name: str, labels: Mapping[str, str]) -> None: ...


def json_pointer_escape(token: str) -> str:
    """RFC 6901: ``~`` → ``~0`` first, then ``/`` → ``~1`` (``sgx.intel.com~1epc``)."""
    return token.replace("~", "~0").replace("/", "~1")


def capacity_json_patch(capacity: Mapping[str, str]) -> list[dict[str, str]]:
    """``add`` replaces an existing member, so the same patch both creates and refreshes."""
    return [
        {"op": "add", "path": "/status/capacity/" + json_pointer_escape(name), "value": value}
        for name, value in sorted(capacity.items())
    ]


def capacity_removal_patch(names: Iterable[str]) -> dict[str, Any]:
    """RFC 7386 patch deleting extended resources from capacity and allocatable; a merge patch,
    because JSON patch ``remove`` fails on a member that is already gone. Allocatable too, so the
    scheduler stops at once instead of at the kubelet's next status sync."""
    gone = dict.fromkeys(sorted(names))
    return {"status": {"capacity": gone, "allocatable": gone}}


def labels_merge_patch(labels: Mapping[str, str]) -> dict[str, Any]:
    """RFC 7386 patch setting ``labels`` and deleting (``null``) every other managed key.

    A merge patch only adds and overwrites, so a fact that became unknown or a node that stopped
    being simulated would otherwise keep its old label forever.
    """
    document: dict[str, str | None] = {key: None for key in MANAGED_LABEL_KEYS}
    document.update(labels)
    return {"metadata": {"labels": document}}


def epc_capacity(node: SgxNode, resource_name: str) -> dict[str, str]:
    """The capacity to publish: whole units (MiB, or bytes for Intel's name), never rounded up."""
    unit = epc_unit_bytes(resource_name)
    total = node.epc_total if unit == 1 else node.epc_total // MIB
    return {resource_name: str(total)}


class ApiServerNodeStatusPatcher:
    """The real patcher: PATCHes through the API server as the identity in an
    :class:`ApiServerConfig` (``--kubeconfig``, or the pod's service account in-cluster).

    A token file is re-read on every call because projected service-account tokens rotate.
    """

    def __init__(
        self,
        config: ApiServerConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._config = config
        self._client = httpx.AsyncClient(verify=_tls_context(config), transport=transport)
        self._identity = _impersonation_headers(config)
        self._extensions = (
            {"sni_hostname": config.tls_server_name} if config.tls_server_name else {}
        )
        self._timeout = timeout

    @classmethod
    def from_kubeconfig(
        cls, path: Path, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> ApiServerNodeStatusPatcher:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DevicePluginError(
                f"cannot read the kubeconfig {path}: {error}",
                hint="pass a readable kubeconfig with --kubeconfig, or omit it in-cluster",
            ) from error
        return cls(parse_kubeconfig(text, base_dir=path.parent), transport=transport)

    @classmethod
    def from_environment(
        cls,
        env: Mapping[str, str] | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ApiServerNodeStatusPatcher:
        environ = os.environ if env is None else env
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        token_file, ca_file = service_account_dir / "token", service_account_dir / "ca.crt"
        if not host or not token_file.is_file() or not ca_file.is_file():
            raise DevicePluginError(
                "publishing node capacity/labels needs the API server: found "
                f"KUBERNETES_SERVICE_HOST={host or '(unset)'}, token/CA under "
                f"{service_account_dir} {'present' if token_file.is_file() else 'missing'}",
                hint="run as the DaemonSet with its service account, or pass --kubeconfig",
            )
        if ":" in host:
            host = f"[{host}]"
        config = ApiServerConfig(
            server=f"https://{host}:{port}", ca_file=ca_file, token_file=token_file
        )
        return cls(config, transport=transport)

    def _headers(self, content_type: str) -> list[tuple[str, str]]:
        headers = [("Content-Type", content_type), ("Accept", "application/json")]
        token = self._config.token
        if token is None and self._config.token_file is not None:
            try:
                token = self._config.token_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise NodeStatusPatchError(
                    f"cannot read the token file {self._config.token_file}: {error}"
                ) from error
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        return headers + self._identity

    async def patch_capacity(self, node_name: str, capacity: Mapping[str, str]) -> None:
        url = f"{self._config.server}/api/v1/nodes/{quote(node_name, safe='')}/status"
        await self._patch(url, capacity_json_patch(capacity), JSON_PATCH)

    async def remove_capacity(self, node_name: str, names: Iterable[str]) -> None:
        url = f"{self._config.server}/api/v1/nodes/{quote(node_name, safe='')}/status"
        await self._patch(url, capacity_removal_patch(names), MERGE_PATCH)

    async def patch_labels(self, node_name: str, labels: Mapping[str, str]) -> None:
        url = f"{self._config.server}/api/v1/nodes/{quote(node_name, safe='')}"
        await self._patch(url, labels_merge_patch(labels), MERGE_PATCH)

    async def _patch(self, url: str, document: Any, content_type: str) -> None:
        try:
            response = await self._client.patch(
                url,
                content=json.dumps(document).encode(),
                headers=self._headers(content_type),
                timeout=self._timeout,
                extensions=self._extensions,
            )
        except (httpx.HTTPError, OSError) as error:
            raise NodeStatusPatchError(f"PATCH {url} failed: {error}") from error
        if response.status_code != 200:
            raise NodeStatusPatchError(
                f"PATCH {url} answered HTTP {response.status_code}, expected 200: "
                f"{response.text[:200]}",
                status_code=response.status_code,
            )

    async def aclose(self) -> None:
        await self._client.aclose()


def _impersonation_headers(config: ApiServerConfig) -> list[tuple[str, str]]:
    """client-go's impersonation headers (``as:``, ``as-uid``, ``as-groups``, ``as-user-extra``)."""
    headers: list[tuple[str, str]] = []
    if config.impersonate_user is not None:
        headers.append(("Impersonate-User", config.impersonate_user))
    if config.impersonate_uid is not None:
        headers.append(("Impersonate-Uid", config.impersonate_uid))
    headers += [("Impersonate-Group", group) for group in config.impersonate_groups]
    headers += [
        ("Impersonate-Extra-" + quote(key, safe=""), value)
        for key, values in config.impersonate_extra
        for value in values
    ]
    return headers


@contextlib.contextmanager
def _pem_path(data: bytes | None, path: Path | None) -> Iterator[str]:
    """A path ``ssl`` can load: the file itself, or inline data in an anonymous memory file (a
    kubeconfig's ``client-key-data`` never touches the disk)."""
    if data is None:
        assert path is not None
        yield os.fspath(path)
        return
    fd = os.memfd_create("confnode-kubeconfig-pem", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as file:
            file.write(data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _tls_context(config: ApiServerConfig) -> ssl.SSLContext:
    """Trust the kubeconfig's CA (system roots without one, as client-go) and present its client
    certificate, if any."""
    try:
        if config.ca_pem is not None:
            context = ssl.create_default_context(cadata=config.ca_pem.decode("ascii"))
        else:
            cafile = None if config.ca_file is None else os.fspath(config.ca_file)
            context = ssl.create_default_context(cafile=cafile)
        if config.has_client_certificate:
            with (
                _pem_path(config.client_cert_pem, config.client_cert_file) as cert,
                _pem_path(config.client_key_pem, config.client_key_file) as key,
            ):
                context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, UnicodeDecodeError) as error:
        raise DevicePluginError(
            f"cannot load the API server's CA or the client certificate: {error}",
            hint="check the kubeconfig's certificate-authority and client-certificate/-key",
        ) from error
    return context


class NodePublisher:
    """Re-patches capacity and labels every ``interval`` seconds (``retry`` after a failure), at
    once after :meth:`wake`. While ``present()`` is false the capacity is removed instead."""

    def __init__(
        self,
        patcher: NodeStatusPatcher,
        node_name: str,
        capacity: Mapping[str, str],
        labels: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        *,
        present: Callable[[], bool] = lambda: True,
        interval: float = 60.0,
        retry: float = 5.0,
        on_result: Callable[[bool, Exception | None], Any] = lambda ok, error: None,
    ) -> None:
        self.patcher = patcher
        self.node_name = node_name
        self.capacity = dict(capacity)
        #: A callable is asked on every publish, for labels that follow the host (the AESM socket).
        self._labels = labels if callable(labels) else dict(labels or {})
        self._present = present
        self._interval = interval
        self._retry = retry
        self._on_result = on_result
        self._wake = asyncio.Event()

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._labels() if callable(self._labels) else self._labels)

    def wake(self) -> None:
        """Publish now (the SGX devices came or went), not at the next interval."""
        self._wake.set()

    async def publish_once(self) -> bool:
        try:
            if self.capacity:
                if self._present():
                    await self.patcher.patch_capacity(self.node_name, self.capacity)
                else:
                    await self.patcher.remove_capacity(self.node_name, self.capacity)
            labels = self.labels
            if labels:
                await self.patcher.patch_labels(self.node_name, labels)
        except NodeStatusPatchError as error:
            self._on_result(False, error)
            return False
        self._on_result(True, None)
        return True

    async def run(self) -> None:
        while True:
            self._wake.clear()
            ok = await self.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval if ok else self._retry)
