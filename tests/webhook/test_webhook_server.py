"""The HTTPS shell: real TLS on loopback, malformed bodies, certificate reload."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn

from confnode._https import ReloadingTLS, uvicorn_config
from confnode.webhook import WebhookConfig
from confnode.webhook.server import MAX_BODY, create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca = trustme.CA()
    cert_file, key_file = _write(ca, tmp_path)
    tls = ReloadingTLS(cert_file, key_file)
    port = _free_port()
    config = uvicorn_config(create_app(WebhookConfig()), host="127.0.0.1", port=port, tls=tls)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    while not srv.started:
        threading.Event().wait(0.01)
    yield {"url": f"https://127.0.0.1:{port}", "ca": ca, "tls": tls, "dir": tmp_path}
    srv.should_exit = True
    thread.join(5)


def _client(ca: trustme.CA) -> httpx.Client:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpx.Client(verify=context)


def test_mutate_and_validate_over_https(server: dict[str, Any]) -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "abc",
            "operation": "CREATE",
            "object": {
                "spec": {
                    "containers": [
                        {"name": "a", "resources": {"limits": {"sgx.intel.com/epc": "2Mi"}}}
                    ]
                }
            },
        },
    }
    with _client(server["ca"]) as client:
        mutated = client.post(server["url"] + "/mutate", json=review).json()
        assert (
            mutated["response"]["uid"] == "abc" and mutated["response"]["patchType"] == "JSONPatch"
        )
        validated = client.post(server["url"] + "/validate", json=review).json()
        assert validated["response"]["allowed"] is False  # not mutated: no enclave device
        assert "sgx.intel.com/enclave" in validated["response"]["status"]["message"]
        assert client.post(server["url"] + "/mutate", content=b"{not json").status_code == 400
        assert client.post(server["url"] + "/mutate", json={"request": {}}).status_code == 400
        assert (
            client.post(server["url"] + "/validate", content=b" " * (MAX_BODY + 1)).status_code
            == 413
        )
        assert client.get(server["url"] + "/healthz").text == "ok"


def test_certificate_reload(server: dict[str, Any]) -> None:
    new_ca = trustme.CA()
    tls: ReloadingTLS = server["tls"]
    assert tls.maybe_reload() is False
    (server["dir"] / "tls.key").write_text("half-written")
    assert tls.maybe_reload() is False  # a broken pair keeps the old certificate in service
    _write(new_ca, server["dir"])
    assert tls.maybe_reload() is True
    with _client(new_ca) as client:
        assert client.get(server["url"] + "/healthz").status_code == 200
    with _client(server["ca"]) as client, pytest.raises(httpx.ConnectError):
        client.get(server["url"] + "/healthz")


def test_bad_certificate_update_keeps_serving_the_old_one(server: dict[str, Any]) -> None:
    tls: ReloadingTLS = server["tls"]
    _write(trustme.CA(), server["dir"])  # a new certificate ...
    (server["dir"] / "tls.key").write_text("half-written")  # ... whose key is not there yet
    assert tls.maybe_reload() is False
    with _client(server["ca"]) as client:
        assert client.get(server["url"] + "/healthz").status_code == 200


def test_deeply_nested_json_is_a_bad_request(server: dict[str, Any]) -> None:
    with _client(server["ca"]) as client:
        response = client.post(server["url"] + "/mutate", content=b"[" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]


async def _call(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
    """POST ``chunks`` MiB to /validate through ASGI; (status, chunks the app consumed)."""
    app = create_app(WebhookConfig())
    consumed = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        consumed += 1
        more = consumed < chunks
        return {"type": "http.request", "body": b" " * (1 << 20), "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/validate",
        "raw_path": b"/validate",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8443),
    }
    await app(scope, receive, send)
    return status, consumed


async def test_oversized_body_is_refused_without_buffering_it() -> None:
    assert MAX_BODY < 4 << 20
    status, consumed = await _call([], chunks=64)  # chunked: no Content-Length
    assert status == 413
    assert consumed <= 4
    status, consumed = await _call([(b"content-length", str(64 << 20).encode())], chunks=64)
    assert (status, consumed) == (413, 0)
