"""The collateral client: equality with the platform bundle, caching, refresh, offline, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote as pct

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.cli import main_group
from confnode.collateral import Collateral
from confnode.errors import CollateralFetchError, InvalidInput
from confnode.pccs import CollateralClient, FetchResponse, HttpxFetcher, api_base
from confnode.pccs.client import quote_collateral_key
from confnode.sim import SimPlatform
from confnode.sim.pki import ROOT_CRL_URL
from confnode.sim.tdx import SimTdxPlatform
from confnode.verify import verify_quote


def _quote(platform: SimPlatform) -> bytes:
    return platform.quote(platform.enclave().report(platform.quoting_enclave.target_info(), b"c"))


class FakePcs:
    """Intel-PCS-like fetcher (no /rootcacrl: the root CRL comes from the root's CDP)."""

    def __init__(self, platform: SimPlatform, now: datetime) -> None:
        self.platform = platform
        self.now = now
        self.calls: list[str] = []
        self.down = False
        self.drop_header = False

    def get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
        self.calls.append(url)
        if self.down:
            raise CollateralFetchError(f"GET {url} failed: connection refused")
        r = self.platform.pcs_responses(self.now)
        route = url.rsplit("/v4/", 1)[-1]
        if route == "pckcrl":
            ca = params["ca"]
            headers = {"sgx-pck-crl-issuer-chain": pct(r.pck_crl_issuer_chains[ca], safe="")}
            return FetchResponse(200, headers, r.pck_crls[ca])
        if route == "tcb":
            if params["fmspc"] != self.platform.fmspc.hex().upper():
                return FetchResponse(404, {"error-message": "no such FMSPC"}, b"")
            name = "x-dropped" if self.drop_header else "tcb-info-issuer-chain"
            return FetchResponse(
                200, {name: pct(r.tcb_info_issuer_chain, safe="")}, r.tcb_info.encode()
            )
        if route == "qe/identity":
            chain = {"sgx-enclave-identity-issuer-chain": pct(r.qe_identity_issuer_chain, safe="")}
            return FetchResponse(200, chain, r.qe_identity.encode())
        if url == ROOT_CRL_URL:
            return FetchResponse(200, {}, r.root_ca_crl)
        return FetchResponse(404, {}, b"")


def _client(fake: FakePcs, **kwargs: object) -> CollateralClient:
    return CollateralClient(
        "https://pcs.example/sgx/certification/v4/",
        fetcher=fake,
        clock=lambda: fake.now,
        **kwargs,  # type: ignore[arg-type]
    )


def test_live_pccs_collateral_equals_platform_bundle(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    fetcher = HttpxFetcher(httpx.Client(trust_env=False))
    client = CollateralClient(live_pccs, fetcher=fetcher, clock=lambda: pccs_at)
    quote = _quote(pccs_platform)
    assert quote_collateral_key(quote) == ("53494D000000", "platform")
    fetched = client.for_quote(quote)
    assert fetched == pccs_platform.collateral(pccs_at)
    assert json.loads(fetched.to_json()) == json.loads(pccs_platform.collateral_json(pccs_at))
    verified = verify_quote(
        quote, fetched, at=pccs_at, trusted_root=pccs_platform.root_certificate()
    )
    assert verified.status == "SWHardeningNeeded"
    fetcher.close()


def test_cli_collateral_fetch(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    quote_file, out = tmp_path / "quote.bin", tmp_path / "bundle.json"
    quote_file.write_bytes(_quote(pccs_platform))
    result = CliRunner().invoke(
        main_group,
        ["collateral", "fetch", str(quote_file), "--pccs", live_pccs, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert Collateral.from_json(out.read_text()) == pccs_platform.collateral(pccs_at)
    bad = CliRunner().invoke(
        main_group,
        [
            "collateral",
            "fetch",
            str(quote_file),
            "--pccs",
            live_pccs + "/nowhere",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 3 and "404" in bad.output


def test_cli_collateral_fetch_of_a_td_quote_asks_the_tdx_routes(
    live_pccs: str, pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    """A TD quote needs TDX TCB Info and the TD QE identity (``/tdx/certification/v4``); the
    SGX routes gave a bundle (or a 404) that can never verify it."""
    tdx = SimTdxPlatform(pccs_platform)
    quote_file, out, cache = tmp_path / "td.bin", tmp_path / "td.json", tmp_path / "cache"
    quote_file.write_bytes(tdx.quote(tdx.td_report(b"fetch")))
    result = CliRunner().invoke(
        main_group,
        ["collateral", "fetch", str(quote_file), "--pccs", live_pccs, "--out", str(out),
         "--cache", str(cache)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fetched = Collateral.from_json(out.read_text())
    assert fetched == tdx.collateral(pccs_at)
    verified = verify_quote(
        quote_file.read_bytes(), fetched, at=pccs_at, trusted_root=tdx.root_certificate()
    )
    assert verified.status == "SWHardeningNeeded"
    assert list((cache / "tdx").iterdir())  # kept apart from SGX collateral of the same FMSPC


def test_root_crl_falls_back_to_the_root_cdp(pccs_platform: SimPlatform, pccs_at: datetime) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    collateral = _client(fake).get(pccs_platform.fmspc, "platform")
    assert fake.calls[-1] == ROOT_CRL_URL
    assert collateral == pccs_platform.collateral(pccs_at)


def test_memory_then_directory_cache(
    pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    first = _client(fake, cache_dir=tmp_path).get("53494d000000", "platform")
    fetches = len(fake.calls)
    client = _client(fake, cache_dir=tmp_path)  # a restart: empty memory, same directory
    assert client.get("53494D000000", "platform") == first
    assert len(fake.calls) == fetches
    assert (tmp_path / "sgx-53494D000000-platform.json").is_file()


def test_refreshes_before_next_update_and_survives_outages(
    pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    client = _client(fake, refresh_before=timedelta(days=2))
    first = client.get("53494D000000", "platform")
    next_update = first.earliest_next_update
    fake.now = next_update - timedelta(days=3)  # still fresh: no fetch
    calls = len(fake.calls)
    assert client.get("53494D000000", "platform") is first and len(fake.calls) == calls
    fake.now = next_update - timedelta(days=1)  # inside the refresh window: re-fetched
    fake.down = True
    assert client.get("53494D000000", "platform") is first  # outage: still-valid cache served
    fake.down = False
    fake.now += timedelta(minutes=1)  # the default retry_after
    refreshed = client.get("53494D000000", "platform")
    assert refreshed.tcb_info.info.issue_date > first.tcb_info.info.issue_date
    fake.now = refreshed.earliest_next_update + timedelta(seconds=1)
    fake.down = True
    with pytest.raises(CollateralFetchError):
        client.get("53494D000000", "platform")  # expired and unreachable: an error


def test_offline_from_a_saved_bundle(
    pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    offline = CollateralClient(None, offline=True, cache_dir=tmp_path)
    with pytest.raises(CollateralFetchError, match="offline"):
        offline.for_quote(_quote(pccs_platform))
    bundle = Collateral.from_json(pccs_platform.collateral_json(pccs_at))
    offline.add(bundle)
    assert offline.for_quote(_quote(pccs_platform)) == bundle
    # Another offline client finds it in the directory, even long after nextUpdate.
    later = CollateralClient(
        None, offline=True, cache_dir=tmp_path, clock=lambda: pccs_at + timedelta(days=400)
    )
    assert later.get("53494D000000", "platform") == bundle
    with pytest.raises(InvalidInput):
        CollateralClient(None)


def test_http_errors_and_bad_responses(pccs_platform: SimPlatform, pccs_at: datetime) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    with pytest.raises(CollateralFetchError) as info:
        _client(fake).get("00A067110000", "processor")
    assert info.value.status_code == 404 and "no such FMSPC" in str(info.value)
    fake.drop_header = True
    with pytest.raises(CollateralFetchError, match="TCB-Info-Issuer-Chain"):
        _client(fake).get("53494D000000", "platform")
    with pytest.raises(InvalidInput):
        _client(fake).get("53494D000000", "root")  # type: ignore[arg-type]


def test_malformed_body_is_a_fetch_error(pccs_platform: SimPlatform, pccs_at: datetime) -> None:
    fake = FakePcs(pccs_platform, pccs_at)

    class Corrupting(FakePcs):
        def get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
            response = fake.get(url, params)
            if url.endswith("/qe/identity"):
                return FetchResponse(200, response.headers, b'{"enclaveIdentity": 1}')
            return response

    with pytest.raises(CollateralFetchError, match="malformed"):
        _client(Corrupting(pccs_platform, pccs_at)).get("53494D000000", "platform")


def test_httpx_fetcher_wraps_transport_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fetcher = HttpxFetcher(httpx.Client(transport=httpx.MockTransport(refuse)))
    client = CollateralClient("http://pccs.invalid", fetcher=fetcher)
    with pytest.raises(CollateralFetchError) as info:
        client.get("53494D000000", "processor")
    assert info.value.status_code is None
    fetcher.close()


def test_httpx_fetcher_wraps_an_unparsable_url() -> None:
    # e.g. a CRL distribution point taken from a certificate the service sent
    with pytest.raises(CollateralFetchError, match="failed"):
        HttpxFetcher().get("http://[::1", {})


@settings(max_examples=60, deadline=None)
@given(
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True),
    scheme=st.sampled_from(["http", "https"]),
    suffix=st.sampled_from(["", "/", "/sgx/certification/v4", "/sgx/certification/v4/"]),
)
def test_api_base_normalises_every_spelling(host: str, scheme: str, suffix: str) -> None:
    assert api_base(f"{scheme}://{host}{suffix}") == f"{scheme}://{host}/sgx/certification/v4"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30))
def test_api_base_rejects_non_http_urls(text: str) -> None:
    host = text.partition("://")[2].rstrip("/")
    if text.startswith(("http://", "https://")) and host and not host.startswith("/"):
        assert api_base(text).endswith("/sgx/certification/v4")
    else:
        with pytest.raises(InvalidInput):
            api_base(text)


@pytest.mark.parametrize("fmspc", ["../../etc/x", "53494D00000/", "53494D0000001", "", "zz" * 6])
def test_fmspc_that_is_not_12_hex_digits_never_reaches_a_path_or_url(
    pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path, fmspc: str
) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    client = _client(fake, cache_dir=tmp_path / "cache")
    with pytest.raises(InvalidInput, match="12 hex digits"):
        client.get(fmspc, "processor")
    assert fake.calls == []
    assert not (tmp_path / "cache").exists()


def test_cache_write_never_follows_a_planted_temp_symlink(
    pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("sgx-53494D000000-platform.json.tmp", ".sgx-53494D000000-platform.json.tmp"):
        (cache / name).symlink_to(victim)
    client = CollateralClient(None, offline=True, cache_dir=cache)
    client.add(pccs_platform.collateral(pccs_at))
    assert victim.read_text() == "keep me"
    assert Collateral.from_json((cache / "sgx-53494D000000-platform.json").read_text())


def test_cache_entry_that_is_not_utf8_is_a_miss(
    pccs_platform: SimPlatform, pccs_at: datetime, tmp_path: Path
) -> None:
    (tmp_path / "sgx-53494D000000-platform.json").write_bytes(b"\xff\xfe{")
    fake = FakePcs(pccs_platform, pccs_at)
    collateral = _client(fake, cache_dir=tmp_path).get("53494D000000", "platform")
    assert collateral == pccs_platform.collateral(pccs_at)
    assert fake.calls  # fetched instead of crashing on the corrupt entry


def test_failed_refresh_is_retried_only_after_retry_after(
    pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    client = _client(fake, refresh_before=timedelta(days=2), retry_after=timedelta(minutes=5))
    first = client.get("53494D000000", "platform")
    fake.now = first.earliest_next_update - timedelta(days=1)  # refresh due
    fake.down = True
    assert client.get("53494D000000", "platform") is first
    calls = len(fake.calls)
    fake.now += timedelta(minutes=4)
    assert client.get("53494D000000", "platform") is first
    assert len(fake.calls) == calls  # no new attempt inside retry_after
    fake.now += timedelta(minutes=2)
    fake.down = False
    assert client.get("53494D000000", "platform") is not first  # retried and refreshed
    assert len(fake.calls) > calls


@pytest.mark.parametrize("url", ["http://", "https:///", "http:///sgx/certification/v4"])
def test_api_base_needs_a_host(url: str) -> None:
    with pytest.raises(InvalidInput, match="name a host"):
        api_base(url)


def test_collateral_that_is_always_due_is_fetched_once_per_retry_after(
    pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    fake = FakePcs(pccs_platform, pccs_at)
    # nextUpdate (30 days) is always inside a 40-day refresh window: never "fresh".
    client = _client(fake, refresh_before=timedelta(days=40), retry_after=timedelta(minutes=5))
    first = client.get("53494D000000", "platform")
    calls = len(fake.calls)
    fake.now += timedelta(minutes=1)
    assert client.get("53494D000000", "platform") is first
    assert len(fake.calls) == calls
    fake.now += timedelta(minutes=5)
    client.get("53494D000000", "platform")
    assert len(fake.calls) == 2 * calls


def test_failed_fetch_without_cache_is_remembered_briefly(
    pccs_platform: SimPlatform, pccs_at: datetime
) -> None:
    """A PCCS outage with nothing cached: callers within negative_ttl fail fast, without a fetch."""
    fake = FakePcs(pccs_platform, pccs_at)
    client = _client(fake, negative_ttl=timedelta(seconds=10))
    fake.down = True
    with pytest.raises(CollateralFetchError, match="connection refused"):
        client.get("53494D000000", "platform")
    calls = len(fake.calls)
    fake.now += timedelta(seconds=9)
    with pytest.raises(CollateralFetchError, match="connection refused"):
        client.get("53494D000000", "platform")
    assert len(fake.calls) == calls  # answered from the negative cache
    fake.now += timedelta(seconds=2)
    fake.down = False
    assert client.get("53494D000000", "platform") == pccs_platform.collateral(pccs_at)
    assert len(fake.calls) > calls
