"""The MAA-compatible HTTP API (Starlette). Stateless apart from the policy store.

Routes::

    POST /attest/SgxEnclave?api-version=...     attest a quote, return {"token": JWT}
    POST /attest/OpenEnclave?api-version=...    same, body member "report" (an Open Enclave
                                                report around the quote); SgxEnclave policy
    POST /attest/Tee/SgxEnclave?api-version=2018-09-01-preview
                                                the preview route ({"Quote", "EnclaveHeldData"})
    POST /attest/TdxVm?api-version=...          attest a TD quote (v4/v5) with MAA's TDX claims
                                                (:mod:`._tdx`); TdxVm policy, /policies/TdxVm
    GET  /certs                                 JWKS of the token-signing keys (with x5c)
    GET  /.well-known/openid-configuration      OIDC discovery (issuer, jwks_uri)
    GET  /policies/SgxEnclave                   {"token": JWT{"x-ms-policy": policy JWS}}
    PUT  /policies/SgxEnclave                   body: policy JWS; {"token": JWT{policy result}}
    POST /policies/SgxEnclave:reset             body: JWS without a policy; back to default
    GET  /certificates                          {"token": JWT{"x-ms-policy-certificates": JWKS}}
    POST /certificates:add, :remove             refused: signers are configuration (--policy-signer)
    POST /keys/{name}/release                   {"target": token} -> key as JWE to the enclave
    GET  /servicehealth, /healthz               {"status": "ok"}

Every ``/policies`` call needs an authenticated, authorized caller (:mod:`._admin`). Simulated
evidence is refused unless ``allow_simulated``; its tokens then name the issuer
``<issuer>/simulated`` (with its own discovery document) and ``x-ms-attestation-type``
``sgx-simulated``, so a relying party that checks only the issuer and the signature still
cannot take them for tokens about real hardware.

Errors are MAA-shaped, ``{"error": {"code", "message"}}``, also for unknown routes (404) and
methods (405). Attestation answers as MAA does: 400 ``InvalidParameter`` for malformed input
(quote bytes that do not parse: ``innererror.code`` ``InvalidQuote``) and for evidence that does
not verify, 400 ``PolicyEvaluationError`` when the policy denies (401 would
make Azure's SDK report an authentication error); ``innererror.code`` names our specific reason
(e.g. ``QuoteSignatureInvalid``). Elsewhere: 401 credentials or tokens that do not verify, 403
not allowed (or a release policy said no), 404 unknown key, 413 body too large,
503 collateral unavailable (the message is generic; the details, e.g. the PCCS URL, are only
logged). Every rejection is logged with its reason (never the quote or token), control
characters escaped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cryptography import x509
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from confnode.attestation._admin import (
    ManagementAction,
    ManagementAuthorizer,
    ManagementDisabled,
    NotAuthenticated,
    NotAuthorized,
    Verb,
    bearer_token,
)
from confnode.attestation._claims import (
    BindingMismatch,
    add_legacy_claims,
    check_bindings,
    evidence_claims,
    incoming_claims,
    merge_issued,
    parse_attest_request,
    policy_certificates_claims,
)
from confnode.attestation._evidence import Appraiser, Evidence
from confnode.attestation._json import loads_strict
from confnode.attestation._keys import KeyNotFound, KeyStore
from confnode.attestation._policies import (
    PolicyChangesDisabled,
    PolicyJwsError,
    PolicyStore,
    StalePolicyChange,
    UntrustedPolicySigner,
    check_fresh,
    read_policy_jws,
    token_hash,
)
from confnode.attestation._tdx import (
    TDX_ATTESTATION_TYPE,
    TDX_CLAIMS,
    TdAppraiser,
    TdEvidence,
    check_td_bindings,
    td_claims,
    td_policy_store,
)
from confnode.errors import (
    ConfnodeError,
    InfrastructureError,
    InvalidInput,
    InvalidQuote,
    VerificationError,
)
from confnode.policy import (
    Evaluation,
    Policy,
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
#: ``/attest/OpenEnclave``: an Open Enclave report (an SGX quote in a 16-byte header).
OPEN_ENCLAVE_TYPE = "OpenEnclave"
DEFAULT_MAX_BODY = 256 * 1024
#: Path under the issuer that names tokens about simulated evidence (``iss``, discovery, JWKS).
SIMULATED_PATH = "/simulated"
#: ``x-ms-attestation-type`` of tokens about simulated evidence.
SIMULATED_ATTESTATION_TYPE = "sgx-simulated"
#: What a 503 says: the cause (a PCCS URL, a file path) is internal and only logged.
UNAVAILABLE_MESSAGE = "a backing service is unavailable; try again later"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BodyTooLarge(InvalidInput):
    """A request body over the configured limit."""


class AttestationDenied(PolicyDenied):
    """The attestation policy denied verified evidence (MAA: 400 ``PolicyEvaluationError``)."""


class CertificateChangesDisabled(VerificationError):
    """``/certificates:add`` or ``:remove``: policy signers are configuration, not API state."""

    step = "policy-signer"


class SimulatedEvidenceRefused(VerificationError):
    """Evidence from the simulated platform on a service that does not accept it."""

    step = "simulated"


#: C0 and C1 controls, DEL and the Unicode line/paragraph separators: what could forge or
#: hide log lines (CR/LF) or drive a terminal (ESC) when caller-supplied text is logged.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def loggable(text: str) -> str:
    """``text`` with control characters escaped (``\x1b``), safe on one log line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: Longest error message returned or logged (a denial quotes a rule, which may be huge).
