"""Quote helper throughput, latency and fd hygiene through the AESM socket (sim backend).

Starts ``confnode quote-helper --backend sim`` as a separate process (so client threads do not
share its GIL), then measures:

* anchor: quotes/s of the simulated QE called directly in this process (no socket, no protobuf);
* GetQuoteEx quotes/s and p50/p99 latency through the socket with 1 and with 50 concurrent
  clients (one connection per request, as every AESM client does), and their ratio to the anchor;
* the daemon's open file descriptors before and after 10,000 malformed connections.

Usage: ``.venv/bin/python benchmarks/quote_helper.py [--quotes N] [--malformed N]``
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confnode.client import QuoteClient
from confnode.sim import SimPlatform


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settled_fd_count(pid: int) -> int:
    """The fd count once connections from earlier runs have finished closing."""
    last, deadline = -1, time.monotonic() + 10
    while (count := _fd_count(pid)) != last and time.monotonic() < deadline:
        last = count
        time.sleep(0.2)
    return count


def _socket_run(path: Path, report: bytes, clients: int, total: int) -> tuple[float, list[float]]:
    per_client = max(1, total // clients)

    def worker(_: int) -> list[float]:
        client = QuoteClient(path)
        latencies = []
        for _ in range(per_client):
            started = time.perf_counter()
            client.get_quote_ex(report, buf_size=8192)
            latencies.append(time.perf_counter() - started)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, range(clients)))
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies


def _malformed(path: Path, count: int) -> None:
    junk = [
        b"",
        b"\x01\x02",
        struct.pack("<I", 5) + b"\xff" * 5,
        struct.pack("<I", 1 << 20),
        struct.pack("<I", 3) + b"\x7a\x01\x08",
        struct.pack("<I", 64) + b"truncated",
        struct.pack("<I", 4) + b"\x2a\x02\x08\x01",
    ]
    for i in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(junk[i % len(junk)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=1000, help="quotes per socket run")
    parser.add_argument("--malformed", type=int, default=10_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="qhbench-", dir="/tmp"))
    state = workdir / "state"
    platform = SimPlatform(state_dir=state)
    qe = platform.quoting_enclave
    report = platform.enclave().report(qe.target_info(), b"benchmark")

    # Anchor: the backend itself, in process.
    n = max(200, args.quotes // 2)
    started = time.perf_counter()
    for _ in range(n):
        qe.quote(report)
    direct = n / (time.perf_counter() - started)

    sock = workdir / "aesm.socket"
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from confnode.cli import main; main()",
            "quote-helper",
            "--backend",
            "sim",
            "--socket",
            str(sock),
            "--state",
            str(state),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("quote helper did not start")
            time.sleep(0.05)
        _socket_run(sock, report, 4, 40)  # warm-up

        print(f"anchor: direct SimQuotingEnclave.quote  {direct:8.0f} quotes/s")
        for clients in (1, 50):
            rate, lat = _socket_run(sock, report, clients, args.quotes)
            print(
                f"socket, {clients:2d} client(s): {rate:8.0f} quotes/s  "
                f"p50 {statistics.median(lat) * 1e3:6.2f} ms  "
                f"p99 {_percentile(lat, 0.99) * 1e3:6.2f} ms  "
                f"ratio to anchor {rate / direct:5.2f}"
            )

        before = _settled_fd_count(daemon.pid)
        started = time.perf_counter()
        _malformed(sock, args.malformed)
        spent = time.perf_counter() - started
        QuoteClient(sock).target_info()  # the daemon still serves
        settle = time.monotonic() + 10
        while (after := _fd_count(daemon.pid)) != before and time.monotonic() < settle:
            time.sleep(0.05)
        print(
            f"daemon fds before/after {args.malformed} malformed connections: "
            f"{before} / {after} ({args.malformed / spent:.0f} connections/s)"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
    return 0 if after == before else 1


if __name__ == "__main__":
    sys.exit(main())
