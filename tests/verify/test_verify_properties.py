"""Properties: hostile bytes never escape as anything but confnode's own errors (SGX and TDX)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confnode.cli._vectors import VectorSet
from confnode.collateral import Collateral
from confnode.errors import ConfnodeError
from confnode.verify import verify_quote

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module", params=["sgx", "tdx"])
def sample(
    request: pytest.FixtureRequest, dcapqvl: VectorSet, dcapqvl_tdx: VectorSet
) -> tuple[VectorSet, Collateral]:
    vs = dcapqvl if request.param == "sgx" else dcapqvl_tdx
    return vs, vs.collateral()


@SETTINGS
@given(data=st.data())
def test_mutated_quotes_fail_cleanly(
    sample: tuple[VectorSet, Collateral], data: st.DataObject
) -> None:
    vs, collateral = sample
    quote = bytearray(vs.quote)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(quote) - 1))
        quote[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(quote)))
    try:
        verify_quote(bytes(quote[:cut]), collateral, at=vs.midpoint)
    except ConfnodeError:
        pass


@SETTINGS
@given(data=st.data())
def test_mutated_collateral_fails_cleanly(
    sample: tuple[VectorSet, Collateral], data: st.DataObject
) -> None:
    vs, _ = sample
    text = bytearray(vs.collateral_json.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.integers(0, 255))
    try:
        verify_quote(vs.quote, Collateral.from_json(bytes(text)), at=vs.midpoint)
    except ConfnodeError:
        pass


@SETTINGS
@given(offset=st.integers(-3 * 365, 3 * 365), allow=st.booleans())
def test_any_time_gives_a_verdict_or_a_time_error(
    sample: tuple[VectorSet, Collateral], offset: int, allow: bool
) -> None:
    vs, collateral = sample
    at = vs.midpoint + timedelta(days=offset)
    start, end = vs.window
    try:
        result = verify_quote(vs.quote, collateral, at=at, allow_expired_collateral=allow)
    except ConfnodeError as error:
        assert error.step in {"collateral-expired", "collateral-not-yet-valid"}
        assert at < start or at >= end
    else:
        assert result.collateral_expired == (at >= end)
        assert start <= at
