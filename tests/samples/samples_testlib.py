"""Helpers for the sample-app tests: the node made of real processes (see conftest.py).

The node: ``confnode quote-helper`` (sim backend) on a temporary AESM socket,
``confnode pccs serve --sim`` for collateral, and ``confnode attestation serve`` over HTTPS with a
throwaway certificate (trustme) and the simulated root trusted explicitly.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "confnode"]
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Node:
    root: Path
    socket_path: Path
    sim_state: Path
    url: str
    ca_cert: Path
    #: Key name -> the raw bytes the service holds for it.
    keys: dict[str, bytes]

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT} s:\n{log.read_text()}")


def socket_ready(path: Path) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(path))
            except OSError:
                return False
            return True

    return ready


def http_ready(url: str, verify: ssl.SSLContext | bool) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, verify=verify, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    return ready


def release_policy(authority: str, mr_enclave: str) -> str:
    """A Key Vault release policy for the sample enclave on a simulated, up-to-date platform
    (tokens about simulated evidence come from the service's ``/simulated`` issuer)."""
    return json.dumps(
        {
            "version": "1.0.0",
            "anyOf": [
                {
                    "authority": f"{authority}/simulated",
                    "allOf": [
                        {"claim": "x-ms-sgx-mrenclave", "equals": mr_enclave},
                        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
                        {"claim": "x-confnode-tcb-status", "equals": "UpToDate"},
                    ],
                }
            ],
        }
    )
