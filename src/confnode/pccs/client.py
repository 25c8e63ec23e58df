"""Collateral client for any Intel PCS / PCCS base URL, with memory + directory cache.

The collateral for a quote is keyed by (FMSPC, PCK CA type), both read from the quote's PCK
certificate. Network access goes through the small :class:`Fetcher` protocol; the default uses
httpx. Cached collateral is reused until ``refresh_before`` ahead of its earliest ``nextUpdate``;
if a refresh fails, still-valid cached collateral is served and the service is asked again only
after ``retry_after``, so an outage does not put every caller behind a network timeout. A failed
fetch with nothing usable cached is remembered for ``negative_ttl`` too: callers in that window
get the same error at once instead of each waiting on the PCCS again. In ``offline`` mode only
the cache (e.g. a saved bundle placed in the cache directory or added with :meth:`add`) is used.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID

from confnode.collateral import Collateral
from confnode.errors import CollateralFetchError, InvalidCollateral, InvalidInput
from confnode.pccs._wire import (
    API_PREFIX,
    ENCLAVE_IDENTITY_ISSUER_CHAIN,
    PCK_CRL_ISSUER_CHAIN,
    TCB_INFO_ISSUER_CHAIN,
    TCB_INFO_ISSUER_CHAIN_V3,
    TDX_API_PREFIX,
    decode_chain,
)
from confnode.sgx import Quote, parse_pck_extension, parse_quote

CaType = Literal["processor", "platform"]
Clock = Callable[[], datetime]

_FMSPC = re.compile(r"[0-9A-Fa-f]{12}")


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """What the client needs from an HTTP response; header names are lower-case."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class Fetcher(Protocol):
    """One HTTP GET. Raise :class:`CollateralFetchError` for transport failures."""

    def get(self, url: str, params: Mapping[str, str]) -> FetchResponse: ...


class HttpxFetcher:
    """The default :class:`Fetcher` on an ``httpx.Client`` (inject one for tests/transports)."""

    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 30.0) -> None:
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
        try:
            response = self._client.get(url, params=dict(params))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # URLs may come from certificates
            raise CollateralFetchError(
                f"GET {url} failed: {exc}", hint="check the PCCS URL and network access"
            ) from exc
        return FetchResponse(
            status_code=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            content=response.content,
        )

    def close(self) -> None:
        self._client.close()


def api_base(url: str) -> str:
    """Normalise a PCS/PCCS URL: bare host, ``…/sgx/certification/v4`` or with a trailing slash."""
    base = url.rstrip("/")
    scheme, _, rest = base.partition("://")
    if scheme not in ("http", "https") or not rest or rest.startswith("/"):
        raise InvalidInput(f"PCCS URL {url!r} must be http:// or https:// and name a host")
    if base.endswith(API_PREFIX):
        return base
    return base + API_PREFIX


def quote_collateral_key(quote: bytes | Quote) -> tuple[str, CaType]:
    """(FMSPC hex, CA type) of a quote's PCK certificate: what its collateral is keyed by."""
    parsed = parse_quote(quote) if isinstance(quote, bytes) else quote
    certs = parsed.signature_data.certification.pck_certificates()
    if not certs:
        raise InvalidInput("the quote's PCK certificate chain is empty")
    leaf = certs[0]
    fmspc = parse_pck_extension(leaf).fmspc.hex().upper()
    return fmspc, _ca_type(leaf.issuer)


def _ca_type(issuer: x509.Name) -> CaType:
    names = issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    if "Processor" in cn:
        return "processor"
    if "Platform" in cn:
        return "platform"
    raise InvalidInput(f"PCK issuer CN {cn!r} names neither a Processor nor a Platform CA")


def _collateral_key(collateral: Collateral) -> tuple[str, CaType]:
    if not collateral.pck_crl_issuer_chain:
        raise InvalidCollateral("collateral without a PCK CRL issuer chain cannot be keyed")
    return (
        collateral.tcb_info.info.fmspc.hex().upper(),
        _ca_type(collateral.pck_crl_issuer_chain[0].subject),
    )


