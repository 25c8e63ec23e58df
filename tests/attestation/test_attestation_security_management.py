"""Policy management is authenticated, and signed changes cannot be replayed or rolled back."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from attestation_testlib import (
    ADMIN,
    ADMIN_TOKEN,
    FakeReviews,
    ServiceFactory,
    SignerKey,
    admin_reviews,
    b64url,
    policy_signer,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from confnode.attestation import AttestationService, PolicyStore, unsigned_policy_jws
from confnode.attestation._admin import (
    API_GROUP,
    AUDIENCE,
    KubernetesReviews,
    ManagementAction,
    NotAuthenticated,
    NotAuthorized,
    bearer_token,
)
from confnode.attestation._policies import read_policy_jws, stored
from confnode.errors import InfrastructureError, InvalidInput, VerificationError
from confnode.policy import DEFAULT_SGX_POLICY

ClientFor = Callable[[AttestationService], httpx.AsyncClient]
POLICY = "version=1.0; authorizationrules { => permit(); }; issuancerules { };"
OLDER = "version=1.0; authorizationrules { => deny(); }; issuancerules { };"
PATH = "/policies/SgxEnclave"


def _signer() -> tuple[SignerKey, x509.Certificate]:
    return policy_signer(serial=7)


SIGNER = _signer()


def _sign(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """RS256 by hand (joserfc would refuse to produce some of the headers tested here)."""
    key, cert = SIGNER
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    protected = {"alg": "RS256", "x5c": x5c, **(header or {})}
    signing_input = (
        f"{b64url(json.dumps(protected).encode())}.{b64url(json.dumps(payload).encode())}"
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def _policy(text: str, iat: int | None) -> str:
    payload: dict[str, Any] = {"AttestationPolicy": b64url(text.encode())}
    if iat is not None:
        payload["iat"] = iat
    return _sign(payload)


def _reset(iat: int) -> str:
    return _sign({"iat": iat})


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return str(response.json()["error"]["message"])


@pytest.fixture
def admin(make_service: ServiceFactory, client_for: ClientFor) -> httpx.AsyncClient:
    """A service in isolated mode (signed changes) with authenticated management."""
    service = make_service(
        signers=(SIGNER[1],),
        management_auth=admin_reviews(),
        insecure_unsigned_policy_changes=False,
    )
    return client_for(service)


async def _current_text(client: httpx.AsyncClient) -> str:
    response = await client.get(PATH, headers=ADMIN)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    payload = json.loads(base64.urlsafe_b64decode(claims["x-ms-policy"].split(".")[1] + "=="))
    return base64.urlsafe_b64decode(payload["AttestationPolicy"] + "==").decode()


# -- authentication ------------------------------------------------------------------------------


async def test_without_authentication_configured_every_policy_call_is_refused(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    client = client_for(make_service(signers=(SIGNER[1],), insecure_unsigned_policy_changes=False))
    now = int(time.time())
    for response in (
        await client.get(PATH, headers=ADMIN),
        await client.put(PATH, content=_policy(POLICY, now), headers=ADMIN),
        await client.post(f"{PATH}:reset", content=_reset(now), headers=ADMIN),
    ):
        assert "no caller authentication" in _error(response, 403, "PolicyManagementDisabled")


async def test_policy_calls_need_a_bearer_token_the_authority_accepts(
    admin: httpx.AsyncClient,
) -> None:
    """The hole this closes: GET handed the signer's JWS to anyone who could reach the service."""
    assert "Bearer" in _error(await admin.get(PATH), 401, "Unauthenticated")
    stranger = {"Authorization": "Bearer stolen"}
    _error(await admin.get(PATH, headers=stranger), 401, "Unauthenticated")
    basic = {"Authorization": f"Basic {ADMIN_TOKEN}"}
    _error(await admin.get(PATH, headers=basic), 401, "Unauthenticated")
    now = int(time.time())
    put = await admin.put(PATH, content=_policy(POLICY, now), headers=stranger)
    _error(put, 401, "Unauthenticated")
    reset = await admin.post(f"{PATH}:reset", content=_reset(now))
    _error(reset, 401, "Unauthenticated")
    assert (await admin.get(PATH, headers=ADMIN)).status_code == 200


