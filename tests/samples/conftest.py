"""A simulated confidential node made of real processes, as ``make demo`` runs it.

One module-scoped node: ``confnode quote-helper`` (sim backend) on a temporary AESM socket,
``confnode pccs serve --sim`` for collateral, and ``confnode attestation serve`` over HTTPS with a
throwaway certificate (trustme) and the simulated root trusted explicitly.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import trustme
from samples_testlib import (
    CLI,
    Node,
    free_port,
    http_ready,
    release_policy,
    socket_ready,
    wait_ready,
)

from confnode.samples.enclave_app import SAMPLE_MR_ENCLAVE
from confnode.sim import SimPlatform


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    # Short path: unix socket names are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="cn-sample-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = root / f"{name}.log"
        handle = log.open("wb")
        logs.append(handle)
        proc = subprocess.Popen(
            [*CLI, *args], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        procs.append(proc)
        return proc, log

    try:
        sim_state = root / "sim"
        platform = SimPlatform(sim_state)
        (root / "sim-root.der").write_bytes(platform.root_certificate())

        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        server_cert.private_key_pem.write_to_path(str(root / "tls.key"))
        server_cert.cert_chain_pems[0].write_to_path(str(root / "tls.crt"))

        pccs_port, att_port = free_port(), free_port()
        url = f"https://127.0.0.1:{att_port}"
        keys = {"sample-key": os.urandom(32), "locked-key": os.urandom(32)}
        keys_dir = root / "keys"
        keys_dir.mkdir()
        for name, secret in keys.items():
            (keys_dir / f"{name}.key").write_bytes(secret)
        (keys_dir / "sample-key.policy.json").write_text(
            release_policy(url, SAMPLE_MR_ENCLAVE.hex())
        )
        (keys_dir / "locked-key.policy.json").write_text(release_policy(url, "00" * 32))

        socket_path = root / "aesm.socket"
        qh, qh_log = start(
            "quote-helper",
            "quote-helper",
            "--socket",
            str(socket_path),
            "--backend",
            "sim",
            "--state",
            str(sim_state),
        )
        pccs, pccs_log = start(
            "pccs", "pccs", "serve", "--sim", "--state", str(sim_state), "--port", str(pccs_port)
        )
        att, att_log = start(
            "attestation",
            "attestation",
            "serve",
            "--port",
            str(att_port),
            "--tls-cert",
            str(root / "tls.crt"),
            "--tls-key",
            str(root / "tls.key"),
            "--pccs-url",
            f"http://127.0.0.1:{pccs_port}",
            "--trust-root",
            str(root / "sim-root.der"),
            "--allow-simulated",
            "--signing-key-dir",
            str(root / "signing"),
            "--keys-dir",
            str(keys_dir),
        )
        tls = ssl.create_default_context(cafile=str(root / "ca.pem"))
        wait_ready(socket_ready(socket_path), qh, qh_log, "quote helper")
        pccs_probe = f"http://127.0.0.1:{pccs_port}/sgx/certification/v4/rootcacrl"
        wait_ready(http_ready(pccs_probe, False), pccs, pccs_log, "PCCS")
        wait_ready(http_ready(f"{url}/healthz", tls), att, att_log, "attestation service")
        yield Node(root, socket_path, sim_state, url, root / "ca.pem", keys)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in logs:
            handle.close()
        shutil.rmtree(root, ignore_errors=True)