class CollateralClient:
    """Fetches, caches and refreshes verification collateral from a PCS/PCCS."""

    def __init__(
        self,
        base_url: str | None,
        *,
        fetcher: Fetcher | None = None,
        cache_dir: Path | str | None = None,
        clock: Clock | None = None,
        refresh_before: timedelta = timedelta(days=1),
        retry_after: timedelta = timedelta(minutes=1),
        negative_ttl: timedelta = timedelta(seconds=10),
        offline: bool = False,
    ) -> None:
        if base_url is None and not offline:
            raise InvalidInput("a PCCS URL is needed unless the client is offline")
        self._base = api_base(base_url) if base_url is not None else None
        self._fetcher: Fetcher = fetcher if fetcher is not None else HttpxFetcher()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._refresh_before = refresh_before
        self._retry_after = retry_after
        self._negative_ttl = negative_ttl
        self._offline = offline
        self._memory: dict[tuple[str, CaType], Collateral] = {}
        #: When a refresh last failed while still-valid collateral was served instead.
        self._failed_at: dict[tuple[str, CaType], datetime] = {}
        #: When collateral was last fetched: a service whose collateral is always due for refresh
        #: (nextUpdate closer than ``refresh_before``, or past, as THIM's baseline can be) is
        #: asked at most once per ``retry_after``, not on every call.
        self._fetched_at: dict[tuple[str, CaType], datetime] = {}
        #: Fetches that failed with nothing usable cached: (until when, the error), per key.
        self._negative: dict[tuple[str, CaType], tuple[datetime, CollateralFetchError]] = {}
        self._lock = threading.Lock()

    # -- cache ------------------------------------------------------------------------------------

    def _path(self, key: tuple[str, CaType]) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / f"sgx-{key[0]}-{key[1]}.json"

    def _cached(self, key: tuple[str, CaType]) -> Collateral | None:
        hit = self._memory.get(key)
        if hit is not None:
            return hit
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            hit = Collateral.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # An unreadable entry (I/O, not UTF-8, not a bundle) is a miss, not an error.
            return None
        self._memory[key] = hit
        return hit

    def add(self, collateral: Collateral) -> None:
        """Seed the cache (memory and directory) with a bundle, e.g. one saved for offline use."""
        key = _collateral_key(collateral)
        with self._lock:
            self._store(key, collateral)

    def _store(self, key: tuple[str, CaType], collateral: Collateral) -> None:
        self._memory[key] = collateral
        path = self._path(key)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # A fresh O_EXCL temp file: concurrent writers sharing the directory never mix
                # their bytes, and a planted symlink is never followed.
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        handle.write(collateral.to_json())
                    os.chmod(tmp, 0o644)  # public data; mkstemp's 0600 would hide it
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise CollateralFetchError(f"cannot write collateral cache {path}: {exc}") from exc

    def _fresh(self, collateral: Collateral, now: datetime) -> bool:
        return now < collateral.earliest_next_update - self._refresh_before

    # -- public API -------------------------------------------------------------------------------

    def for_quote(self, quote: bytes | Quote) -> Collateral:
        """The collateral to verify ``quote`` (FMSPC and CA type from its PCK certificate)."""
        fmspc, ca = quote_collateral_key(quote)
        return self.get(fmspc, ca)

    def get(self, fmspc: str | bytes, ca: CaType) -> Collateral:
        """Collateral for an FMSPC and PCK CA type: cached if fresh, else fetched and cached."""
        fmspc_hex = (fmspc.hex() if isinstance(fmspc, bytes) else fmspc).upper()
        if not _FMSPC.fullmatch(fmspc_hex):
            # It names a cache file and goes into the URL: only the 6-byte hex form is accepted.
            raise InvalidInput(f"FMSPC {fmspc_hex[:40]!r}; expected 12 hex digits")
        if ca not in ("processor", "platform"):
            raise InvalidInput(f"CA type {ca!r}; expected 'processor' or 'platform'")
        key = (fmspc_hex, ca)
        with self._lock:
            now = self._clock()
            cached = self._cached(key)
            if self._offline:
                if cached is None:
                    raise CollateralFetchError(
                        f"offline and no cached collateral for FMSPC {fmspc_hex} ({ca} CA)",
                        hint="fetch it once with `confnode collateral fetch` and keep the bundle",
                    )
                return cached
            if cached is not None and self._fresh(cached, now):
                return cached
            fetched_at = self._fetched_at.get(key)
            if cached is not None and fetched_at is not None:
                if fetched_at <= now < fetched_at + self._retry_after:
                    return cached
            usable = cached is not None and now < cached.earliest_next_update
            failed_at = self._failed_at.get(key)
            if cached is not None and usable and failed_at is not None:
                # The service was down moments ago: don't make every caller wait on it again.
                if now < failed_at + self._retry_after:
                    return cached
            negative = self._negative.get(key)
            if negative is not None and now < negative[0]:
                raise negative[1]
            try:
                fetched = self.fetch(fmspc_hex, ca)
            except CollateralFetchError as error:
                if cached is not None and usable:
                    self._failed_at[key] = now
                    return cached
                self._negative[key] = (now + self._negative_ttl, error)
                raise
            self._negative.pop(key, None)
            self._failed_at.pop(key, None)
            self._store(key, fetched)
            self._fetched_at[key] = now
            return fetched

    def fetch(self, fmspc: str, ca: CaType) -> Collateral:
        """Fetch from the service, bypassing the cache."""
        if self._base is None:
            raise CollateralFetchError("offline client cannot fetch collateral")
        base = self._base
        crl = self._get(f"{base}/pckcrl", {"ca": ca, "encoding": "der"})
        tcb = self._get(f"{base}/tcb", {"fmspc": fmspc})
        qe = self._get(f"{base}/qe/identity", {})
        pck_chain = _header(crl, PCK_CRL_ISSUER_CHAIN, "pckcrl")
        try:
            tcb_chain = _header(tcb, TCB_INFO_ISSUER_CHAIN, "tcb")
        except CollateralFetchError:
            tcb_chain = _header(tcb, TCB_INFO_ISSUER_CHAIN_V3, "tcb")
        root_crl = self._root_ca_crl(base, pck_chain)
        try:
            return Collateral.from_pcs_responses(
                tcb_info_body=tcb.content,
                tcb_info_issuer_chain=tcb_chain,
                qe_identity_body=qe.content,
                qe_identity_issuer_chain=_header(qe, ENCLAVE_IDENTITY_ISSUER_CHAIN, "qe/identity"),
                pck_crl=crl.content,
                pck_crl_issuer_chain=pck_chain,
                root_ca_crl=root_crl,
            )
        except InvalidCollateral as exc:
            raise CollateralFetchError(f"{base} served malformed collateral: {exc}") from exc

    def _root_ca_crl(self, base: str, pck_crl_issuer_chain: str) -> bytes:
        """PCCS ``/rootcacrl`` (hex); Intel's PCS has none, so fall back to the root's CDP."""
        response = self._fetcher.get(f"{base}/rootcacrl", {})
        if response.status_code == 200:
            return response.content
        if response.status_code != 404:
            _raise_for(response, f"{base}/rootcacrl")
        try:
            root = x509.load_pem_x509_certificates(pck_crl_issuer_chain.encode())[-1]
            cdp = root.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            url = next(
                str(name.value)
                for point in cdp
                for name in point.full_name or ()
                if isinstance(name, x509.UniformResourceIdentifier)
            )
        except (ValueError, IndexError, StopIteration, x509.ExtensionNotFound) as exc:
            raise CollateralFetchError(
                "no /rootcacrl and no CRL distribution point in the root certificate",
                status_code=404,
            ) from exc
        return self._get(url, {}).content

    def _get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
        response = self._fetcher.get(url, params)
        if response.status_code != 200:
            _raise_for(response, url)
        return response


