"""Simulated quotes per second on one core, against a raw ECDSA P-256 sign anchor.

A simulated quote costs one CMAC check of the REPORT plus one ECDSA signature over header ‖ body,
so the ratio to the raw sign rate shows how much overhead the simulator adds around the crypto.
A simulated TD quote costs one ECDSA signature plus building the v4/v5 quote from its parts.
Run: .venv/bin/python benchmarks/sim_quote.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from confnode.sim import SimPlatform
from confnode.sim.tdx import SimTdxPlatform

TARGET = 5_000  # quotes/s on one core (issue 3)


def rate(fn: Callable[[], object], seconds: float = 1.5) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(200):
        fn()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    platform = SimPlatform(seed="benchmark")
    qe = platform.quoting_enclave
    enclave = platform.enclave()
    report = enclave.report(qe.target_info(), b"benchmark report data")
    key = ec.generate_private_key(ec.SECP256R1())
    message = bytes(432)
    algorithm = ec.ECDSA(hashes.SHA256())

    anchor = rate(lambda: key.sign(message, algorithm))
    quotes = rate(lambda: qe.quote(report))
    end_to_end = rate(lambda: qe.quote(enclave.report(qe.target_info(), b"nonce")))
    tdx = SimTdxPlatform(platform)
    td_report = tdx.td_report(b"benchmark report data")
    td_quotes = rate(lambda: tdx.quote(td_report))
    td_end_to_end = rate(lambda: tdx.quote(tdx.td_report(b"nonce", td15=True)))

    print(f"anchor: raw ECDSA P-256 sign          {anchor:10,.0f} /s")
    print(f"simulated quote (REPORT given)        {quotes:10,.0f} /s  ratio {quotes / anchor:.2f}")
    print(
        f"simulated enclave REPORT + quote      {end_to_end:10,.0f} /s  "
        f"ratio {end_to_end / anchor:.2f}"
    )
    print(
        f"simulated TD quote v4 (report given)  {td_quotes:10,.0f} /s  "
        f"ratio {td_quotes / anchor:.2f}"
    )
    print(
        f"simulated TD 1.5 report + quote v5    {td_end_to_end:10,.0f} /s  "
        f"ratio {td_end_to_end / anchor:.2f}"
    )
    verdict = "meets" if min(quotes, td_quotes) >= TARGET else "MISSES"
    print(f"target >= {TARGET:,} quotes/s on one core: {verdict}")


if __name__ == "__main__":
    main()
