"""Webhook latency under a steady 500 requests/s on loopback (target: p99 ≤ 5 ms).

Runs ``confnode webhook serve`` in a subprocess with a throwaway TLS certificate, then sends an
open-loop stream of SGX pod AdmissionReviews (alternating /mutate and /validate) over a few
keep-alive HTTPS connections, as the API server does. The anchor is the pure ``mutate`` call
measured in the same run, so the ratio shows what HTTP + TLS add.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trustme

from confnode.webhook import WebhookConfig, mutate

RATE = 500
SECONDS = 6
TARGET_P99_MS = 5.0

REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "bench",
        "operation": "CREATE",
        "namespace": "default",
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "enclave", "annotations": {"confnode.io/aesm-socket": "true"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "example/app:1",
                        "resources": {"limits": {"sgx.intel.com/epc": "64Mi", "cpu": "500m"}},
                    }
                ]
            },
        },
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anchor_us() -> float:
    config = WebhookConfig()
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        mutate(REVIEW, config)
    return (time.perf_counter() - start) / n * 1e6


async def _connection(
    host: str,
    port: int,
    context: ssl.SSLContext,
    queue: asyncio.Queue[tuple[float, str] | None],
    body: bytes,
    latencies: list[float],
) -> None:
    """One keep-alive HTTPS connection, as the API server keeps to a webhook."""
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    while (item := await queue.get()) is not None:
        scheduled, path = item
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        # Measured from the *scheduled* send time: queueing delay counts (no coordinated omission).
        latencies.append((time.perf_counter() - scheduled) * 1000)
    writer.close()


async def load(host: str, port: int, context: ssl.SSLContext, connections: int = 8) -> list[float]:
    body = json.dumps(REVIEW).encode()
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    workers = [
        asyncio.create_task(_connection(host, port, context, queue, body, latencies))
        for _ in range(connections)
    ]
    for path in ("/mutate", "/validate") * connections:  # warm-up, not counted
        queue.put_nowait((time.perf_counter(), path))
    while queue.qsize():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    latencies.clear()
    begin = time.perf_counter()
    for i in range(RATE * SECONDS):
        scheduled = begin + i / RATE
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, "/mutate" if i % 2 == 0 else "/validate"))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies


def main() -> int:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        cert = ca.issue_cert("127.0.0.1")
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        port = _free_port()
        confnode = [str(Path(sys.executable).parent / "confnode")]
        server = subprocess.Popen(
            [
                *confnode,
                "webhook",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--tls-cert",
                str(cert_file),
                "--tls-key",
                str(key_file),
            ],
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        try:
            context = ssl.create_default_context()
            ca.configure_trust(context)
            url = f"https://127.0.0.1:{port}"
            deadline = time.time() + 20
            while True:
                try:
                    httpx.get(url + "/healthz", verify=context, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
            latencies = asyncio.run(load("127.0.0.1", port, context))
        finally:
            server.terminate()
            server.wait(10)
    base = anchor_us()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"webhook_load: {len(latencies)} requests at {RATE}/s over HTTPS on loopback, 8 connections"
    )
    print(f"  pure mutate() anchor      : {base:8.1f} µs/review")
    print(f"  latency p50               : {p50:8.2f} ms  ({p50 * 1000 / base:6.1f}× anchor)")
    print(f"  latency p99               : {p99:8.2f} ms  ({p99 * 1000 / base:6.1f}× anchor)")
    print(
        f"  target p99 ≤ {TARGET_P99_MS} ms       : {'met' if p99 <= TARGET_P99_MS else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