def _raise_for(response: FetchResponse, url: str) -> None:
    detail = response.headers.get("error-message") or response.headers.get("error-code") or ""
    raise CollateralFetchError(
        f"GET {url} returned HTTP {response.status_code}" + (f" ({detail})" if detail else ""),
        status_code=response.status_code,
    )


def _header(response: FetchResponse, name: str, route: str) -> str:
    value = response.headers.get(name.lower())
    if not value:
        raise CollateralFetchError(f"/{route} response lacks the {name} header")
    return decode_chain(value)


_TDX_ROUTES = ("/tcb", "/qe/identity")


class TdxRoutes:
    """A :class:`Fetcher` that asks the TDX routes for TCB Info and QE identity.

    Everything else a TDX verification needs (PCK CRL, root CA CRL) comes from the same routes
    as for SGX, so this client serves TDX collateral unchanged behind this fetcher.
    """

    def __init__(self, inner: Fetcher, sgx_base: str) -> None:
        self._inner = inner
        self._sgx_base = sgx_base
        self._tdx_base = sgx_base.removesuffix(API_PREFIX) + TDX_API_PREFIX

    def get(self, url: str, params: Mapping[str, str]) -> FetchResponse:
        for route in _TDX_ROUTES:
            if url == self._sgx_base + route:
                url = self._tdx_base + route
        return self._inner.get(url, params)


def tdx_collateral_client(pccs_url: str | None, collateral_dir: str | None) -> CollateralClient:
    """The PCCS client for TD quotes (cache in ``<collateral_dir>/tdx``), or, without a PCCS,
    an offline client holding the TDX bundles (TCB Info ``id`` TDX) of ``collateral_dir``."""
    if pccs_url is not None:
        cache = Path(collateral_dir) / "tdx" if collateral_dir is not None else None
        fetcher = TdxRoutes(HttpxFetcher(), api_base(pccs_url))
        return CollateralClient(pccs_url, fetcher=fetcher, cache_dir=cache)
    if collateral_dir is None:
        raise InvalidInput("no TDX collateral source", hint="pass --pccs-url or --collateral-dir")
    return offline_collateral_client(Path(collateral_dir), "TDX")


def offline_collateral_client(directory: Path, tcb_id: str) -> CollateralClient:
    """An offline client holding the bundles (``*.json``) of ``directory`` whose TCB Info ``id``
    is ``tcb_id`` (``SGX`` or ``TDX``). Both kinds share the directory, and may share an FMSPC
    (SGX and TDX on one platform have one PCK certificate), so each client takes its own only."""
    if not directory.is_dir():
        raise InvalidInput(f"collateral directory {directory} does not exist")
    client = CollateralClient(None, offline=True)
    for bundle in sorted(directory.glob("*.json")):
        try:
            collateral = Collateral.from_json(bundle.read_bytes())
        except (OSError, InvalidCollateral) as error:
            raise InvalidInput(f"offline collateral bundle {bundle}: {error}") from error
        if collateral.tcb_info.info.id == tcb_id:
            client.add(collateral)
    return client
