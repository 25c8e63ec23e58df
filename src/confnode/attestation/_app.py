"""The MAA-compatible HTTP API (Starlette). Stateless apart from the policy store.

Routes::

    POST /attest/SgxEnclave?api-version=...     attest a quote, return {"token": JWT}
    GET  /certs                                 JWKS of the token-signing keys (with x5c)
    GET  /.well-known/openid-configuration      OIDC discovery (issuer, jwks_uri)
    GET  /policies/SgxEnclave                   {"token": JWT{"x-ms-policy": policy JWS}}
    PUT  /policies/SgxEnclave                   body: policy JWS; {"token": JWT{policy result}}
    POST /policies/SgxEnclave:reset             body: JWS with empty payload; back to default
    POST /keys/{name}/release                   {"target": token} -> key as JWE to the enclave

Errors are MAA-shaped, ``{"error": {"code", "message"}}``: 400 malformed input, 401 evidence or
credentials that do not verify, 403 a policy said no, 404 unknown key, 413 body too large,
503 collateral unavailable. Every rejection is logged with its reason (never the quote or token).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confnode.attestation._claims import (
    BindingMismatch,
    check_bindings,
    evidence_claims,
    incoming_claims,
    merge_issued,
    parse_attest_request,
)
from confnode.attestation._evidence import Appraiser
from confnode.attestation._keys import KeyNotFound, KeyStore
from confnode.attestation._policies import (
    PolicyChangesDisabled,
    PolicyJwsError,
    PolicyStore,
    UntrustedPolicySigner,
    read_policy_jws,
    stored,
    token_hash,
)
from confnode.errors import (
    ConfnodeError,
    InfrastructureError,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)
from confnode.policy import (
    PolicyDenied,
    PolicyParseError,
    evaluate_policy,
    evaluate_release_policy,
    parse_policy,
    policy_hash,
)
from confnode.tokens import (
    KeyRing,
    ReloadingKeyRing,
    TokenIssuer,
    TokenValidationError,
    validate_token,
    wrap_for_enclave,
)

log = logging.getLogger("confnode.attestation")

#: api-version values MAA clients send (the 1.0 Python SDK still sends 2020-10-01).
API_VERSIONS = frozenset({"2018-09-01-preview", "2020-10-01", "2022-08-01", "2025-06-01"})
ATTESTATION_TYPE = "SgxEnclave"
DEFAULT_MAX_BODY = 256 * 1024

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BodyTooLarge(InvalidInput):
    """A request body over the configured limit."""


def _classify(error: ConfnodeError) -> tuple[int, str]:
    """HTTP status and MAA-style error code for an error raised while serving."""
    table: Sequence[tuple[type[ConfnodeError], int, str]] = (
        (BodyTooLarge, 413, "RequestEntityTooLarge"),
        (KeyNotFound, 404, "KeyNotFound"),
        (PolicyParseError, 400, "InvalidPolicy"),
        (PolicyJwsError, 400, "InvalidPolicy"),
        (BindingMismatch, 400, "InvalidParameter"),
        (InvalidQuote, 400, "InvalidQuote"),
        (InvalidInput, 400, "InvalidParameter"),
        (UntrustedPolicySigner, 401, "PolicySignerNotTrusted"),
        (PolicyChangesDisabled, 403, "PolicyChangesDisabled"),
        (TokenValidationError, 401, "InvalidToken"),
        (PolicyDenied, 403, "PolicyDenied"),
        (VerificationError, 401, "AttestationFailed"),
        (InfrastructureError, 503, "ServiceUnavailable"),
    )
    for kind, status, code in table:
        if isinstance(error, kind):
            return status, code
    return 500, "InternalError"


@dataclass
class AttestationService:
    """Everything a request needs; build the ASGI app with :meth:`app`."""

    appraiser: Appraiser
    ring: KeyRing
    issuer: str
    policies: PolicyStore
    keys: KeyStore
    signers: tuple[x509.Certificate, ...] = ()
    #: Without policy signers, PUT/reset of the policy would be open to anyone who can reach the
    #: service (MAA's AAD mode relies on Azure AD, which we do not have), so it is refused unless
    #: this is set explicitly (``--insecure-allow-unsigned-policy-changes``).
    insecure_unsigned_policy_changes: bool = False
    max_body: int = DEFAULT_MAX_BODY
    clock: Clock = utc_now
    #: When set, the signing keys are re-read from here (rotation without restart).
    ring_source: ReloadingKeyRing | None = None

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        self._tokens = TokenIssuer(self.ring, self.issuer)

    @property
    def tokens(self) -> TokenIssuer:
        if self.ring_source is not None:
            ring = self.ring_source.current(self.clock())
            if ring is not self.ring:
                self.ring = ring
                self._tokens = TokenIssuer(ring, self.issuer)
        return self._tokens

    def app(self) -> Starlette:
        def guarded(
            handler: Callable[[Request], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                try:
                    return await handler(request)
                except ConfnodeError as error:
                    return self._reject(request, error)
                except Exception:  # a bug must not become a token or a bare 500 page
                    log.exception("%s %s failed unexpectedly", request.method, request.url.path)
                    body = {"error": {"code": "InternalError", "message": "internal error"}}
                    return JSONResponse(body, status_code=500)

            return endpoint

        routes = [
            Route("/attest/{kind}", guarded(self.attest), methods=["POST"]),
            Route("/certs", guarded(self.certs), methods=["GET"]),
            Route("/.well-known/openid-configuration", guarded(self.openid), methods=["GET"]),
            Route("/policies/{kind}:reset", guarded(self.reset_policy), methods=["POST"]),
            Route("/policies/{kind}", guarded(self.get_policy), methods=["GET"]),
            Route("/policies/{kind}", guarded(self.put_policy), methods=["PUT"]),
            Route("/keys/{name}/release", guarded(self.release), methods=["POST"]),
            Route("/healthz", guarded(self.healthz), methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # -- helpers ---------------------------------------------------------------------------------

    def _reject(
        self, request: Request, error: ConfnodeError, extra: dict[str, Any] | None = None
    ) -> JSONResponse:
        status, code = _classify(error)
        client = request.client.host if request.client else "-"
        log.warning(
            "%s %s rejected: %d %s: %s (client %s)",
            request.method,
            request.url.path,
            status,
            code,
            error.message,
            client,
        )
        body: dict[str, Any] = {"error": {"code": code, "message": error.message}}
        if extra:
            body["error"].update(extra)
        return JSONResponse(body, status_code=status)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(
                f"request body is {declared} bytes, the limit is {self.max_body} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request) -> Any:
        raw = await self._body(request)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
            raise InvalidInput(f"request body is not JSON: {error}") from error

    @staticmethod
    def _check_kind(request: Request) -> None:
        kind = request.path_params["kind"]
        if kind != ATTESTATION_TYPE:
            raise InvalidInput(
                f"attestation type {kind!r} is not supported; expected {ATTESTATION_TYPE!r}"
            )

    # -- attestation -----------------------------------------------------------------------------

    async def attest(self, request: Request) -> Response:
        self._check_kind(request)
        version = request.query_params.get("api-version")
        if version not in API_VERSIONS:
            raise InvalidInput(
                f"api-version {version!r} is not supported; expected one of "
                f"{', '.join(sorted(API_VERSIONS))}"
            )
        req = parse_attest_request(await self._json(request))
        now = self.clock()
        if req.draft_policy is not None:
            policy = parse_policy(req.draft_policy)
            signer = None
        else:
            current = self.policies.current()
            policy, signer = current.parsed, current.signer
        evidence = await self.appraiser.appraise(req.quote, now=now)
        check_bindings(req, evidence)
        claims = evidence_claims(req, evidence)
        evaluation = evaluate_policy(policy, incoming_claims(claims))
        trace = [t.to_json() for t in evaluation.trace]
        if not evaluation.permitted:
            denial = PolicyDenied(f"attestation policy {evaluation.explain()}")
            extra = {"trace": trace} if req.draft_policy is not None else None
            return self._reject(request, denial, extra)
        refused = merge_issued(claims, evaluation.issued_json())
        if refused:
            log.info("policy tried to issue reserved claim(s) %s; ignored", ", ".join(refused))
        claims["x-ms-policy-hash"] = policy_hash(policy.text)
        if signer is not None:
            claims["x-ms-policy-signer"] = signer
        if req.nonce is not None:
            claims["nonce"] = req.nonce
        if req.draft_policy is not None:
            claims["x-confnode-policy-trace"] = trace
            return JSONResponse({"token": self.tokens.unsigned(claims, now), "trace": trace})
        return JSONResponse({"token": self.tokens.sign(claims, now)})

    # -- discovery -------------------------------------------------------------------------------

    async def certs(self, request: Request) -> Response:
        return JSONResponse(self.tokens.ring.jwks(self.clock()))

    async def openid(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/certs",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["token", "none"],
                "claims_supported": [
                    "x-ms-ver",
                    "x-ms-attestation-type",
                    "x-ms-policy-hash",
                    "x-ms-sgx-is-debuggable",
                    "x-ms-sgx-mrenclave",
                    "x-ms-sgx-mrsigner",
                    "x-ms-sgx-product-id",
                    "x-ms-sgx-svn",
                    "x-ms-sgx-ehd",
                    "x-ms-sgx-report-data",
                    "x-ms-sgx-collateral",
                    "x-ms-runtime",
                    "x-confnode-tcb-status",
                    "x-confnode-advisory-ids",
                    "x-confnode-collateral-expired",
                    "x-confnode-simulated",
                    "nonce",
                ],
            }
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # -- policy management -----------------------------------------------------------------------

    async def get_policy(self, request: Request) -> Response:
        self._check_kind(request)
        current = self.policies.current()
        token = self.tokens.sign({"x-ms-policy": current.jws}, self.clock())
        return JSONResponse({"token": token})

    def _check_policy_changes_allowed(self) -> None:
        if not self.signers and not self.insecure_unsigned_policy_changes:
            raise PolicyChangesDisabled(
                "policy changes are disabled: no policy signer is configured, so nothing could "
                "authenticate them",
                hint="start the service with --policy-signer CERT (or, for tests only, "
                "--insecure-allow-unsigned-policy-changes)",
            )

    async def put_policy(self, request: Request) -> Response:
        self._check_kind(request)
        self._check_policy_changes_allowed()
        body = (await self._body(request)).decode("utf-8", "replace")
        upload = read_policy_jws(body, signers=self.signers, require_policy=True)
        assert upload.text is not None  # require_policy guarantees it
        new = stored(upload.text, upload.jws, upload.signer)
        self.policies.set(new)
        log.info("policy updated (hash %s, signed: %s)", new.hash, upload.signer is not None)
        result: dict[str, Any] = {
            "x-ms-policy-result": "Updated",
            "x-ms-policy-token-hash": token_hash(upload.jws),
        }
        if upload.signer is not None:
            result["x-ms-policy-signer"] = upload.signer
        return JSONResponse({"token": self.tokens.sign(result, self.clock())})

    async def reset_policy(self, request: Request) -> Response:
        self._check_kind(request)
        self._check_policy_changes_allowed()
        body = (await self._body(request)).decode("utf-8", "replace")
        upload = read_policy_jws(body, signers=self.signers, require_policy=False)
        self.policies.set(None)
        log.info("policy reset to the default")
        result: dict[str, Any] = {"x-ms-policy-result": "Removed"}
        if upload.signer is not None:
            result["x-ms-policy-signer"] = upload.signer
        return JSONResponse({"token": self.tokens.sign(result, self.clock())})

    # -- key release -----------------------------------------------------------------------------

    async def release(self, request: Request) -> Response:
        body = await self._json(request)
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str):
            raise InvalidInput('release body must be {"target": <attestation token>}')
        now = self.clock()
        claims = validate_token(target, self.tokens.ring.jwks(now), issuer=self.issuer, now=now)
        key = self.keys.get(request.path_params["name"])
        decision = evaluate_release_policy(key.policy, claims, issuer=self.issuer)
        if not decision.allowed:
            raise PolicyDenied(
                f"release policy of key {key.name!r} not satisfied: {'; '.join(decision.reasons)}"
            )
        enclave_key = _enclave_key(claims)
        plaintext = json.dumps({**key.jwk, "kid": key.name}).encode()
        value = wrap_for_enclave(plaintext, enclave_key, kid=enclave_key.get("kid"))
        log.info("key %s released to enclave %s", key.name, claims.get("x-ms-sgx-mrenclave"))
        return JSONResponse({"key": key.name, "value": value})


def _enclave_key(claims: dict[str, Any]) -> dict[str, Any]:
    """The enclave's public key bound through JSON runtimeData: ``x-ms-runtime.keys[...]``."""
    runtime = claims.get("x-ms-runtime")
    keys = runtime.get("keys") if isinstance(runtime, dict) else None
    if isinstance(keys, list):
        for jwk in keys:
            if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC") and "d" not in jwk:
                return jwk
    raise InvalidInput(
        "token carries no enclave public key: attest with JSON runtimeData "
        '{"keys": [<RSA or EC public JWK>]} so that x-ms-runtime.keys names the key to wrap to'
    )
