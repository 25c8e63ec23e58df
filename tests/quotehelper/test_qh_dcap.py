"""The ctypes binding of the ``dcap`` backend against a stand-in ``libsgx_dcap_ql.so.1``.

The stand-in (``dcap_standin.c``) is compiled here with gcc; it has Intel's C signatures,
returns canned target info and quote bytes, and injects ``quote3_error_t`` failures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qh_harness import RunningHelper
from qh_independent import DEFAULT_KEY_ID, AesmProto, call

from confnode.client import AesmServiceUnavailable, QuoteClient
from confnode.quotehelper import BackendError, DcapBackend, DcapUnavailable
from confnode.quotehelper.dcap import QUOTE3_TO_AESM, aesm_code_for_quote3_error

SOURCE = Path(__file__).with_name("dcap_standin.c")
QUOTE_SIZE = 1500


@pytest.fixture(scope="session")
def standin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc/cc) to build the stand-in libsgx_dcap_ql.so.1")
    out = tmp_path_factory.mktemp("dcap") / "libsgx_dcap_ql.so.1"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(out), str(SOURCE)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def standin(standin_path: Path) -> Iterator[ctypes.CDLL]:
    """The loaded stand-in (same handle the backend gets); injected errors reset afterwards."""
    lib = ctypes.CDLL(str(standin_path))
    lib.standin_set_error.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
    yield lib
    for fn in range(3):
        lib.standin_set_error(fn, 0)


def test_target_info_and_quote_size(standin_path: Path, standin: ctypes.CDLL) -> None:
    backend = DcapBackend(standin_path)
    assert backend.target_info() == bytes(i ^ 0x5A for i in range(256)) * 2
    assert backend.quote_size() == QUOTE_SIZE


def test_quote_marshals_report_and_learns_pub_key_id(
    standin_path: Path, standin: ctypes.CDLL
) -> None:
    backend = DcapBackend(standin_path)
    assert backend.pub_key_id() is None
    report = bytes((7 * i + 1) & 0xFF for i in range(432))
    quote, info = backend.quote(report, None)
    assert info is None
    seen = (ctypes.c_uint8 * 432)()
    calls = standin.standin_last_report(seen)
    assert bytes(seen) == report and calls >= 1
    assert len(quote) == QUOTE_SIZE
    assert quote[48:432] == report[:384]
    assert backend.pub_key_id() == bytes([0xEC]) * 32


@pytest.mark.parametrize(
    ("fn", "error", "aesm"),
    [(0, 0xE011, 44), (1, 0xE00F, 42), (2, 0xE015, 47), (2, 0xE013, 45), (2, 0xE040, 1)],
)
def test_quote3_errors_map_to_aesm_codes(
    standin_path: Path, standin: ctypes.CDLL, fn: int, error: int, aesm: int
) -> None:
    backend = DcapBackend(standin_path)
    standin.standin_set_error(fn, error)
    call = [backend.target_info, backend.quote_size, lambda: backend.quote(bytes(432), None)][fn]
    with pytest.raises(BackendError) as info:
        call()
    assert info.value.aesm_code == aesm
    assert f"0x{error:04X}" in info.value.message


def test_mapping_table() -> None:
    assert aesm_code_for_quote3_error(0xE01A) == 22
    assert aesm_code_for_quote3_error(0xE019) == 12
    assert aesm_code_for_quote3_error(0xE03E) == 1  # not in aesmd's table
    assert len(QUOTE3_TO_AESM) == 27


def test_qe_report_info_is_refused(standin_path: Path, standin: ctypes.CDLL) -> None:
    with pytest.raises(BackendError) as info:
        DcapBackend(standin_path).quote(bytes(432), bytes(960))
    assert info.value.aesm_code == 49


def test_missing_library_or_symbol_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DcapUnavailable, match="cannot load the DCAP quote library"):
        DcapBackend(tmp_path / "libsgx_dcap_ql.so.1")
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(DcapUnavailable, match="lacks a DCAP quote-library export"):
        DcapBackend(libc)


def test_out_of_process_mode_is_refused(
    standin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGX_AESM_ADDR", "1")
    with pytest.raises(DcapUnavailable, match="SGX_AESM_ADDR"):
        DcapBackend(standin_path)


def test_dcap_sequence_through_the_daemon(
    aesm: AesmProto,
    standin_path: Path,
    standin: ctypes.CDLL,
    make_helper: Callable[..., RunningHelper],
) -> None:
    helper = make_helper(DcapBackend(standin_path))
    path = helper.socket_path

    def init(b_pub_key_id: bool, buf_size: int) -> object:
        req = aesm.Request()
        req.initQuoteExReq.att_key_id = DEFAULT_KEY_ID
        req.initQuoteExReq.b_pub_key_id = b_pub_key_id
        req.initQuoteExReq.buf_size = buf_size
        return call(aesm, path, req).initQuoteExRes

    first = init(False, 0xDEAD_BEEF_CAFE_F00D)
    assert first.errorCode == 0 and len(first.target_info) == 512
    # Before any quote the key id is unknown: omitted, which libsgx_quote_ex accepts.
    second = init(True, 32)
    assert second.errorCode == 0 and second.pub_key_id_size == 32
    assert not second.HasField("pub_key_id")
    client = QuoteClient(path)
    assert client.quote_size() == QUOTE_SIZE
    report = bytes(range(216)) * 2
    quote = client.quote(report)
    assert quote[48:432] == report[:384]
    assert client.pub_key_id() == bytes([0xEC]) * 32
    standin.standin_set_error(2, 0xE015)
    req = aesm.Request()
    req.getQuoteExReq.report = report
    req.getQuoteExReq.att_key_id = DEFAULT_KEY_ID
    req.getQuoteExReq.buf_size = 8192
    assert call(aesm, path, req).getQuoteExRes.errorCode == 47


def test_backend_failing_at_start_is_reported(
    standin_path: Path, standin: ctypes.CDLL, make_helper: Callable[..., RunningHelper]
) -> None:
    standin.standin_set_error(0, 0xE011)
    with pytest.raises(BackendError, match="0xE011"):
        make_helper(DcapBackend(standin_path))


def test_client_without_service(tmp_path: Path) -> None:
    with pytest.raises(AesmServiceUnavailable):
        QuoteClient(tmp_path / "none.socket").target_info()


def test_helper_that_cannot_open_the_provisioning_device_says_so(
    standin_path: Path,
    standin: ctypes.CDLL,
    short_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 3: run as a non-root user that cannot open /dev/sgx_provision, the dcap helper warns
    at start-up and, when DCAP then fails (0xE035 INVALID_PRIVILEGE), its error says why."""
    from click.testing import CliRunner

    from confnode.cli import main_group
    from confnode.cli._common import err_console

    dev, proc = tmp_path / "dev", tmp_path / "proc" / "self"
    dev.mkdir()
    proc.mkdir(parents=True)
    (dev / "sgx_provision").write_bytes(b"")
    (dev / "sgx_provision").chmod(0o600)
    (proc / "status").write_text("Uid:\t65532\t65532\t65532\t65532\nGid:\t7\t7\t7\t7\nGroups:\n")
    standin.standin_set_error(0, 0xE035)
    argv = ["quote-helper", "--backend", "dcap", "--dcap-library", str(standin_path)]
    argv += ["--socket", str(short_dir / "aesm.socket")]
    argv += ["--dev-root", str(dev), "--proc-root", str(tmp_path / "proc")]
    monkeypatch.setattr(err_console, "_width", 400)
    result = CliRunner().invoke(main_group, argv)
    assert result.exit_code == 3, result.output
    assert "0xE035" in result.output
    why = (
        "the quote helper (uid 65532, gid 7, no supplementary groups) cannot open "
        "/dev/sgx_provision (owner"
    )
    assert f"hint: {why}" in result.output
    assert "device_ownership_from_security_context = true" in result.output
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith(why) and "DCAP quotes will fail" in w for w in warnings), warnings
