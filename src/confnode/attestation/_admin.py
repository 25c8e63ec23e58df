"""Who may manage policy: the caller of every ``/policies`` call is authenticated and authorized.

MAA requires an authenticated caller (Azure AD) on every policy-management call. On Kubernetes the
API server plays that role: the caller sends ``Authorization: Bearer <token>`` (a service-account
token issued for this service's audience, ``kubectl create token SA --audience
attestation.confnode.io``), a TokenReview says who it is, and a SubjectAccessReview says whether
RBAC lets it act on a virtual resource::

    apiGroup attestation.confnode.io, resource policies, name <attestation type>,
    verb get (GET) | update (PUT) | delete (reset)

so access is granted with an ordinary (Cluster)Role rule. The audience is what keeps a token
sent here from being worth anything elsewhere: without it, callers would hand this service tokens
valid for the API server itself (the default audience), which a compromised or impersonated
service could replay there with the caller's rights. The service calls the API server with
its own service-account token, which needs ``create`` on ``tokenreviews`` and
``subjectaccessreviews`` (what ``system:auth-delegator`` grants).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from confnode.errors import InfrastructureError, VerificationError

API_GROUP = "attestation.confnode.io"
#: The audience a caller's token must be issued for (TokenReview ``spec.audiences``).
AUDIENCE = API_GROUP
_AUDIENCE_HINT = f"send a token for this service: `kubectl create token SA --audience {AUDIENCE}`"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

Verb = Literal["get", "update", "delete"]


@dataclass(frozen=True, slots=True)
class ManagementAction:
    """What a caller wants to do, in SubjectAccessReview terms."""

    verb: Verb
    resource: str  # "policies"
    name: str  # the attestation type, e.g. "SgxEnclave"


@dataclass(frozen=True, slots=True)
class Caller:
    username: str
    groups: tuple[str, ...] = ()


class NotAuthenticated(VerificationError):
    """No bearer token, or one the authenticator does not accept."""

    step = "caller-authentication"


class NotAuthorized(VerificationError):
    """An authenticated caller without permission for the action."""

    step = "caller-authorization"


class ManagementDisabled(VerificationError):
    """Policy management on a service configured with no way to authenticate callers."""

    step = "caller-authentication"


class ManagementAuthorizer(Protocol):
    """Authenticates a bearer token and authorizes the action, or raises one of the above
    (:class:`confnode.InfrastructureError` when the authority cannot be asked)."""

    async def authorize(self, token: str, action: ManagementAction) -> Caller: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated(
            "policy management needs an authenticated caller; expected an "
            "'Authorization: Bearer <token>' header",
            hint=_AUDIENCE_HINT,
        )
    return token.strip()


class KubernetesReviews:
    """:class:`ManagementAuthorizer` backed by the API server's TokenReview and
    SubjectAccessReview, called with this pod's own service-account token."""

    def __init__(
        self,
        api_url: str,
        *,
        token_file: Path = SERVICE_ACCOUNT_DIR / "token",
        ca_file: Path | None = SERVICE_ACCOUNT_DIR / "ca.crt",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token_file = token_file
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._transport = transport
        self._timeout = timeout

    @classmethod
    def in_cluster(cls) -> KubernetesReviews:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise InfrastructureError(
                "--policy-admin-auth kubernetes needs the in-cluster API server "
                "(KUBERNETES_SERVICE_HOST is not set)",
                hint="run the service in a pod, or leave policy management off",
            )
        bracketed = f"[{host}]" if ":" in host else host
        return cls(f"https://{bracketed}:{port}")

    async def authorize(self, token: str, action: ManagementAction) -> Caller:
        try:
            own_token = self.token_file.read_text().strip()  # re-read: projected tokens rotate
        except OSError as error:
            raise InfrastructureError(f"cannot read service-account token: {error}") from error
        async with httpx.AsyncClient(
            base_url=self.api_url,
            verify=self._verify,
            transport=self._transport,
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {own_token}"},
        ) as http:
            review = await _create(
                http,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"},
                {"token": token, "audiences": [AUDIENCE]},
            )
            if review.get("authenticated") is not True:
                why = review.get("error") or "the token is not valid"
                raise NotAuthenticated(
                    f"the Kubernetes API server rejected the token: {why}", hint=_AUDIENCE_HINT
                )
            audiences = review.get("audiences")
            if not isinstance(audiences, list) or AUDIENCE not in audiences:
                # An authenticator that ignores spec.audiences: the token may be for anyone.
                raise NotAuthenticated(
                    f"the TokenReview does not confirm the token is for audience {AUDIENCE!r} "
                    f"(audiences {audiences!r})",
                    hint=_AUDIENCE_HINT,
                )
            user = review.get("user")
            if not isinstance(user, dict):
                user = {}
            username = user.get("username")
            if not isinstance(username, str) or not username:
                raise NotAuthenticated("TokenReview authenticated the token but named no user")
            groups = tuple(g for g in user.get("groups") or () if isinstance(g, str))
            spec: dict[str, Any] = {
                "user": username,
                "groups": list(groups),
                "resourceAttributes": {
                    "group": API_GROUP,
                    "resource": action.resource,
                    "name": action.name,
                    "verb": action.verb,
                },
            }
            for field in ("uid", "extra"):
                if user.get(field):
                    spec[field] = user[field]
            access = await _create(
                http,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview"},
                spec,
            )
        if access.get("allowed") is not True:
            reason = access.get("reason") or "no RBAC rule allows it"
            raise NotAuthorized(
                f"{username} may not {action.verb} {action.resource}/{action.name} "
                f"({API_GROUP}): {reason}"
            )
        return Caller(username, groups)


async def _create(
    http: httpx.AsyncClient, path: str, kind: dict[str, str], spec: dict[str, Any]
) -> dict[str, Any]:
    """POST a review object; its ``status`` (the API server fills it in on create)."""
    try:
        response = await http.post(path, json={**kind, "spec": spec})
    except httpx.HTTPError as error:
        raise InfrastructureError(f"{kind['kind']} failed: {error}") from error
    if response.status_code not in (200, 201):
        raise InfrastructureError(
            f"{kind['kind']} answered HTTP {response.status_code}: {response.text[:200]}",
            hint="the service account needs create on tokenreviews and subjectaccessreviews "
            "(ClusterRole system:auth-delegator)",
        )
    try:
        status = response.json().get("status")
    except (ValueError, AttributeError) as error:
        raise InfrastructureError(f"{kind['kind']} answered a body that is not JSON") from error
    return status if isinstance(status, dict) else {}
