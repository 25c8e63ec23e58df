"""Attestation service load: attestations/s and p50/p99 latency on loopback, several workers.

Anchors measured in the same run, on the same machine:

* the bare verifier: ``confnode.verify.verify_quote`` on one core (what any attestation costs);
* the service pipeline in-process: verify + policy + RS256 token, no HTTP.

The service runs as ``uvicorn`` with N worker processes (settings as ``confnode attestation serve``
would pass them, offline collateral bundle, simulated root trusted). The load generator is a lean
asyncio HTTP/1.1 client on keep-alive connections, so most CPU goes to the service. Quotes come
from the simulated platform, each binding its own runtimeData.

    .venv/bin/python benchmarks/attest_load.py [--workers 2] [--connections 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from confnode.attestation._dcap import DcapAppraiser
from confnode.attestation._server import Settings
from confnode.collateral import Collateral
from confnode.sgx import Quote
from confnode.sim import SimPlatform
from confnode.verify import verify_quote


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_requests(platform: SimPlatform, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (quote, body) pairs, each quote binding its own JSON runtimeData."""
    enclave = platform.enclave()
    target = platform.quoting_enclave.target_info()
    out = []
    for i in range(count):
        runtime = json.dumps({"request": i, "pad": "x" * 64}).encode()
        report = enclave.report(target, hashlib.sha256(runtime).digest() + bytes(32))
        quote = platform.quote(report)
        body = {
            "quote": b64url(quote),
            "runtimeData": {"data": b64url(runtime), "dataType": "JSON"},
        }
        out.append((quote, json.dumps(body).encode()))
    return out


def bench_verifier(
    quotes: list[bytes], collateral: Collateral, root: bytes, seconds: float
) -> float:
    """Seconds per bare ``verify_quote`` call (quote bytes in, as the service receives them)."""
    now = datetime.now(UTC)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        verify_quote(quotes[n % len(quotes)], collateral, at=now, trusted_root=root)
        n += 1
    return (time.perf_counter() - start) / n


def bench_pipeline(
    bodies: list[bytes], collateral: Collateral, root: bytes, seconds: float
) -> float:
    """Seconds per in-process attestation (HTTP layer excluded), using the service itself."""
    import httpx

    from confnode.attestation import AttestationService, KeyStore, PolicyStore
    from confnode.tokens import KeyDirectory

    def lookup(quote: Quote) -> Collateral:
        return collateral

    with tempfile.TemporaryDirectory() as tmp:
        now = datetime.now(UTC)
        service = AttestationService(
            appraiser=DcapAppraiser(lookup, extra_root=root),
            ring=KeyDirectory(tmp).load_or_create("http://bench", now),
            issuer="http://bench",
            policies=PolicyStore(),
            keys=KeyStore(None, "http://bench"),
            allow_simulated=True,  # the benchmark's quotes come from the simulated platform
        )

        async def run() -> float:
            transport = httpx.ASGITransport(app=service.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                url = "/attest/SgxEnclave?api-version=2022-08-01"
                # Time the handler path only: ASGI transport overhead is measured and removed.
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    response = await client.post(url, content=bodies[n % len(bodies)])
                    assert response.status_code == 200, response.text
                    n += 1
                full = (time.perf_counter() - start) / n
                n, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds / 2:
                    await client.get("/healthz")
                    n += 1
                return full - (time.perf_counter() - start) / n

        return asyncio.run(run())


async def _one_connection(
    port: int, bodies: list[bytes], deadline: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = hash(asyncio.current_task()) % len(bodies)
    try:
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += 1
            request = (
                b"POST /attest/SgxEnclave?api-version=2022-08-01 HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200 or b'"token"' not in payload:
                errors.append(payload[:200].decode(errors="replace"))
    finally:
        writer.close()


async def load(
    port: int, bodies: list[bytes], connections: int, seconds: float
) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    # Warm-up: every worker builds its caches before we measure.
    await asyncio.gather(
        *(_one_connection(port, bodies, time.perf_counter() + 1.0, [], []) for _ in range(4))
    )
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_one_connection(port, bodies, deadline, latencies, errors) for _ in range(connections))
    )
    return latencies, errors, time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if b"200" in sock.recv(64):
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("service did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    platform = SimPlatform()
    collateral = platform.collateral(datetime.now(UTC))
    root = platform.root_certificate()
    pairs = make_requests(platform, 64)
    quotes = [q for q, _ in pairs]
    bodies = [b for _, b in pairs]

    verify_s = bench_verifier(quotes, collateral, root, 2.0)
    pipeline_s = bench_pipeline(bodies, collateral, root, 2.0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "collateral").mkdir()
        (tmp_path / "collateral" / "sim.json").write_text(platform.collateral_json())
        (tmp_path / "root.der").write_bytes(root)
        port = _free_port()
        settings = Settings(
            signing_key_dir=str(tmp_path / "signing"),
            port=port,
            insecure_http=True,
            collateral_dir=str(tmp_path / "collateral"),
            trust_root=str(tmp_path / "root.der"),
            allow_simulated=True,
            workers=args.workers,
        )
        code = (
            "import sys; from confnode.attestation._server import Settings, run; "
            "run(Settings.from_json(sys.argv[1]))"
        )
        server = subprocess.Popen(
            [sys.executable, "-c", code, settings.to_json()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_ready(port)
            latencies, errors, elapsed = asyncio.run(
                load(port, bodies, args.connections, args.seconds)
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()

    ok = len(latencies) - len(errors)
    rate = ok / elapsed
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    cores = os.cpu_count() or 1
    verify_rate = 1 / verify_s
    print(f"cores: {cores}, service workers: {args.workers}, connections: {args.connections}")
    print(f"bare verifier:         {verify_s * 1e6:8.0f} µs/quote  ({verify_rate:7.0f}/s per core)")
    print(
        f"in-process pipeline:   {pipeline_s * 1e6:8.0f} µs/attestation "
        f"({pipeline_s / verify_s:.2f}x verifier)"
    )
    print(
        f"HTTP service:          {rate:8.0f} attestations/s over {elapsed:.1f} s "
        f"({ok} ok, {len(errors)} failed)"
    )
    print(f"latency:               p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"service vs bare verifier on all cores: {rate / (verify_rate * cores):.2f}")
    print(
        f"targets: >= 1000/s {'met' if rate >= 1000 else 'NOT met'}, "
        f"p99 <= 20 ms {'met' if p99 <= 20 else 'NOT met'}"
    )
    if errors:
        print(f"first error: {errors[0]}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
