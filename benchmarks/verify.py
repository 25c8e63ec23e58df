"""Quote verification throughput: confnode vs dcap-qvl (Rust), measured in the same run.

    .venv/bin/python benchmarks/verify.py [--vectors DIR] [--rounds N]

Scenarios, each timed per quote on one core (best of ``--repeat`` runs):

* warm: one ``Collateral`` object verifies many quotes (real dcap-qvl sample, same quote bytes;
  and distinct quotes from the simulated platform). Target: >= 5x dcap-qvl throughput.
* cold: a fresh ``Collateral.from_json`` for every quote (process-level caches keyed by bytes
  stay warm, as in a service that re-parses cached collateral). Target: <= 1.5x dcap-qvl time.
* cold start: as cold, and every cache cleared before each quote (first quote of a process).

dcap-qvl is timed on the same inputs: ``verify`` with its collateral object reused (warm) and
``QuoteCollateralV3.from_json`` per quote (cold).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl

from confnode.collateral import Collateral
from confnode.sim import SimPlatform
from confnode.verify import clear_caches, verify_quote

HERE = Path(__file__).resolve().parent
DEFAULT_VECTORS = Path(
    os.environ.get("CONFNODE_DCAP_VECTORS", HERE.parent.parent / "shared" / "dcap-vectors")
)
SAMPLE_AT = datetime(2025, 7, 4, tzinfo=UTC)
SIM_AT = datetime(2026, 1, 15, 12, tzinfo=UTC)


def _timed(fn: Callable[[int], object], rounds: int) -> float:
    start = time.perf_counter()
    for i in range(rounds):
        fn(i)
    return (time.perf_counter() - start) / rounds


def compare(
    ours: Callable[[int], object], theirs: Callable[[int], object], rounds: int, repeat: int
) -> tuple[float, float]:
    """Best-of-``repeat`` seconds per call for both, runs interleaved so load hits both alike."""
    ours(0), theirs(0)  # warm-up (imports, first-use caches)
    mine, other = [], []
    for _ in range(repeat):
        mine.append(_timed(ours, rounds))
        other.append(_timed(theirs, rounds))
    return min(mine), min(other)


def line(name: str, ours: float, theirs: float, *, warm: bool) -> str:
    if warm:
        ratio = f"{theirs / ours:5.2f}x dcap-qvl throughput (target >= 5x)"
    else:
        ratio = f"{ours / theirs:5.2f}x dcap-qvl time (target <= 1.5x)"
    return f"{name:<42} confnode {ours * 1e6:8.1f} us   dcap-qvl {theirs * 1e6:8.1f} us   {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rounds, repeat = args.rounds, args.repeat

    sample = args.vectors / "Phala-Network_dcap-qvl" / "sample"
    quote = (sample / "sgx_quote").read_bytes()
    bundle = (sample / "sgx_quote_collateral.json").read_text()
    now = int(SAMPLE_AT.timestamp())

    collateral = Collateral.from_json(bundle)
    dcap_collateral = dcap_qvl.QuoteCollateralV3.from_json(bundle)
    results = []

    ours, theirs = compare(
        lambda i: verify_quote(quote, collateral, at=SAMPLE_AT),
        lambda i: dcap_qvl.verify(quote, dcap_collateral, now),
        rounds,
        repeat,
    )
    results.append(line("warm, real sample (same quote)", ours, theirs, warm=True))

    def dcap_cold(i: int) -> object:
        return dcap_qvl.verify(quote, dcap_qvl.QuoteCollateralV3.from_json(bundle), now)

    def cold_start(i: int) -> object:
        clear_caches()
        return verify_quote(quote, Collateral.from_json(bundle), at=SAMPLE_AT)

    cold_rounds = max(rounds // 4, 20)
    ours, theirs = compare(
        lambda i: verify_quote(quote, Collateral.from_json(bundle), at=SAMPLE_AT),
        dcap_cold,
        cold_rounds,
        repeat,
    )
    results.append(line("cold, real sample (fresh Collateral)", ours, theirs, warm=False))
    ours, theirs = compare(cold_start, dcap_cold, cold_rounds, repeat)
    results.append(line("cold start, real sample (caches cleared)", ours, theirs, warm=False))
    parse = min(_timed(lambda i: Collateral.from_json(bundle), cold_rounds) for _ in range(repeat))

    # Distinct quotes from one simulated platform (same PCK chain, different report data).
    sim = SimPlatform(seed="benchmarks/verify.py")
    enclave = sim.enclave()
    target = sim.quoting_enclave.target_info()
    quotes = [sim.quote(enclave.report(target, i.to_bytes(64, "little"))) for i in range(rounds)]
    sim_json = sim.collateral_json(SIM_AT)
    sim_collateral = Collateral.from_json(sim_json)
    sim_dcap = dcap_qvl.QuoteCollateralV3.from_json(sim_json)
    root = sim.root_certificate()
    sim_now = int(SIM_AT.timestamp())
    ours, theirs = compare(
        lambda i: verify_quote(quotes[i], sim_collateral, at=SIM_AT, trusted_root=root),
        lambda i: dcap_qvl.verify_with_root_ca(quotes[i], sim_dcap, root, sim_now),
        rounds,
        repeat,
    )
    results.append(line(f"warm, {rounds} distinct simulated quotes", ours, theirs, warm=True))

    print(f"confnode quote verification benchmark ({os.cpu_count()} CPUs visible, one thread)")
    for text in results:
        print(text)
    print(f"{'(Collateral.from_json alone)':<42} confnode {parse * 1e6:8.1f} us")
    print(f"figures are the best of {repeat} runs; shared machines make single runs noisy")


if __name__ == "__main__":
    main()
