"""Only standard JSON gets in (and so into a signed token): surrogates, NaN, deep nesting → 400."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from attestation_testlib import ATTEST, Sim, b64url
from hypothesis import given
from hypothesis import strategies as st

from confnode.attestation._json import MAX_DEPTH, MAX_SAFE_INTEGER, NotStandardJson, loads_strict
from confnode.errors import InvalidInput
from confnode.tokens import KeyRing, TokenIssuer, TokenValidationError, validate_token

# Raw bodies: json.dumps cannot produce most of these, which is the point.
LONE_SURROGATE = '"\\ud800"'
HIGH_THEN_TEXT = '"\\udbff x"'


def _body(sim: Sim, **members: str) -> bytes:
    """An attestation request with raw JSON text spliced in as member values."""
    base = json.dumps(sim.body())[:-1]
    extra = "".join(f', "{name}": {raw}' for name, raw in members.items())
    return f"{base}{extra}}}".encode()


def _runtime_body(sim: Sim, runtime: bytes) -> dict[str, Any]:
    quote = sim.quote(report_data=hashlib.sha256(runtime).digest() + bytes(32))
    return {"quote": b64url(quote), "runtimeData": {"data": b64url(runtime), "dataType": "JSON"}}


def _bad_request(response: httpx.Response, needle: str) -> None:
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]


@pytest.mark.parametrize("raw", [LONE_SURROGATE, HIGH_THEN_TEXT])
async def test_lone_surrogate_in_nonce_is_400_not_500(
    client: httpx.AsyncClient, sim: Sim, raw: str
) -> None:
    response = await client.post(ATTEST, content=_body(sim, nonce=raw))
    _bad_request(response, "lone UTF-16 surrogate")


async def test_lone_surrogate_in_draft_policy_and_runtime_data_is_400(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    draft = '"version=1.0; authorizationrules { => permit(); }; \\udfff"'
    response = await client.post(ATTEST, content=_body(sim, draftPolicyForAttestation=draft))
    _bad_request(response, "lone UTF-16 surrogate")
    runtime = b'{"keys": [], "note": "\\ud83d"}'
    response = await client.post(ATTEST, json=_runtime_body(sim, runtime))
    _bad_request(response, "runtimeData")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [("NaN", "NaN is not a JSON value"), ("-Infinity", "-Infinity"), ("1e400", "out of range")],
)
async def test_non_standard_numbers_are_400(
    client: httpx.AsyncClient, sim: Sim, raw: str, needle: str
) -> None:
    response = await client.post(ATTEST, content=_body(sim, extra=f"[{raw}]"))
    _bad_request(response, needle)
    runtime = f'{{"keys": [], "x": {raw}}}'.encode()
    response = await client.post(ATTEST, json=_runtime_body(sim, runtime))
    _bad_request(response, needle)


async def test_deep_nesting_is_400_but_sane_nesting_is_attested(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # MAX_DEPTH + 1 levels with the body object
    response = await client.post(ATTEST, content=_body(sim, extra=deep))
    _bad_request(response, f"nesting deeper than {MAX_DEPTH}")
    nested = '{"keys": [], "n": ' + "[" * 60 + "]" * 60 + "}"
    response = await client.post(ATTEST, json=_runtime_body(sim, nested.encode()))
    assert response.status_code == 200, response.text
    very_deep = '{"keys": [], "n": ' + "[" * 500 + "]" * 500 + "}"
    response = await client.post(ATTEST, json=_runtime_body(sim, very_deep.encode()))
    _bad_request(response, "nesting")


async def test_duplicate_member_names_are_400(client: httpx.AsyncClient, sim: Sim) -> None:
    """Python keeps the last duplicate, other parsers the first: refused, not guessed."""
    response = await client.post(ATTEST, content=_body(sim, quote='"AAAA"'))
    _bad_request(response, "'quote' appears more than once")
    runtime = b'{"keys": [{"kty": "RSA"}], "keys": []}'  # which key would a release wrap to?
    response = await client.post(ATTEST, json=_runtime_body(sim, runtime))
    _bad_request(response, "'keys' appears more than once")


def test_token_issuer_signs_only_standard_json(ring: KeyRing) -> None:
    issuer = TokenIssuer(ring, "https://attest.example")
    now = datetime.now(UTC)
    for claims in ({"x": math.nan}, {"x": math.inf}, {"x": "\ud800"}):
        with pytest.raises(InvalidInput, match="not standard JSON"):
            issuer.sign(claims, now)
        with pytest.raises(InvalidInput, match="not standard JSON"):
            issuer.unsigned(claims, now)
    token = issuer.sign({"x": "é ✓ 😀"}, now)
    claims = validate_token(token, ring.jwks(now), issuer="https://attest.example", now=now)
    assert claims["x"] == "é ✓ 😀"


def test_token_with_critical_header_is_rejected(ring: KeyRing) -> None:
    """joserfc accepts ``crit`` naming a header it knows (e.g. b64); RFC 7515 says reject what
    we do not implement, and we implement no extension."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    now = datetime.now(UTC)
    stamp = int(now.timestamp())
    header = {"alg": "RS256", "kid": ring.current.kid, "crit": ["b64"], "b64": True}
    payload = {"iss": "https://attest.example", "iat": stamp, "nbf": stamp, "exp": stamp + 60}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = ring.current.private_key.sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    token = f"{signing_input}.{b64url(signature)}"
    with pytest.raises(TokenValidationError, match="critical extensions"):
        validate_token(token, ring.jwks(now), issuer="https://attest.example", now=now)


# -- the strict parser -----------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=30,
)


@given(_values)
def test_standard_json_round_trips(value: Any) -> None:
    assert loads_strict(json.dumps(value), "v") == value
    assert loads_strict(json.dumps(value, ensure_ascii=False).encode(), "v") == value


@given(_values, st.integers(0xD800, 0xDFFF), st.booleans())
def test_any_lone_surrogate_anywhere_is_refused(value: Any, code: int, as_key: bool) -> None:
    bad = chr(code)
    doc = {bad: value} if as_key else {"k": [value, f"a{bad}b"]}
    with pytest.raises(NotStandardJson, match="surrogate"):
        loads_strict(json.dumps(doc), "v")


@given(st.dictionaries(_text, _values, min_size=1, max_size=4), st.data())
def test_a_member_name_given_twice_is_refused_at_any_position(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(doc)))
    again = json.dumps({name: data.draw(_values)})[1:-1]
    text = json.dumps({"outer": doc})[:-2] + ", " + again + "}}"  # a repeat inside "outer"
    with pytest.raises(NotStandardJson, match="appears more than once"):
        loads_strict(text, "v")


@given(st.integers(MAX_DEPTH + 1, 500), st.booleans())
def test_nesting_beyond_max_depth_is_refused(depth: int, objects: bool) -> None:
    text = '{"a":' * depth + "1" + "}" * depth if objects else "[" * depth + "]" * depth
    with pytest.raises(NotStandardJson, match="nesting"):
        loads_strict(text, "v")
    inside = '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert loads_strict(inside, "v") is not None


@given(st.integers(MAX_SAFE_INTEGER + 1, 10**40) | st.integers(-(10**40), -MAX_SAFE_INTEGER - 1))
def test_integers_beyond_i_json_range_are_refused(number: int) -> None:
    with pytest.raises(NotStandardJson, match="2\\^53"):
        loads_strict(f"[{number}]", "v")


@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_json_or_invalid_input(data: bytes) -> None:
    try:
        loads_strict(data, "v")
    except InvalidInput:
        pass
