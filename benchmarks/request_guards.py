"""Per-request cost of the attestation service's input guards, against token signing.

Every attestation request is parsed with the strict JSON reader (no NaN/Infinity, no lone
surrogates, bounded depth) instead of ``json.loads``, and a draft policy is evaluated after a hop
to a worker thread. Both are measured here in the same run as an RS256 token signature (what
every attestation pays anyway), so the ratios say how much they add. The thread hop is why
configured-policy requests stay on the event loop (ADR 0007).
Run: .venv/bin/python benchmarks/request_guards.py
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from confnode.attestation._json import loads_strict
from confnode.tokens import KeyDirectory, TokenIssuer

#: The strict reader may add at most this fraction of one token signature per request.
MAX_STRICT_OVERHEAD = 0.10


def seconds_per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    for _ in range(100):
        fn()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - start) / n


async def hop_seconds(count: int = 3000) -> float:
    for _ in range(200):
        await run_in_threadpool(int)
    start = time.perf_counter()
    for _ in range(count):
        await run_in_threadpool(int)
    return (time.perf_counter() - start) / count


def main() -> None:
    body = json.dumps(
        {
            "quote": base64.urlsafe_b64encode(os.urandom(4600)).decode(),
            "runtimeData": {
                "data": base64.urlsafe_b64encode(os.urandom(600)).decode(),
                "dataType": "JSON",
            },
            "nonce": "n-1",
        }
    ).encode()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyDirectory(tmp).load_or_create("https://bench", now)
    issuer = TokenIssuer(ring, "https://bench")
    claims = {"x-ms-sgx-mrenclave": "ab" * 32, "x-confnode-tcb-status": "UpToDate"}

    sign = seconds_per_call(lambda: issuer.sign(claims, now))
    plain = seconds_per_call(lambda: json.loads(body))
    strict = seconds_per_call(lambda: loads_strict(body, "body"))
    hop = asyncio.run(hop_seconds())
    overhead = (strict - plain) / sign
    print(f"RS256 token signature (anchor): {sign * 1e6:8.1f} µs")
    print(f"json.loads of a {len(body)}-byte body: {plain * 1e6:8.1f} µs")
    print(
        f"strict reader:                  {strict * 1e6:8.1f} µs ({strict / plain:.2f}× json.loads)"
    )
    print(f"  added per request: {overhead:.1%} of a signature (limit {MAX_STRICT_OVERHEAD:.0%})")
    print(f"worker-thread hop:              {hop * 1e6:8.1f} µs ({hop / sign:.2f}× a signature)")
    if overhead > MAX_STRICT_OVERHEAD:
        raise SystemExit("strict JSON reader costs more than allowed")


if __name__ == "__main__":
    main()
