"""Logs cannot be forged through caller text, 503s do not leak internal URLs, the signing key is
written without following planted files."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from attestation_testlib import ATTEST, ServiceFactory, Sim
from hypothesis import given
from hypothesis import strategies as st

from confnode.attestation import AttestationService, unsigned_policy_jws
from confnode.attestation._app import loggable
from confnode.attestation._dcap import DcapAppraiser
from confnode.collateral import Collateral
from confnode.errors import CollateralFetchError
from confnode.sgx import Quote
from confnode.tokens import KeyDirectory

KEY_FILE_NAME = "signing-key.pem"

ClientFor = Callable[[AttestationService], httpx.AsyncClient]


@given(st.text())
def test_loggable_leaves_no_control_characters(text: str) -> None:
    escaped = loggable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in escaped)
    assert "\u2028" not in escaped and "\u2029" not in escaped
    if text.isprintable():
        assert escaped == text


async def test_policy_text_cannot_forge_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "version=1.0;\r\n2026-01-01 confnode.attestation policy reset by admin\x1b[2J {"
    caplog.set_level(logging.INFO, logger="confnode.attestation")
    response = await client.put("/policies/SgxEnclave", content=unsigned_policy_jws(forged))
    assert response.status_code == 400, response.text
    messages = [r.getMessage() for r in caplog.records if r.name == "confnode.attestation"]
    assert messages
    for message in messages:
        assert "\r" not in message and "\n" not in message and "\x1b" not in message
    assert any("\\x1b" in m or "\\x0d" in m for m in messages)


async def test_503_does_not_leak_the_pccs_url(
    make_service: ServiceFactory,
    client_for: ClientFor,
    sim: Sim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    internal = "http://pccs.confnode-system.svc.cluster.local:8081/sgx/certification/v4/tcb"

    def failing(quote: Quote) -> Collateral:
        raise CollateralFetchError(f"GET {internal} failed: connection refused")

    service = make_service()
    service.appraiser = DcapAppraiser(failing, extra_root=sim.platform.root_certificate())
    response = await client_for(service).post(ATTEST, json=sim.body())
    assert response.status_code == 503, response.text
    assert "pccs" not in response.text.lower() and "8081" not in response.text
    assert any(internal in r.getMessage() for r in caplog.records)  # operators still see it


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signing_key_write_ignores_a_planted_temp_file(tmp_path: Path) -> None:
    """A pre-created, world-readable temp file used to keep its mode: the key leaked."""
    planted = tmp_path / f".{KEY_FILE_NAME}.tmp"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    KeyDirectory(tmp_path).load_or_create("https://attest.example", datetime.now(UTC))
    assert _mode(tmp_path / KEY_FILE_NAME) == 0o600
    assert not planted.exists()


def test_signing_key_write_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    keys = tmp_path / "keys"
    keys.mkdir()
    os.symlink(outside, keys / f".{KEY_FILE_NAME}.tmp")
    KeyDirectory(keys).load_or_create("https://attest.example", datetime.now(UTC))
    assert outside.read_bytes() == b"precious"  # the key was not written through the link
    assert (keys / KEY_FILE_NAME).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert not (keys / KEY_FILE_NAME).is_symlink()