MAX_MESSAGE = 2048
#: Bound on the draft-mode trace in a response (the sum of its rules' text and effects).
MAX_TRACE_BYTES = 64 * 1024
#: Longest rule text or effect shown in one trace entry.
MAX_TRACE_FIELD = 1024


def _evaluate(policy: Policy, claims: dict[str, Any]) -> Evaluation:
    return evaluate_policy(policy, incoming_claims(claims))


def _discovery(issuer: str) -> dict[str, Any]:
    """The OIDC discovery members every issuer of this service shares."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/certs",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["token", "none"],
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def trace_json(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The rule-by-rule trace, bounded: long texts are clipped and, past MAX_TRACE_BYTES, the
    remaining rules are summarised in one final entry instead of being rendered."""
    out: list[dict[str, Any]] = []
    size = 0
    for position, entry in enumerate(evaluation.trace):
        if size > MAX_TRACE_BYTES:
            left = len(evaluation.trace) - position
            out.append({"truncated": f"{left} more rule(s) not shown (trace limit reached)"})
            break
        item = entry.to_json()
        item["text"] = _clip(item["text"], MAX_TRACE_FIELD)
        item["effect"] = _clip(item["effect"], MAX_TRACE_FIELD)
        size += len(item["text"]) + len(item["effect"]) + 100
        out.append(item)
    return out


