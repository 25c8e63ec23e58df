"""A sample enclave-aware application: attest, then receive a key only this enclave can open.

The flow is what an SGX workload does on a confidential node, in eight timed steps:

1. ``enclave``   create the (simulated) enclave on the node's simulated platform;
2. ``key pair``  generate a key pair inside the enclave (EC P-256 or RSA-2048);
3. ``bind``      put the public key, as a JWK, in MAA JSON runtimeData ``{"keys": [jwk]}`` and
                 bind SHA-256(runtimeData) into report_data[0:32];
4. ``quote``     get the QE's target info and a quote through the AESM socket (quote helper);
5. ``attest``    ``POST /attest/SgxEnclave`` at the attestation service (HTTPS);
6. ``validate``  check the token against the service's JWKS and that it describes *this*
                 enclave (MRENCLAVE, report_data);
7. ``release``   ``POST /keys/{name}/release`` with the token;
8. ``decrypt``   open the JWE with the enclave's private key.

The private key never leaves the :class:`EnclaveApp` run (the sample's stand-in for enclave
memory). Each finished step is passed to a callback so a caller can print it live; a failed step
raises a :class:`SampleStepError` whose kind follows the CLI's exit codes (infrastructure,
verification, input) and whose message names the step.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from joserfc.jwk import ECKey, RSAKey

from confnode.attestation.client import AttestationClient, runtime_data_for_key
from confnode.client import InvalidReportError, QuoteClient
from confnode.errors import ConfnodeError, InfrastructureError, InvalidInput, VerificationError
from confnode.sgx import parse_quote
from confnode.sim import SimEnclave, SimPlatform
from confnode.tokens import unwrap, wrap_algorithm

__all__ = [
    "SAMPLE_MR_ENCLAVE",
    "SAMPLE_MR_SIGNER",
    "STEPS",
    "EnclaveApp",
    "EnclaveKey",
    "KeyType",
    "SampleInfrastructureError",
    "SampleInputError",
    "SampleResult",
    "SampleStepError",
    "SampleVerificationError",
    "Step",
    "StepCallback",
    "tls_context",
]

#: The sample enclave's identity: fixed and recognisable so a release policy can pin it.
SAMPLE_MR_ENCLAVE = hashlib.sha256(b"confnode sample enclave-aware app").digest()
SAMPLE_MR_SIGNER = hashlib.sha256(b"confnode sample app signer").digest()

#: Step names in order, with the one-line description shown next to each.
STEPS: Mapping[str, str] = {
    "enclave": "create a simulated enclave on the node's platform",
    "key pair": "generate a key pair inside the enclave",
    "bind": "bind the public key into report_data via runtimeData",
    "quote": "get a quote through the quote-helper socket (AESM)",
    "attest": "attest at the attestation service",
    "validate": "validate the token against the service's JWKS",
    "release": "request the key release with the token",
    "decrypt": "decrypt the released key inside the enclave",
}

KeyType = Literal["EC", "RSA"]
EnclaveKey = ECKey | RSAKey
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Step:
    """One finished step: its position, name, wall time and what it produced."""

    number: int
    name: str
    seconds: float
    detail: str

    @property
    def title(self) -> str:
        return STEPS[self.name]


StepCallback = Callable[[Step], None]


@dataclass(frozen=True, slots=True)
class SampleResult:
    """Everything the run established; the secret itself is kept out of ``repr``."""

    steps: tuple[Step, ...]
    mr_enclave: bytes
    mr_signer: bytes
    key_name: str
    #: ``kty`` of the released key (``oct`` for a raw key file).
    released_kty: str
    token: str = field(repr=False)
    claims: Mapping[str, Any] = field(repr=False)
    #: The released key material: the raw bytes of an ``oct`` key, else the key's JWK as JSON.
    secret: bytes = field(repr=False)

    @property
    def secret_sha256(self) -> str:
        """A fingerprint of the released secret that is safe to print."""
        return hashlib.sha256(self.secret).hexdigest()

    @property
    def total_seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


# --- errors -------------------------------------------------------------------------------------


class SampleStepError(ConfnodeError):
    """A step of the sample failed. ``step`` names it; ``completed`` holds the steps before it."""

    step: str

    def __init__(
        self,
        message: str,
        *,
        step: str,
        completed: tuple[Step, ...] = (),
        seconds: float = 0.0,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.completed = completed
        self.seconds = seconds


class SampleInfrastructureError(SampleStepError, InfrastructureError):
    """A peer (quote helper, attestation service) or the platform state was unavailable."""


class SampleVerificationError(SampleStepError, VerificationError):
    """The service refused the evidence or the key release, or its answer did not check out."""


class SampleInputError(SampleStepError, InvalidInput):
    """A parameter was wrong (e.g. an unknown key name)."""


#: Steps where an "invalid input" answer means the service refused what the enclave presented.
_REFUSAL_STEPS = frozenset({"attest", "decrypt"})


def _step_error(
    name: str, error: ConfnodeError, completed: tuple[Step, ...], seconds: float, hint: str | None
) -> SampleStepError:
    kind: type[SampleStepError]
    if isinstance(error, InfrastructureError):
        kind = SampleInfrastructureError
    elif isinstance(error, VerificationError) or (
        isinstance(error, InvalidInput) and name in _REFUSAL_STEPS
    ):
        kind = SampleVerificationError
    elif isinstance(error, InvalidInput):
        kind = SampleInputError
    else:  # a ConfnodeError of no particular kind can only have come from a peer
        kind = SampleInfrastructureError
    number = len(completed) + 1
    return kind(
        f"step {number} '{name}' ({STEPS[name]}) failed: {error.message}",
        step=name,
        completed=completed,
        seconds=seconds,
        hint=hint or error.hint,
    )


# --- the application ----------------------------------------------------------------------------


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tls_context(ca_cert: str | Path | None) -> ssl.SSLContext:
    """Client TLS settings: the system trust store, or only ``ca_cert`` when one is given."""
    try:
        return ssl.create_default_context(cafile=str(ca_cert) if ca_cert is not None else None)
    except (OSError, ssl.SSLError) as error:
        raise InvalidInput(f"cannot load CA certificate {ca_cert}: {error}") from error


class EnclaveApp:
    """The sample application. Configure it, then :meth:`run` the eight steps.

    Each step is a method so a variant of the app can replace one step (the tests bind a
    different key than the one they present, to show the service refuses it).
    """

    def __init__(
        self,
        *,
        socket_path: str | Path,
        sim_state: str | Path,
        attestation_url: str,
        tls: ssl.SSLContext | None = None,
        key_name: str = "sample-key",
        key_type: KeyType = "EC",
        mr_enclave: bytes = SAMPLE_MR_ENCLAVE,
        mr_signer: bytes = SAMPLE_MR_SIGNER,
        timeout: float = 15.0,
    ) -> None:
        if key_type not in ("EC", "RSA"):
            raise InvalidInput(f"key type {key_type!r}; expected 'EC' or 'RSA'")
        self.socket_path = Path(socket_path)
        self.sim_state = Path(sim_state)
        self.attestation_url = attestation_url.rstrip("/")
        self.tls = tls if tls is not None else tls_context(None)
        self.key_name = key_name
        self.key_type: KeyType = key_type
        self.mr_enclave = mr_enclave
        self.mr_signer = mr_signer
        self.timeout = timeout

    # -- the flow --------------------------------------------------------------------------------

    def run(self, on_step: StepCallback | None = None) -> SampleResult:
        """Run every step in order; ``on_step`` sees each one as soon as it has finished."""
        steps = _Steps(on_step)
        enclave = steps.run("enclave", self.create_enclave)
        key = steps.run("key pair", self.generate_key)
        runtime_json, report_data = steps.run("bind", lambda: self.bind(key))
        quote = steps.run("quote", lambda: self.get_quote(enclave, report_data), self._quote_hint)
        with AttestationClient(
            self.attestation_url, verify=self.tls, timeout=self.timeout
        ) as client:
            hint = self._service_hint
            token = steps.run("attest", lambda: self.attest(client, quote, runtime_json), hint)
            claims = steps.run(
                "validate", lambda: self.validate(client, token, enclave, report_data), hint
            )
            wrapped = steps.run("release", lambda: self.release(client, token), self._key_hint)
        kty, secret = steps.run("decrypt", lambda: self.decrypt(wrapped, key))
        return SampleResult(
            steps=tuple(steps.done),
            mr_enclave=enclave.identity.mr_enclave,
            mr_signer=enclave.identity.mr_signer,
            key_name=self.key_name,
            released_kty=kty,
            token=token,
            claims=claims,
            secret=secret,
        )

    # -- the steps (each returns its value and a one-line detail) --------------------------------

    def create_enclave(self) -> tuple[SimEnclave, str]:
        platform = SimPlatform.load(self.sim_state)
        enclave = platform.enclave(mr_enclave=self.mr_enclave, mr_signer=self.mr_signer)
        detail = (
            f"MRENCLAVE {self.mr_enclave.hex()[:16]}…, MRSIGNER {self.mr_signer.hex()[:16]}… "
            f"on simulated platform {self.sim_state} (TCB {platform.tcb_status})"
        )
        return enclave, detail

    def generate_key(self) -> tuple[EnclaveKey, str]:
        key: EnclaveKey = (
            ECKey.generate_key("P-256") if self.key_type == "EC" else RSAKey.generate_key(2048)
        )
        size = "P-256" if self.key_type == "EC" else "2048-bit"
        alg = wrap_algorithm(key.as_dict(private=False))
        return (
            key,
            f"{self.key_type} {size} key pair (release as {alg}), kid {key.thumbprint()[:12]}…",
        )

    def bind(self, key: EnclaveKey) -> tuple[tuple[bytes, bytes], str]:
        """runtimeData ``{"keys": [public JWK]}`` and report_data = SHA-256(runtimeData) ‖ 0³²."""
        public = {**key.as_dict(private=False), "kid": key.thumbprint()}
        runtime_json, report_data = runtime_data_for_key(public)
        detail = (
            f"runtimeData {len(runtime_json)} bytes of JSON, "
            f"report_data[0:32] = SHA-256 {report_data[:32].hex()[:16]}…"
        )
        return (runtime_json, report_data), detail

    def get_quote(self, enclave: SimEnclave, report_data: bytes) -> tuple[bytes, str]:
        client = QuoteClient(self.socket_path, timeout=self.timeout)
        report = enclave.report(client.target_info(), report_data)
        quote = client.quote(report)
        header = parse_quote(quote).header
        detail = (
            f"REPORT for the QE, quote v{header.version} of {len(quote)} bytes "
            f"from {self.socket_path}"
        )
        return quote, detail

    def attest(
        self, client: AttestationClient, quote: bytes, runtime_json: bytes
    ) -> tuple[str, str]:
        answer = client.attest_sgx(quote, runtime_json=runtime_json)
        token = answer.get("token")
        if not isinstance(token, str):
            raise InfrastructureError(
                f"{self.attestation_url} answered without a token (members {sorted(answer)})"
            )
        return token, f"POST /attest/SgxEnclave → token of {len(token)} bytes"

    def validate(
        self, client: AttestationClient, token: str, enclave: SimEnclave, report_data: bytes
    ) -> tuple[dict[str, Any], str]:
        """Check the signature and that the token speaks about this enclave and this key."""
        claims = client.validate(token, allow_simulated=True)  # this sample runs on the sim
        expected = enclave.identity.mr_enclave.hex()
        if claims.get("x-ms-sgx-mrenclave") != expected:
            raise VerificationError(
                f"token is for MRENCLAVE {claims.get('x-ms-sgx-mrenclave')!r}, "
                f"expected this enclave's {expected}",
                step="token-subject",
            )
        bound = str(claims.get("x-ms-sgx-report-data", ""))[:64]
        if bound != report_data[:32].hex():
            raise VerificationError(
                f"token's report_data[0:32] is {bound!r}, expected {report_data[:32].hex()} "
                "(the hash of this enclave's runtimeData)",
                step="token-subject",
            )
        detail = (
            f"RS256 signature verified with {self.attestation_url}/certs; "
            f"TCB {claims.get('x-confnode-tcb-status')}, "
            f"simulated={json.dumps(claims.get('x-confnode-simulated'))}, MRENCLAVE matches"
        )
        return claims, detail

    def release(self, client: AttestationClient, token: str) -> tuple[str, str]:
        wrapped = client.release(self.key_name, token)
        try:
            header = json.loads(_b64url_decode(wrapped.split(".", 1)[0]))
        except (binascii.Error, ValueError) as error:
            raise InfrastructureError(
                f"key release answered a value that is not a compact JWE: {error}"
            ) from error
        if not isinstance(header, dict):
            raise InfrastructureError("key release answered a JWE whose header is not an object")
        return wrapped, (
            f"POST /keys/{self.key_name}/release → JWE {header.get('alg')}/{header.get('enc')}, "
            f"{len(wrapped)} bytes"
        )

    def decrypt(self, wrapped: str, key: EnclaveKey) -> tuple[tuple[str, bytes], str]:
        plaintext = unwrap(wrapped, key)
        try:
            jwk = json.loads(plaintext)
        except ValueError as error:
            raise VerificationError(f"released key is not a JWK: {error}") from error
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kty"), str):
            raise VerificationError("released key is not a JWK (no 'kty')")
        if jwk.get("kid") != self.key_name:
            raise VerificationError(
                f"released key has kid {jwk.get('kid')!r}, expected {self.key_name!r}"
            )
        kty: str = jwk["kty"]
        if kty == "oct":
            try:
                secret = _b64url_decode(str(jwk.get("k", "")))
            except (binascii.Error, ValueError) as error:
                raise VerificationError(f"released oct key has a bad 'k': {error}") from error
        else:
            secret = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
        detail = (
            f"{kty} key '{self.key_name}', {len(secret)} bytes, "
            f"SHA-256 {hashlib.sha256(secret).hexdigest()[:16]}…"
        )
        return (kty, secret), detail

    # -- hints for failed steps ------------------------------------------------------------------

    def _quote_hint(self, error: ConfnodeError) -> str | None:
        if isinstance(error, InvalidReportError):
            return (
                f"the quote helper on {self.socket_path} serves another simulated platform: "
                f"start it with --state {self.sim_state}"
            )
        return None

    def _service_hint(self, error: ConfnodeError) -> str | None:
        if isinstance(error, InfrastructureError):
            return (
                f"is the attestation service running at {self.attestation_url}? "
                "For a self-signed TLS certificate pass its CA with --ca-cert"
            )
        return None

    def _key_hint(self, error: ConfnodeError) -> str | None:
        if isinstance(error, VerificationError):
            return (
                f"the release policy of key {self.key_name!r} does not admit this enclave; for a "
                f"simulated platform create the key with `confnode attestation new-key "
                f"{self.key_name} --keys-dir DIR --authority {self.attestation_url} "
                f"--allow-simulated --mrenclave {self.mr_enclave.hex()}`"
            )
        if isinstance(error, InvalidInput):
            return f"check the key name; the service's --keys-dir must hold {self.key_name}.key"
        return self._service_hint(error)


Hint = Callable[[ConfnodeError], str | None]


class _Steps:
    """Runs and times steps, reports each finished one, and wraps failures with the step name."""

    def __init__(self, on_step: StepCallback | None) -> None:
        self.on_step = on_step
        self.done: list[Step] = []

    def run(self, name: str, action: Callable[[], tuple[_T, str]], hint: Hint | None = None) -> _T:
        started = time.perf_counter()
        try:
            value, detail = action()
        except ConfnodeError as error:
            elapsed = time.perf_counter() - started
            extra = hint(error) if hint is not None else None
            raise _step_error(name, error, tuple(self.done), elapsed, extra) from error
        step = Step(len(self.done) + 1, name, time.perf_counter() - started, detail)
        self.done.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return value