async def test_authorization_is_per_verb(
    make_service: ServiceFactory, client_for: ClientFor
) -> None:
    reviews = FakeReviews({"r": "reader"}, {("reader", "get")})
    client = client_for(
        make_service(
            signers=(SIGNER[1],), management_auth=reviews, insecure_unsigned_policy_changes=False
        )
    )
    reader = {"Authorization": "Bearer r"}
    assert (await client.get(PATH, headers=reader)).status_code == 200
    now = int(time.time())
    put = await client.put(PATH, content=_policy(POLICY, now), headers=reader)
    assert "reader may not update" in _error(put, 403, "Forbidden")
    reset = await client.post(f"{PATH}:reset", content=_reset(now), headers=reader)
    assert "reader may not delete" in _error(reset, 403, "Forbidden")


# -- replay and rollback -------------------------------------------------------------------------


async def test_signed_policy_cannot_be_replayed_or_rolled_back(admin: httpx.AsyncClient) -> None:
    now = int(time.time())
    older = _policy(OLDER, now - 60)
    newer = _policy(POLICY, now - 30)
    assert (await admin.put(PATH, content=older, headers=ADMIN)).status_code == 200
    assert (await admin.put(PATH, content=newer, headers=ADMIN)).status_code == 200
    rollback = await admin.put(PATH, content=older, headers=ADMIN)
    assert "not newer" in _error(rollback, 401, "PolicyNotFresh")
    replay = await admin.put(PATH, content=newer, headers=ADMIN)
    assert "not newer" in _error(replay, 401, "PolicyNotFresh")
    assert await _current_text(admin) == POLICY


async def test_signed_sgx_policy_cannot_be_replayed_to_another_attestation_type(
    admin: httpx.AsyncClient,
) -> None:
    signed = _policy(POLICY, int(time.time()))
    assert (await admin.put(PATH, content=signed, headers=ADMIN)).status_code == 200
    replay = await admin.put("/policies/TdxVm", content=signed, headers=ADMIN)
    assert "not newer" in _error(replay, 401, "PolicyNotFresh")


