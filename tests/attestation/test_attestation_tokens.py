"""Token signing/validation, key directory and rotation, JWE key wrapping, release policies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from confnode.errors import InfrastructureError, InvalidInput
from confnode.policy import PolicyParseError, evaluate_release_policy, parse_release_policy
from confnode.tokens import (
    KeyDirectory,
    TokenIssuer,
    TokenValidationError,
    token_header,
    unwrap,
    validate_token,
    wrap_for_enclave,
)

URL = "https://attest.example"
NOW = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer(KeyDirectory(tmp_path).load_or_create(URL, NOW), URL)


def test_token_header_and_round_trip(issuer: TokenIssuer) -> None:
    token = issuer.sign({"x-ms-ver": "1.0"}, NOW)
    header = token_header(token)
    assert header["alg"] == "RS256"
    assert header["jku"] == f"{URL}/certs"
    assert header["kid"] == issuer.ring.current.kid
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == URL
    claims = validate_token(token, issuer.ring.jwks(NOW), issuer=URL, now=NOW)
    assert claims["x-ms-ver"] == "1.0"
    assert claims["exp"] - claims["iat"] == 8 * 3600
    assert claims["nbf"] == claims["iat"] == int(NOW.timestamp())


def test_validation_rejects_alg_none(issuer: TokenIssuer) -> None:
    unsigned = issuer.unsigned({"x": 1}, NOW)
    with pytest.raises(TokenValidationError, match="'none', only RS256"):
        validate_token(unsigned, issuer.ring.jwks(NOW), issuer=URL, now=NOW)


def test_validation_rejects_hs256_signed_with_the_public_key(issuer: TokenIssuer) -> None:
    """The classic key-confusion attack: HMAC keyed with the published RSA public key."""
    public_pem = issuer.ring.current.certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signed = (
        part({"alg": "HS256", "kid": issuer.ring.current.kid})
        + "."
        + part({"iss": URL, "exp": 2e9, "nbf": 0, "iat": 0})
    )
    mac = hmac.new(public_pem, signed.encode(), hashlib.sha256).digest()
    forged = signed + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(TokenValidationError, match="'HS256', only RS256"):
        validate_token(forged, issuer.ring.jwks(NOW), issuer=URL, now=NOW)


def test_validation_checks_issuer_lifetime_and_kid(issuer: TokenIssuer, tmp_path: Path) -> None:
    token = issuer.sign({}, NOW)
    jwks = issuer.ring.jwks(NOW)
    with pytest.raises(TokenValidationError, match=r"issuer is 'https://attest\.example'"):
        validate_token(token, jwks, issuer="https://other", now=NOW)
    with pytest.raises(TokenValidationError, match="expired"):
        validate_token(token, jwks, issuer=URL, now=NOW + timedelta(hours=9))
    with pytest.raises(TokenValidationError, match="not valid before"):
        validate_token(token, jwks, issuer=URL, now=NOW - timedelta(hours=1))
    other = KeyDirectory(tmp_path / "other").load_or_create(URL, NOW)
    with pytest.raises(TokenValidationError, match="not in the service's key set"):
        validate_token(token, other.jwks(NOW), issuer=URL, now=NOW)
    head, body, sig = token.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    tampered["x-confnode-simulated"] = False
    raw = base64.urlsafe_b64encode(json.dumps(tampered).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenValidationError, match="signature"):
        validate_token(f"{head}.{raw}.{sig}", jwks, issuer=URL, now=NOW)


def test_validation_rejects_deeply_nested_header(issuer: TokenIssuer) -> None:
    """json.loads raises RecursionError, not ValueError, on deep nesting; still a token error."""
    head = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).rstrip(b"=").decode()
    with pytest.raises(TokenValidationError, match="not base64url JSON"):
        validate_token(f"{head}.e30.sig", issuer.ring.jwks(NOW), issuer=URL, now=NOW)


def test_key_directory_persists_key_with_private_mode(tmp_path: Path) -> None:
    first = KeyDirectory(tmp_path).load_or_create(URL, NOW)
    again = KeyDirectory(tmp_path).load_or_create(URL, NOW)
    assert again.current.kid == first.current.kid
    assert stat.S_IMODE(os.stat(tmp_path / "signing-key.pem").st_mode) == 0o600
    # A new service URL re-certifies the same key with the new subject.
    moved = KeyDirectory(tmp_path).load_or_create("https://moved.example", NOW)
    assert moved.current.kid == first.current.kid
    subject = moved.current.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert subject[0].value == "https://moved.example"


def test_unwritable_parent_without_key_is_an_infrastructure_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InfrastructureError, match=r"cannot write signing-key\.pem"):
        KeyDirectory(blocker / "keys").load_or_create(URL, NOW)


def test_rotation_keeps_previous_key_until_its_tokens_expire(tmp_path: Path) -> None:
    directory = KeyDirectory(tmp_path)
    old_ring = directory.load_or_create(URL, NOW)
    old_token = TokenIssuer(old_ring, URL).sign({}, NOW)
    ring = directory.rotate(URL, NOW, timedelta(hours=8))
    assert ring.current.kid != old_ring.current.kid
    kids = [k["kid"] for k in ring.jwks(NOW)["keys"]]
    assert kids == [ring.current.kid, old_ring.current.kid]
    soon = NOW + timedelta(hours=7)
    assert validate_token(old_token, ring.jwks(soon), issuer=URL, now=soon)["iss"] == URL
    later = NOW + timedelta(hours=8, minutes=1)
    assert [k["kid"] for k in ring.jwks(later)["keys"]] == [ring.current.kid]
    # A restarted service sees the same retired key from disk.
    reloaded = KeyDirectory(tmp_path).load_or_create(URL, NOW)
    assert [r.retire_after for r in reloaded.retired] == [NOW + timedelta(hours=8)]


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_jwe_round_trip_to_enclave_key(kind: str) -> None:
    private: Any = RSAKey.generate_key(2048) if kind == "RSA" else ECKey.generate_key("P-256")
    wrapped = wrap_for_enclave(b"secret key", private.as_dict(private=False), kid="ek")
    header = token_header(wrapped)
    assert header["alg"] == ("RSA-OAEP-256" if kind == "RSA" else "ECDH-ES")
    assert header["enc"] == "A256GCM" and header["kid"] == "ek"
    assert unwrap(wrapped, private) == b"secret key"
    stranger: Any = RSAKey.generate_key(2048) if kind == "RSA" else ECKey.generate_key("P-256")
    with pytest.raises(InvalidInput, match="cannot decrypt"):
        unwrap(wrapped, stranger)


def test_jwe_refuses_unusable_enclave_keys() -> None:
    with pytest.raises(InvalidInput, match="cannot receive a key"):
        wrap_for_enclave(b"k", {"kty": "oct", "k": "AAAA"})
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    n = numbers.public_numbers().n.to_bytes(128, "big")
    small = {"kty": "RSA", "e": "AQAB", "n": base64.urlsafe_b64encode(n).rstrip(b"=").decode()}
    with pytest.raises(InvalidInput, match="at least 2048"):
        wrap_for_enclave(b"k", small)


# -- Key Vault release policies ----------------------------------------------------------------

RELEASE = {
    "version": "1.0.0",
    "anyOf": [
        {
            "authority": URL + "/",
            "allOf": [
                {"claim": "x-ms-sgx-mrsigner", "equals": "abcd"},
                {"claim": "x-ms-sgx-svn", "greaterOrEquals": 2},
                {"claim": "x-ms-sgx-is-debuggable", "equals": "false"},
                {"claim": "x-ms-runtime.keys", "exists": True},
                {"claim": "x-confnode-tcb-status", "notEquals": "OutOfDate"},
            ],
        }
    ],
}
GOOD = {
    "x-ms-sgx-mrsigner": "abcd",
    "x-ms-sgx-svn": 2,
    "x-ms-sgx-is-debuggable": False,
    "x-ms-runtime": {"keys": []},
    "x-confnode-tcb-status": "UpToDate",
}


def test_release_policy_matches() -> None:
    decision = evaluate_release_policy(parse_release_policy(json.dumps(RELEASE)), GOOD, issuer=URL)
    assert decision.allowed, decision.reasons


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"x-ms-sgx-mrsigner": "ffff"}, "x-ms-sgx-mrsigner equals"),
        ({"x-ms-sgx-svn": 1}, "x-ms-sgx-svn greaterOrEquals 2"),
        ({"x-ms-sgx-is-debuggable": True}, "x-ms-sgx-is-debuggable equals"),
        ({"x-ms-runtime": {}}, "x-ms-runtime.keys exists true"),
        ({"x-confnode-tcb-status": "OutOfDate"}, "notEquals"),
    ],
)
def test_release_policy_names_the_failed_condition(change: dict[str, Any], failed: str) -> None:
    policy = parse_release_policy(RELEASE)
    decision = evaluate_release_policy(policy, {**GOOD, **change}, issuer=URL)
    assert not decision.allowed
    assert failed in decision.reasons[0]


def test_release_policy_authority_must_be_the_token_issuer() -> None:
    decision = evaluate_release_policy(
        parse_release_policy(RELEASE), GOOD, issuer="https://elsewhere"
    )
    assert not decision.allowed
    assert "does not match token issuer" in decision.reasons[0]


def test_release_policy_any_of_and_legacy_condition_form() -> None:
    policy = parse_release_policy(
        {
            "anyOf": [
                {
                    "authority": URL,
                    "anyOf": [
                        {"claim": "x-ms-sgx-svn", "condition": "less", "value": 1},
                        {"claim": "x-ms-sgx-mrsigner", "condition": "equals", "value": "abcd"},
                    ],
                }
            ]
        }
    )
    assert evaluate_release_policy(policy, GOOD, issuer=URL).allowed


def _allows(condition: dict[str, Any], claims: dict[str, Any]) -> bool:
    policy = parse_release_policy({"anyOf": [{"authority": URL, "allOf": [condition]}]})
    return evaluate_release_policy(policy, claims, issuer=URL).allowed


@pytest.mark.parametrize(
    ("condition", "claims", "allowed"),
    [
        # notEquals "True" on a claim that is true held (its JSON spelling is "true"): fail open.
        ({"claim": "sim", "notEquals": "True"}, {"sim": True}, False),
        ({"claim": "sim", "notEquals": "True"}, {"sim": False}, True),
        ({"claim": "sim", "equals": "FALSE"}, {"sim": False}, True),
        ({"claim": "sim", "equals": "false"}, {"sim": True}, False),
        # Values that cannot be compared are neither equal nor "not equal".
        ({"claim": "d", "notEquals": "yes"}, {"d": True}, False),
        ({"claim": "d", "equals": "yes"}, {"d": True}, False),
        ({"claim": "svn", "notEquals": "abc"}, {"svn": 3}, False),
        ({"claim": "svn", "notEquals": "1_000"}, {"svn": 3}, False),
        ({"claim": "x", "notEquals": "value"}, {"x": None}, False),
        ({"claim": "x", "notEquals": "value"}, {"x": {"value": 1}}, False),
        # Numbers written as strings compare as numbers, both ways.
        ({"claim": "svn", "equals": "3"}, {"svn": 3}, True),
        ({"claim": "svn", "notEquals": "3"}, {"svn": 4}, True),
        ({"claim": "svn", "equals": 3}, {"svn": "3"}, True),
        ({"claim": "svn", "greaterOrEquals": "2"}, {"svn": 3}, True),
        ({"claim": "s", "notEquals": "UpToDate"}, {"s": "OutOfDate"}, True),
    ],
)  # fmt: skip
def test_release_policy_equality_across_types_fails_closed(
    condition: dict[str, Any], claims: dict[str, Any], allowed: bool
) -> None:
    assert _allows(condition, claims) is allowed


@given(
    st.booleans() | st.integers() | st.text(max_size=6) | st.floats(allow_nan=False),
    st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.lists(st.integers()),
)
def test_release_policy_equals_and_not_equals_never_both_hold(expected: Any, actual: Any) -> None:
    """For any claim value and policy value, at most one of equals/notEquals holds."""
    both = [_allows({"claim": "c", o: expected}, {"c": actual}) for o in ("equals", "notEquals")]
    assert not all(both)


def test_release_policy_compares_huge_numbers_without_overflow() -> None:
    """Integers beyond float range (JSON runtime data may carry them) compare exactly."""
    policy = parse_release_policy(
        {"anyOf": [{"authority": URL, "allOf": [{"claim": "x-ms-runtime.n", "greater": 1}]}]}
    )
    huge = {**GOOD, "x-ms-runtime": {"n": 10**400}}
    assert evaluate_release_policy(policy, huge, issuer=URL).allowed
    tiny = {**GOOD, "x-ms-runtime": {"n": -(10**400)}}
    assert not evaluate_release_policy(policy, tiny, issuer=URL).allowed


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{", "not JSON"),
        ("[" * 100_000, "not JSON"),
        ({"version": "2.0"}, "version '2.0'"),
        ({"anyOf": []}, "non-empty list"),
        ({"anyOf": [{"allOf": [{"claim": "a", "equals": 1}]}]}, "no 'authority'"),
        ({"anyOf": [{"authority": URL, "allOf": [{"claim": "a", "like": 1}]}]}, "operator"),
        ({"anyOf": [{"authority": URL, "allOf": [{"anyOf": []}]}]}, "cannot be nested"),
        ({"anyOf": [{"authority": URL, "allOf": [{"claim": "a", "exists": "yes"}]}]}, "true or"),
        ({"allOf": [], "anyOf": []}, "exactly one of"),
    ],
)
def test_release_policy_parse_errors(doc: Any, needle: str) -> None:
    with pytest.raises(PolicyParseError, match=needle):
        parse_release_policy(doc if isinstance(doc, str) else json.dumps(doc))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["anyOf", "allOf", "authority", "claim", "equals", "exists", "version"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_release_policy_parser_only_raises_parse_errors(doc: Any) -> None:
    try:
        policy = parse_release_policy(json.dumps(doc))
    except PolicyParseError:
        return
    evaluate_release_policy(policy, GOOD, issuer=URL)