def _classify(error: ConfnodeError) -> tuple[int, str]:
    """HTTP status and MAA-style error code for an error raised while serving."""
    table: Sequence[tuple[type[ConfnodeError], int, str]] = (
        (BodyTooLarge, 413, "RequestEntityTooLarge"),
        (KeyNotFound, 404, "KeyNotFound"),
        (PolicyParseError, 400, "PolicyParsingError"),
        (PolicyJwsError, 400, "InvalidPolicy"),
        (BindingMismatch, 400, "InvalidParameter"),
        (InvalidQuote, 400, "InvalidParameter"),  # MAA's code for malformed evidence
        (InvalidInput, 400, "InvalidParameter"),
        (UntrustedPolicySigner, 401, "PolicySignerNotTrusted"),
        (StalePolicyChange, 401, "PolicyNotFresh"),
        (NotAuthenticated, 401, "Unauthenticated"),
        (NotAuthorized, 403, "Forbidden"),
        (ManagementDisabled, 403, "PolicyManagementDisabled"),
        (PolicyChangesDisabled, 403, "PolicyChangesDisabled"),
        (CertificateChangesDisabled, 403, "PolicyCertificateChangesDisabled"),
        (TokenValidationError, 401, "InvalidToken"),
        (AttestationDenied, 400, "PolicyEvaluationError"),
        (PolicyDenied, 403, "PolicyDenied"),
        (VerificationError, 400, "InvalidParameter"),  # evidence that does not verify, as MAA
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
    #: Authenticates and authorizes the caller of every ``/policies`` call. Without one, policy
    #: management is refused (unless ``insecure_unsigned_policy_changes``).
    management_auth: ManagementAuthorizer | None = None
    #: Without policy signers, PUT/reset of the policy would rest on the caller's identity alone
    #: (MAA's AAD mode), so they are refused unless this is set explicitly
    #: (``--insecure-allow-unsigned-policy-changes``). Without ``management_auth`` it also opens
    #: policy management to anyone who can reach the service (tests only).
    insecure_unsigned_policy_changes: bool = False
    #: Attest evidence that chains to the extra (simulated) root; refused otherwise.
    allow_simulated: bool = False
    max_body: int = DEFAULT_MAX_BODY
    clock: Clock = utc_now
    #: When set, the signing keys are re-read from here (rotation without restart).
    ring_source: ReloadingKeyRing | None = None
    #: ``/attest/TdxVm``: the TD quote verifier (TDX attestation is refused without one) and
    #: the TdxVm policy, kept apart from the SgxEnclave one as MAA keeps one per type.
    td_appraiser: TdAppraiser | None = None
    td_policies: PolicyStore = field(default_factory=td_policy_store)

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        self.simulated_issuer = self.issuer + SIMULATED_PATH
        self._tokens = TokenIssuer(self.ring, self.issuer)
        self._simulated_tokens = TokenIssuer(self.ring, self.simulated_issuer)

    @property
    def tokens(self) -> TokenIssuer:
        if self.ring_source is not None:
            ring = self.ring_source.current(self.clock())
            if ring is not self.ring:
                self.ring = ring
                self._tokens = TokenIssuer(ring, self.issuer)
                self._simulated_tokens = TokenIssuer(ring, self.simulated_issuer)
        return self._tokens

    def tokens_for(self, evidence: Evidence | TdEvidence) -> TokenIssuer:
        """The issuer of tokens about ``evidence``: a distinct one for simulated evidence."""
        tokens = self.tokens  # refreshes the ring for both
        return self._simulated_tokens if evidence.simulated else tokens

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
                    log.exception(
                        "%s %s failed unexpectedly", request.method, loggable(request.url.path)
                    )
                    body = {"error": {"code": "InternalError", "message": "internal error"}}
                    return JSONResponse(body, status_code=500)

            return endpoint

        routes = [
            Route("/attest/{kind}", guarded(self.attest), methods=["POST"]),
            Route("/attest/Tee/{kind}", guarded(self.attest), methods=["POST"]),  # 2018 preview
            Route("/certs", guarded(self.certs), methods=["GET"]),
            Route("/.well-known/openid-configuration", guarded(self.openid), methods=["GET"]),
            Route("/policies/{kind}:reset", guarded(self.reset_policy), methods=["POST"]),
            Route("/policies/{kind}", guarded(self.get_policy), methods=["GET"]),
            Route("/policies/{kind}", guarded(self.put_policy), methods=["PUT"]),
            Route("/keys/{name}/release", guarded(self.release), methods=["POST"]),
            Route("/certificates", guarded(self.certificates), methods=["GET"]),
            Route("/certificates:add", guarded(self.change_certificates), methods=["POST"]),
            Route("/certificates:remove", guarded(self.change_certificates), methods=["POST"]),
            Route("/healthz", guarded(self.healthz), methods=["GET"]),
            Route("/servicehealth", guarded(self.healthz), methods=["GET"]),
        ]
        if self.allow_simulated:  # the simulated issuer is an OIDC issuer of its own
            routes += [
                Route(f"{SIMULATED_PATH}/certs", guarded(self.certs), methods=["GET"]),
                Route(
                    f"{SIMULATED_PATH}/.well-known/openid-configuration",
                    guarded(self.simulated_openid),
                    methods=["GET"],
                ),
            ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    # -- helpers ---------------------------------------------------------------------------------

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Unknown routes (404) and methods (405) answer in MAA's error shape too."""
        assert isinstance(exc, HTTPException)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        message = f"{request.method} {loggable(request.url.path)}: {exc.detail}"
        body = {"error": {"code": code, "message": _clip(message, MAX_MESSAGE)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    def _reject(
        self, request: Request, error: ConfnodeError, extra: dict[str, Any] | None = None
    ) -> JSONResponse:
        status, code = _classify(error)
        client = request.client.host if request.client else "-"
        log.warning(
            "%s %s rejected: %d %s: %s (client %s)",
            request.method,
            loggable(request.url.path),
            status,
            code,
            loggable(_clip(error.message, MAX_MESSAGE)),
            client,
        )
        message = UNAVAILABLE_MESSAGE if status == 503 else _clip(error.message, MAX_MESSAGE)
        body: dict[str, Any] = {"error": {"code": code, "message": message}}
        # MAA's codes are generic; say which step failed, or that the quote did not parse.
        if isinstance(error, VerificationError):
            body["error"]["innererror"] = {"code": type(error).__name__, "step": error.step}
        elif isinstance(error, InvalidQuote):
            body["error"]["innererror"] = {"code": "InvalidQuote"}
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
        return loads_strict(await self._body(request), "request body")

    def _policy_store(self, request: Request) -> PolicyStore:
        """The policy of the request's attestation type (``SgxEnclave`` or ``TdxVm``)."""
        kind = request.path_params["kind"]
        if kind == ATTESTATION_TYPE:
            return self.policies
        if kind == TDX_ATTESTATION_TYPE:
            return self.td_policies
        raise InvalidInput(
            f"attestation type {kind!r} is not supported; expected {ATTESTATION_TYPE!r} or "
            f"{TDX_ATTESTATION_TYPE!r}"
        )

    # -- attestation -----------------------------------------------------------------------------

    def _attest_target(self, request: Request) -> tuple[PolicyStore, str]:
        """The policy for ``/attest/{kind}`` and the body member that holds the evidence."""
        if request.path_params["kind"] == OPEN_ENCLAVE_TYPE:  # an SGX quote in a wrapper
            return self.policies, "report"
        return self._policy_store(request), "quote"

    async def attest(self, request: Request) -> Response:
        store, member = self._attest_target(request)
        version = request.query_params.get("api-version")
        if version not in API_VERSIONS:
            raise InvalidInput(
                f"api-version {version!r} is not supported; expected one of "
                f"{', '.join(sorted(API_VERSIONS))}"
            )
        req = parse_attest_request(await self._json(request), evidence=member)
        now = self.clock()
        draft: Policy | None = None
        if req.draft_policy is not None:
            # Caller-written: parsed and evaluated in a worker thread, so that even a policy that
            # uses its whole work budget does not hold up other requests (or /healthz).
            draft = await run_in_threadpool(
                partial(parse_policy, claim_types=store.claim_types), req.draft_policy
            )
        evidence: Evidence | TdEvidence
        if store is self.td_policies:
            if self.td_appraiser is None:
                raise InvalidInput(
                    f"attestation type {TDX_ATTESTATION_TYPE!r} is not enabled on this service",
                    hint="configure a TD quote appraiser (TDX collateral source)",
                )
            evidence = await self.td_appraiser.appraise_td(req.quote, now=now)
        else:
            evidence = await self.appraiser.appraise(req.quote, now=now)
        if evidence.simulated and not self.allow_simulated:
            raise SimulatedEvidenceRefused(
                "the quote is from a simulated platform (its PCK chain ends in the simulation "
                "root, not Intel's); this service does not accept simulated evidence",
                hint="start the service with --allow-simulated (tests and demos only)",
            )
        if isinstance(evidence, TdEvidence):
            check_td_bindings(req, evidence)
            claims = td_claims(req, evidence)
        else:
            check_bindings(req, evidence)
            claims = evidence_claims(req, evidence)
            if evidence.simulated:
                claims["x-ms-attestation-type"] = SIMULATED_ATTESTATION_TYPE
        if draft is not None:
            policy, signer = draft, None
            evaluation = await run_in_threadpool(_evaluate, draft, claims)
        else:
            current = store.current()
            policy, signer = current.parsed, current.signer
            evaluation = _evaluate(policy, claims)
        if not evaluation.permitted:
            denial = AttestationDenied(f"attestation policy {evaluation.explain()}")
            extra = {"trace": trace_json(evaluation)} if draft is not None else None
            return self._reject(request, denial, extra)
        refused = merge_issued(claims, evaluation.issued_json(), reserved=TDX_CLAIMS)
        if refused:
            log.info(
                "policy tried to issue reserved claim(s) %s; ignored",
                loggable(", ".join(refused)[:MAX_MESSAGE]),
            )
        claims["x-ms-policy-hash"] = policy_hash(policy.text)
        if signer is not None:
            claims["x-ms-policy-signer"] = signer
        if req.nonce is not None:
            claims["nonce"] = req.nonce
        if not isinstance(evidence, TdEvidence):
            add_legacy_claims(claims)  # MAA's deprecated SGX claim names (maa-ehd, ver …)
        tokens = self.tokens_for(evidence)
        if draft is not None:  # the trace goes in the body only: once is enough
            body = {"token": tokens.unsigned(claims, now), "trace": trace_json(evaluation)}
            return JSONResponse(body)
        return JSONResponse({"token": tokens.sign(claims, now)})

    # -- discovery -------------------------------------------------------------------------------

    async def certs(self, request: Request) -> Response:
        return JSONResponse(self.tokens.ring.jwks(self.clock()))

    async def openid(self, request: Request) -> Response:
        return JSONResponse(
            {
                **_discovery(self.issuer),
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
                    *TDX_CLAIMS,
                ],
            }
        )

    async def simulated_openid(self, request: Request) -> Response:
        return JSONResponse(_discovery(self.simulated_issuer))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # -- policy management -----------------------------------------------------------------------

    async def _authorize(self, request: Request, verb: Verb, resource: str = "policies") -> None:
        """Authenticate and authorize the caller of a policy-management route (MAA: always)."""
        if self.management_auth is None:
            if self.insecure_unsigned_policy_changes:
                return
            raise ManagementDisabled(
                "policy management is disabled: no caller authentication is configured",
                hint="start the service with --policy-admin-auth kubernetes",
            )
        token = bearer_token(request.headers.get("authorization"))
        action = ManagementAction(verb, resource, request.path_params.get("kind", ""))
        caller = await self.management_auth.authorize(token, action)
        log.info("policy %s by %s", verb, loggable(caller.username))

    async def get_policy(self, request: Request) -> Response:
        store = self._policy_store(request)
        await self._authorize(request, "get")
        current = store.current()
        token = self.tokens.sign({"x-ms-policy": current.jws}, self.clock())
        return JSONResponse({"token": token})

    async def certificates(self, request: Request) -> Response:
        """The policy-signer certificates (MAA's policy management certificates)."""
        await self._authorize(request, "get", "certificates")
        claims = policy_certificates_claims(self.signers)
        return JSONResponse({"token": self.tokens.sign(claims, self.clock())})

    async def change_certificates(self, request: Request) -> Response:
        await self._authorize(request, "update", "certificates")
        raise CertificateChangesDisabled(
            "policy signer certificates cannot be changed through the API; they are the "
            "service's --policy-signer configuration",
            hint="add or remove --policy-signer CERT and roll the deployment",
        )

    def _floor(self) -> int:
        """The newest ``iat`` any policy store accepted: a signed change for one attestation
        type cannot be replayed to another either."""
        return max(self.policies.floor(), self.td_policies.floor())

    def _check_policy_changes_allowed(self) -> None:
        if not self.signers and not self.insecure_unsigned_policy_changes:
            raise PolicyChangesDisabled(
                "policy changes are disabled: no policy signer is configured, so nothing could "
                "authenticate them",
                hint="start the service with --policy-signer CERT (or, for tests only, "
                "--insecure-allow-unsigned-policy-changes)",
            )

    async def put_policy(self, request: Request) -> Response:
        store = self._policy_store(request)
        await self._authorize(request, "update")
        self._check_policy_changes_allowed()
        body = (await self._body(request)).decode("utf-8", "replace")
        upload = read_policy_jws(body, signers=self.signers, require_policy=True)
        assert upload.text is not None  # require_policy guarantees it
        check_fresh(upload, self._floor(), self.clock())
        new = store.stored(upload.text, upload.jws, upload.signer)
        store.set(new, upload.issued_at if upload.signer is not None else None)
        log.info("policy updated (hash %s, signed: %s)", new.hash, upload.signer is not None)
        result: dict[str, Any] = {
            "x-ms-policy-result": "Updated",
            "x-ms-policy-token-hash": token_hash(upload.jws),
        }
        if upload.signer is not None:
            result["x-ms-policy-signer"] = upload.signer
        return JSONResponse({"token": self.tokens.sign(result, self.clock())})

    async def reset_policy(self, request: Request) -> Response:
        store = self._policy_store(request)
        await self._authorize(request, "delete")
        self._check_policy_changes_allowed()
        body = (await self._body(request)).decode("utf-8", "replace")
        upload = read_policy_jws(body, signers=self.signers, require_policy=False)
        check_fresh(upload, self._floor(), self.clock())
        store.set(None, upload.issued_at if upload.signer is not None else None)
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
        issuers = (self.issuer, self.simulated_issuer) if self.allow_simulated else self.issuer
        claims = validate_token(target, self.tokens.ring.jwks(now), issuer=issuers, now=now)
        key = self.keys.get(request.path_params["name"])
        # A policy names the simulated issuer as its authority to admit simulated enclaves.
        decision = evaluate_release_policy(key.policy, claims, issuer=claims["iss"])
        if not decision.allowed:
            raise PolicyDenied(
                f"release policy of key {key.name!r} not satisfied: {'; '.join(decision.reasons)}"
            )
        enclave_key = _enclave_key(claims)
        plaintext = json.dumps({**key.jwk, "kid": key.name}).encode()
        value = wrap_for_enclave(plaintext, enclave_key, kid=enclave_key.get("kid"))
        log.info(
            "key %s released to enclave %s",
            key.name,
            loggable(str(claims.get("x-ms-sgx-mrenclave") or claims.get("tdx_mrtd"))),
        )
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