async def test_policy_jws_from_get_is_not_a_reset_request(admin: httpx.AsyncClient) -> None:
    """The reported attack: replay the signed policy GET returns to :reset."""
    now = int(time.time())
    assert (await admin.put(PATH, content=_policy(POLICY, now), headers=ADMIN)).status_code == 200
    token = (await admin.get(PATH, headers=ADMIN)).json()["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    reset = await admin.post(f"{PATH}:reset", content=claims["x-ms-policy"], headers=ADMIN)
    assert "not a reset request" in _error(reset, 400, "InvalidPolicy")
    assert await _current_text(admin) == POLICY


async def test_signed_reset_is_fresh_and_keeps_the_floor(admin: httpx.AsyncClient) -> None:
    now = int(time.time())
    policy = _policy(POLICY, now - 20)
    assert (await admin.put(PATH, content=policy, headers=ADMIN)).status_code == 200
    stale = await admin.post(f"{PATH}:reset", content=_reset(now - 20), headers=ADMIN)
    _error(stale, 401, "PolicyNotFresh")
    unsigned = await admin.post(f"{PATH}:reset", content=unsigned_policy_jws(None), headers=ADMIN)
    _error(unsigned, 401, "PolicySignerNotTrusted")
    reset = await admin.post(f"{PATH}:reset", content=_reset(now - 10), headers=ADMIN)
    assert reset.status_code == 200, reset.text
    assert await _current_text(admin) == DEFAULT_SGX_POLICY
    # After the reset, the policy it replaced cannot come back by replay.
    _error(await admin.put(PATH, content=policy, headers=ADMIN), 401, "PolicyNotFresh")
    again = await admin.post(f"{PATH}:reset", content=_reset(now - 10), headers=ADMIN)
    _error(again, 401, "PolicyNotFresh")


@pytest.mark.parametrize(
    ("iat", "needle"),
    [
        (None, "carries no iat"),
        (-3600, "expected between"),  # signed an hour ago: outside the freshness window
        (+3600, "expected between"),  # from the future
    ],
)
async def test_signed_policy_needs_a_recent_iat(
    admin: httpx.AsyncClient, iat: int | None, needle: str
) -> None:
    stamp = None if iat is None else int(time.time()) + iat
    response = await admin.put(PATH, content=_policy(POLICY, stamp), headers=ADMIN)
    assert needle in _error(response, 401, "PolicyNotFresh")


async def test_policy_jws_with_critical_extension_is_refused(admin: httpx.AsyncClient) -> None:
    payload = {"AttestationPolicy": b64url(POLICY.encode()), "iat": int(time.time())}
    signed = _sign(payload, {"crit": ["exp-ext"], "exp-ext": 1})
    response = await admin.put(PATH, content=signed, headers=ADMIN)
    assert "critical extensions" in _error(response, 400, "InvalidPolicy")


def test_policy_file_keeps_the_floor_across_replicas_and_resets(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    first, second = PolicyStore(path), PolicyStore(path)
    upload = read_policy_jws(_policy(POLICY, 1000), signers=(SIGNER[1],), require_policy=True)
    first.set(stored(POLICY, upload.jws, upload.signer), upload.issued_at)
    assert second.floor() == 1000
    second.set(None, 1200)
    assert first.current().text == DEFAULT_SGX_POLICY
    assert first.floor() == 1200
    assert PolicyStore(path).floor() == 1200  # a restarted replica too
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# -- the Kubernetes authorizer against a fake API server -----------------------------------------


class FakeApiServer:
    """TokenReview and SubjectAccessReview as the API server answers them. Tokens are issued for
    ``AUDIENCE`` unless listed in ``audiences`` (e.g. the API server's own audience)."""

    def __init__(
        self,
        users: dict[str, str],
        allowed: set[tuple[str, str]],
        audiences: dict[str, list[str]] | None = None,
    ) -> None:
        self.users = users
        self.allowed = allowed
        self.audiences = audiences or {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.status = 201
        #: An authenticator that ignores spec.audiences (answers without status.audiences).
        self.ignores_audiences = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((request.url.path, request.headers["authorization"], body))
        if self.status != 201:
            return httpx.Response(self.status, json={"kind": "Status", "reason": "Forbidden"})
        if request.url.path.endswith("/tokenreviews"):
            token = body["spec"]["token"]
            user = self.users.get(token)
            wanted = body["spec"].get("audiences") or ["https://kubernetes.default.svc"]
            common = [a for a in self.audiences.get(token, [AUDIENCE]) if a in wanted]
            status: dict[str, Any] = (
                {"authenticated": True, "user": {"username": user, "groups": ["g"], "uid": "u1"}}
                if user and common
                else {"authenticated": False, "error": "invalid bearer token"}
            )
            if user and common and not self.ignores_audiences:
                status["audiences"] = common
        else:
            attributes = body["spec"]["resourceAttributes"]
            allowed = (body["spec"]["user"], attributes["verb"]) in self.allowed
            status = {"allowed": allowed}
        return httpx.Response(201, json={**body, "status": status})


def _reviews(tmp_path: Path, api: FakeApiServer) -> KubernetesReviews:
    (tmp_path / "token").write_text("own-service-account-token\n")
    return KubernetesReviews(
        "https://api.test",
        token_file=tmp_path / "token",
        ca_file=None,
        transport=httpx.MockTransport(api),
    )


async def test_kubernetes_reviews_authenticate_then_authorize(tmp_path: Path) -> None:
    api = FakeApiServer({"t": "system:serviceaccount:ops:admin"}, set())
    api.allowed.add(("system:serviceaccount:ops:admin", "update"))
    reviews = _reviews(tmp_path, api)
    caller = await reviews.authorize("t", ManagementAction("update", "policies", "SgxEnclave"))
    assert caller.username == "system:serviceaccount:ops:admin" and caller.groups == ("g",)
    (review_path, own, review), (access_path, _, access) = api.requests
    assert review_path == "/apis/authentication.k8s.io/v1/tokenreviews"
    assert own == "Bearer own-service-account-token"  # the service's own token, not the caller's
    assert review["spec"] == {"token": "t", "audiences": [AUDIENCE]}
    assert access_path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert access["spec"]["user"] == "system:serviceaccount:ops:admin"
    assert access["spec"]["uid"] == "u1"
    assert access["spec"]["resourceAttributes"] == {
        "group": API_GROUP,
        "resource": "policies",
        "name": "SgxEnclave",
        "verb": "update",
    }
    with pytest.raises(NotAuthorized, match="may not delete policies/SgxEnclave"):
        await reviews.authorize("t", ManagementAction("delete", "policies", "SgxEnclave"))
    with pytest.raises(NotAuthenticated, match="invalid bearer token"):
        await reviews.authorize("nope", ManagementAction("get", "policies", "SgxEnclave"))


async def test_kubernetes_reviews_want_a_token_for_this_service(tmp_path: Path) -> None:
    """A token for the API server's own audience (``kubectl create token`` without --audience)
    is refused: callers would otherwise hand this service tokens it could replay there."""
    api = FakeApiServer(
        {"api": "admin", "ours": "admin"},
        {("admin", "get")},
        audiences={"api": ["https://kubernetes.default.svc"]},
    )
    reviews = _reviews(tmp_path, api)
    action = ManagementAction("get", "policies", "SgxEnclave")
    with pytest.raises(NotAuthenticated) as refused:
        await reviews.authorize("api", action)
    assert refused.value.hint is not None and f"--audience {AUDIENCE}" in refused.value.hint
    assert (await reviews.authorize("ours", action)).username == "admin"
    api.ignores_audiences = True  # an authenticator that cannot say whom the token is for
    with pytest.raises(NotAuthenticated, match="does not confirm the token is for audience"):
        await reviews.authorize("ours", action)


async def test_kubernetes_reviews_fail_closed_when_the_api_server_refuses(tmp_path: Path) -> None:
    api = FakeApiServer({"t": "admin"}, {("admin", "get")})
    api.status = 403  # the service account lacks system:auth-delegator
    reviews = _reviews(tmp_path, api)
    with pytest.raises(InfrastructureError, match="TokenReview answered HTTP 403"):
        await reviews.authorize("t", ManagementAction("get", "policies", "SgxEnclave"))


async def test_api_server_failure_is_503_without_details(
    make_service: ServiceFactory, client_for: ClientFor, tmp_path: Path
) -> None:
    api = FakeApiServer({"t": "admin"}, {("admin", "get")})
    api.status = 500
    client = client_for(make_service(management_auth=_reviews(tmp_path, api)))
    response = await client.get(PATH, headers={"Authorization": "Bearer t"})
    assert "api.test" not in _error(response, 503, "ServiceUnavailable")


# -- parsers never fail with anything but their own errors ----------------------------------------

_jws_parts = st.one_of(
    st.text(max_size=40),
    st.builds(lambda doc: b64url(json.dumps(doc).encode()), st.dictionaries(
        st.sampled_from(["alg", "crit", "iat", "AttestationPolicy", "jwk", "x5c"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                  st.lists(st.text(max_size=5), max_size=2)),
        max_size=4,
    )),
)  # fmt: skip


@given(st.lists(_jws_parts, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_read_policy_jws_fails_only_with_its_own_errors(
    parts: list[str], require_policy: bool, with_signer: bool
) -> None:
    signers = (SIGNER[1],) if with_signer else ()
    try:
        upload = read_policy_jws(".".join(parts), signers=signers, require_policy=require_policy)
    except (InvalidInput, VerificationError):
        return
    assert (upload.text is not None) is require_policy
    assert upload.issued_at is None or isinstance(upload.issued_at, int)


@given(st.text(max_size=60))
def test_bearer_token_is_a_token_or_not_authenticated(header: str) -> None:
    try:
        token = bearer_token(header)
    except NotAuthenticated:
        assert not header.lower().startswith("bearer ") or not header[7:].strip()
        return
    assert token and token == token.strip() and header.lower().startswith("bearer ")
