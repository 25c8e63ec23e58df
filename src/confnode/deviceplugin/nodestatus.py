"""What the node agent writes to its Node object through the API server.

- EPC as a node-status extended resource (ADR 0005): large EPC cannot travel as one device per
  MiB (the kubelet's 4 MiB ListAndWatch limit), so the agent writes the capacity into
  ``nodes/<name>/status`` with a JSON patch, as Intel's epchook does, and re-patches
  periodically: the kubelet zeroes externally patched extended resources when it cannot trust
  them (kubernetes PR #64784), and a daemon puts them back.
- The ``confnode.io/`` node labels (``docs/node-labels.md``) with a merge patch on
  ``nodes/<name>``, so heterogeneous pools can be targeted without NFD.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from confnode.deviceplugin.errors import DevicePluginError, NodeStatusPatchError
from confnode.deviceplugin.model import MIB, SgxNode, epc_unit_bytes
from confnode.platform import LABEL_KEYS

__all__ = [
    "MANAGED_LABEL_KEYS",
    "SERVICE_ACCOUNT_DIR",
    "SIMULATED_LABEL",
    "InClusterNodeStatusPatcher",
    "NodePublisher",
    "NodeStatusPatcher",
    "capacity_json_patch",
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


@dataclass(frozen=True, slots=True)
class _Secrets:
    token_file: Path
    ca_file: Path


class InClusterNodeStatusPatcher:
    """The real patcher: service-account token + CA, ``KUBERNETES_SERVICE_HOST``/``PORT``.

    The token is re-read on every call because projected service-account tokens rotate.
    """

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        client: httpx.AsyncClient,
        timeout: float = 10.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._client = client
        self._timeout = timeout

    @classmethod
    def from_environment(
        cls,
        env: Mapping[str, str] | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> InClusterNodeStatusPatcher:
        environ = os.environ if env is None else env
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        secrets = _Secrets(service_account_dir / "token", service_account_dir / "ca.crt")
        if not host or not secrets.token_file.is_file() or not secrets.ca_file.is_file():
            raise DevicePluginError(
                "node-status EPC mode needs the in-cluster API server: found "
                f"KUBERNETES_SERVICE_HOST={host or '(unset)'}, token/CA under "
                f"{service_account_dir} {'present' if secrets.token_file.is_file() else 'missing'}",
                hint="run as the DaemonSet with a service account allowed to patch nodes/status, "
                "or use --epc-mode devices on small nodes",
            )
        if ":" in host:
            host = f"[{host}]"
        verify: ssl.SSLContext = ssl.create_default_context(cafile=os.fspath(secrets.ca_file))
        client = httpx.AsyncClient(verify=verify, transport=transport)
        return cls(
            f"https://{host}:{port}",
            lambda: secrets.token_file.read_text(encoding="utf-8").strip(),
            client=client,
        )

    async def patch_capacity(self, node_name: str, capacity: Mapping[str, str]) -> None:
        url = f"{self._base_url}/api/v1/nodes/{quote(node_name, safe='')}/status"
        await self._patch(url, capacity_json_patch(capacity), JSON_PATCH)

    async def patch_labels(self, node_name: str, labels: Mapping[str, str]) -> None:
        url = f"{self._base_url}/api/v1/nodes/{quote(node_name, safe='')}"
        await self._patch(url, labels_merge_patch(labels), MERGE_PATCH)

    async def _patch(self, url: str, document: Any, content_type: str) -> None:
        try:
            response = await self._client.patch(
                url,
                content=json.dumps(document).encode(),
                headers={
                    "Authorization": f"Bearer {self._token()}",
                    "Content-Type": content_type,
                    "Accept": "application/json",
                },
                timeout=self._timeout,
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


class NodePublisher:
    """Re-patches capacity and labels every ``interval`` seconds (``retry`` after a failure)."""

    def __init__(
        self,
        patcher: NodeStatusPatcher,
        node_name: str,
        capacity: Mapping[str, str],
        labels: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        *,
        interval: float = 60.0,
        retry: float = 5.0,
        on_result: Callable[[bool, Exception | None], Any] = lambda ok, error: None,
    ) -> None:
        self.patcher = patcher
        self.node_name = node_name
        self.capacity = dict(capacity)
        #: A callable is asked on every publish, for labels that follow the host (the AESM socket).
        self._labels = labels if callable(labels) else dict(labels or {})
        self._interval = interval
        self._retry = retry
        self._on_result = on_result

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._labels() if callable(self._labels) else self._labels)

    async def publish_once(self) -> bool:
        try:
            if self.capacity:
                await self.patcher.patch_capacity(self.node_name, self.capacity)
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
            ok = await self.publish_once()
            await asyncio.sleep(self._interval if ok else self._retry)
