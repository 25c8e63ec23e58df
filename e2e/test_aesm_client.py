"""A third-party AESM client quotes through ``confnode quote-helper``: Fortanix's ``aesm-client``.

``e2e/aesm-client`` is a small Rust program over the crate (built by ``e2e/build.sh``) doing what
an SGX app does: list the attestation key ids, pick the ECDSA-P256 one, InitQuoteEx, then
GetQuoteSizeEx + GetQuoteEx with a ``qe_report_info`` (the crate always asks for the QE's REPORT).
The app enclave is confnode's simulated one: the program prints the QE's target info, this test
makes the REPORT with :mod:`confnode.sim` and hands it back on stdin. The quote helper is the real
CLI process on a private socket (the crate's ``AesmClientExt::with_path``, so no root or mount
namespace is needed), and the quote must pass both confnode's verifier and dcap-qvl.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest

from confnode.sgx.structs import DEFAULT_ECDSA_P256_ATT_KEY_ID, Report
from confnode.sim import SimPlatform
from confnode.verify import verify_quote

BIN = Path(__file__).resolve().parent / ".bin"
CLIENT = "aesm-client-quote"
APP_MR_ENCLAVE = hashlib.sha256(b"confnode e2e aesm-client app enclave").digest()


@pytest.fixture(scope="module")
def aesm_client() -> Path:
    """The built client; skipped without ``e2e/build.sh``, a failure under ``make e2e``."""
    path = BIN / CLIENT
    if not os.access(path, os.X_OK):
        message = f"{path} is not built: run `bash e2e/build.sh` (needs cargo)"
        if os.environ.get("CONFNODE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class Helper:
    socket_path: Path
    platform: SimPlatform
    log: Path


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"quote helper exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                time.sleep(0.1)
                continue
            return
    pytest.fail(f"quote helper did not serve {path} within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    """``confnode quote-helper --backend sim`` as its own process, stopped with SIGTERM."""
    work = tmp_path_factory.mktemp("aesm-client")
    socket_path, state, log = work / "aesm.socket", work / "state", work / "helper.log"
    argv = [sys.executable, "-m", "confnode", "quote-helper", "--backend", "sim"]
    argv += ["--socket", str(socket_path), "--state", str(state)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_socket(socket_path, process, log)
        yield Helper(socket_path, SimPlatform(state_dir=state), log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0, log.read_text()
    assert not socket_path.exists(), "the helper left its socket behind"


@dataclass(frozen=True)
class ClientRun:
    returncode: int
    offer: dict[str, Any] | None  # first line: key ids, chosen key id, target info, pub key id
    result: dict[str, Any] | None  # second line: quote size and the QE's REPORT
    stderr: str
    quote: bytes | None


def run_client(
    binary: Path,
    helper: Helper,
    out_dir: Path,
    *,
    nonce: bytes,
    target_info: bytes | None = None,
    att_key_id: bytes | None = None,
) -> ClientRun:
    """Run the client; make the app enclave's REPORT for ``target_info`` (default: the target
    info the client got from InitQuoteEx)."""
    quote_file = out_dir / "quote.bin"
    argv = [str(binary), "--socket", str(helper.socket_path), "--out", str(quote_file)]
    argv += ["--nonce", nonce.hex()]
    if att_key_id is not None:
        argv += ["--att-key-id", att_key_id.hex()]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        offer = json.loads(first) if first else None
        report = b""
        if offer is not None:
            enclave = helper.platform.enclave(mr_enclave=APP_MR_ENCLAVE)
            target = target_info or bytes.fromhex(offer["target_info"])
            report = enclave.report(target, hashlib.sha256(nonce).digest())
        rest, stderr = proc.communicate(report.hex() + "\n" if offer else "", timeout=60)
    result = json.loads(rest) if rest.strip() else None
    quote = quote_file.read_bytes() if proc.returncode == 0 else None
    return ClientRun(proc.returncode, offer, result, stderr, quote)


@pytest.fixture(scope="module")
def quoted(
    aesm_client: Path, helper: Helper, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ClientRun, bytes]:
    nonce = os.urandom(16)
    run = run_client(aesm_client, helper, tmp_path_factory.mktemp("quote"), nonce=nonce)
    assert run.returncode == 0, run.stderr
    return run, nonce


def test_client_picks_the_ecdsa_key_and_gets_the_qe_target(
    quoted: tuple[ClientRun, bytes], helper: Helper
) -> None:
    run, _ = quoted
    assert run.offer is not None and run.result is not None
    assert run.offer["att_key_ids"] == [DEFAULT_ECDSA_P256_ATT_KEY_ID.hex()]
    assert run.offer["att_key_id"] == DEFAULT_ECDSA_P256_ATT_KEY_ID.hex()
    qe = helper.platform.quoting_enclave
    assert bytes.fromhex(run.offer["target_info"]) == qe.target_info()
    assert bytes.fromhex(run.offer["pub_key_id"]) == qe.pub_key_id
    assert run.quote is not None and run.result["quote_size"] == len(run.quote)


def test_quote_verifies_with_confnode(quoted: tuple[ClientRun, bytes], helper: Helper) -> None:
    run, nonce = quoted
    assert run.quote is not None
    platform = helper.platform
    verified = verify_quote(
        run.quote,
        platform.collateral(),
        at=datetime.now(UTC),
        trusted_root=platform.root_certificate(),
    )
    assert verified.status.value == "UpToDate"
    assert verified.enclave.mr_enclave == APP_MR_ENCLAVE
    assert verified.report_data == hashlib.sha256(nonce).digest() + bytes(32)


def test_quote_verifies_with_dcap_qvl(quoted: tuple[ClientRun, bytes], helper: Helper) -> None:
    run, nonce = quoted
    assert run.quote is not None
    platform = helper.platform
    collateral = dcap_qvl.QuoteCollateralV3.from_json(platform.collateral_json())
    report = dcap_qvl.verify_with_root_ca(
        run.quote, collateral, platform.root_certificate(), int(time.time())
    )
    assert report.status == "UpToDate"
    enclave = dcap_qvl.parse_quote(run.quote).report
    assert bytes(enclave.mr_enclave) == APP_MR_ENCLAVE
    assert bytes(enclave.report_data)[:32] == hashlib.sha256(nonce).digest()


def test_qe_report_binds_the_quote_for_the_app_enclave(
    quoted: tuple[ClientRun, bytes], helper: Helper
) -> None:
    """The crate always sends a ``qe_report_info``: the QE's REPORT must be MACed for the app
    enclave and carry SHA-256(nonce ‖ quote), so the enclave can trust the quote it got back."""
    run, nonce = quoted
    assert run.result is not None and run.quote is not None
    enclave = helper.platform.enclave(mr_enclave=APP_MR_ENCLAVE)
    qe_report = enclave.verify_report(bytes.fromhex(run.result["qe_report"]))
    assert isinstance(qe_report, Report)
    assert qe_report.body.mr_enclave == helper.platform.quoting_enclave.identity.mr_enclave
    assert qe_report.body.report_data == hashlib.sha256(nonce + run.quote).digest() + bytes(32)


def _foreign_qe_key_id() -> bytes:
    """The ECDSA key id with another QE signer: same shape, a base the helper does not offer."""
    key_id = bytearray(DEFAULT_ECDSA_P256_ATT_KEY_ID)
    key_id[6] ^= 0xFF  # first byte of mrsigner
    return bytes(key_id)


@pytest.mark.parametrize(
    ("att_key_id", "call", "error"),
    [
        (_foreign_qe_key_id(), "init_quote_ex", "UnsupportedAttKeyId_38"),
        (DEFAULT_ECDSA_P256_ATT_KEY_ID[:158], "init_quote_ex", "ParameterError_3"),
    ],
    ids=["foreign-qe-key-id", "truncated-key-id"],
)
def test_wrong_att_key_id_surfaces_the_aesm_code(
    aesm_client: Path,
    helper: Helper,
    tmp_path: Path,
    att_key_id: bytes,
    call: str,
    error: str,
) -> None:
    run = run_client(aesm_client, helper, tmp_path, nonce=bytes(16), att_key_id=att_key_id)
    assert run.returncode == 1, run.stderr
    assert run.offer is None
    assert run.stderr.startswith(f"{call}: AesmCode({error})"), run.stderr


def test_report_for_another_enclave_is_invalid_report(
    aesm_client: Path, helper: Helper, tmp_path: Path
) -> None:
    """A REPORT MACed for some other enclave, not the QE: QE3's INVALID_REPORT (47)."""
    other = helper.platform.enclave(mr_enclave=bytes(32)).target_info()
    run = run_client(aesm_client, helper, tmp_path, nonce=bytes(16), target_info=other)
    assert run.returncode == 1
    assert run.stderr.startswith("get_quote_ex: AesmCode(InvalidReport_47)"), run.stderr


def test_short_nonce_makes_a_malformed_qe_report_info(
    aesm_client: Path, helper: Helper, tmp_path: Path
) -> None:
    """The crate does not check the nonce: 8 bytes make a 952-byte ``qe_report_info``, which
    AESM refuses with PARAMETER_ERROR (3) rather than reading past it."""
    run = run_client(aesm_client, helper, tmp_path, nonce=bytes(8))
    assert run.returncode == 1
    assert run.stderr.startswith("get_quote_ex: AesmCode(ParameterError_3)"), run.stderr
