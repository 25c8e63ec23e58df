"""A PCS/PCCS-compatible collateral service for a simulated platform (Starlette app).

Serves Intel PCS v4 routes under ``/sgx/certification/v4`` (and, for the platform's simulated
TDX host, ``/tdx/certification/v4/tcb`` and ``/qe/identity``) with the same headers and encodings
(issuer chains percent-encoded PEM; ``/pckcrl`` PEM by default or DER; PCCS's hex-encoded
``/rootcacrl``), so unmodified clients — Intel's QPL, dcap-qvl's ``get_collateral``, confnode's
own client — can fetch simulated collateral. Collateral is issued for "now" from an injectable
clock, so it rolls over daily exactly like the platform's bundle.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from confnode.pccs._wire import (
    API_PREFIX,
    ENCLAVE_IDENTITY_ISSUER_CHAIN,
    FMSPC,
    PCK_CERT_CA_TYPE,
    PCK_CERT_ISSUER_CHAIN,
    PCK_CRL_ISSUER_CHAIN,
    TCB_INFO_ISSUER_CHAIN,
    TCBM,
    TDX_API_PREFIX,
    encode_chain,
)
from confnode.sim import SimPcsResponses, SimPlatform
from confnode.sim.pki import ROOT_CRL_URL
from confnode.sim.tdx import SimTdxPlatform

_HEX = re.compile(r"[0-9a-fA-F]+")

Clock = Callable[[], datetime]
Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status: int, code: str, message: str) -> Response:
    """Intel PCS errors: empty body, ``Error-Code`` / ``Error-Message`` headers."""
    return Response(
        status_code=status,
        headers={"Error-Code": code, "Error-Message": message, "Request-ID": uuid.uuid4().hex},
    )


def _ok(body: bytes | str, media_type: str, headers: dict[str, str]) -> Response:
    headers = {**headers, "Request-ID": uuid.uuid4().hex}
    return Response(body, media_type=media_type, headers=headers)


def _hex_param(request: Request, name: str, digits: int | None) -> str | None:
    value = request.query_params.get(name)
    if value is None or not _HEX.fullmatch(value):
        return None
    if digits is not None and len(value) != digits:
        return None
    return value.upper()


def create_app(platform: SimPlatform, *, clock: Clock | None = None) -> Starlette:
    """The PCS v4 / PCCS routes for ``platform``'s simulated Intel services."""
    now: Clock = clock or (lambda: datetime.now(UTC))
    fmspc_hex = platform.fmspc.hex().upper()
    pce_id_hex = platform.config.pce_id.upper()
    qe_id_hex = platform.qe_id.hex().upper()
    tdx = SimTdxPlatform(platform)

    def bad_update_params(request: Request) -> Response | None:
        update = request.query_params.get("update")
        number = request.query_params.get("tcbEvaluationDataNumber")
        if update is not None and number is not None:
            return _error(
                400, "InvalidRequestSyntax", "update and tcbEvaluationDataNumber are exclusive"
            )
        if update is not None and update not in ("early", "standard"):
            return _error(400, "InvalidRequestSyntax", "update must be early or standard")
        if number is not None:
            if not (number.isascii() and number.isdigit()):
                return _error(
                    400, "InvalidRequestSyntax", "tcbEvaluationDataNumber is not a number"
                )
            if int(number) != platform.config.tcb_evaluation_data_number:
                return _error(404, "NotFound", "no collateral for this tcbEvaluationDataNumber")
        return None

    async def pckcrl(request: Request) -> Response:
        ca = request.query_params.get("ca", "").lower()
        encoding = request.query_params.get("encoding", "pem").lower()
        if ca not in ("processor", "platform") or encoding not in ("pem", "der"):
            return _error(
                400, "InvalidRequestSyntax", "ca must be processor|platform, encoding pem|der"
            )
        # One CRL per CA for the whole host, as Intel's: the TDX host's responses carry the SGX
        # platform's CRLs plus its own revoked PCK (a TD quote's PCK is under the Platform CA).
        responses = tdx.pcs_responses(now())
        der = responses.pck_crls[ca]
        chain = {PCK_CRL_ISSUER_CHAIN: encode_chain(responses.pck_crl_issuer_chains[ca])}
        if encoding == "der":
            return _ok(der, "application/pkix-crl", chain)
        pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
        return _ok(pem, "application/x-pem-file", chain)

    def signed_json(
        request: Request,
        responses: Callable[[datetime], SimPcsResponses],
        pick: Callable[[SimPcsResponses], tuple[str, str]],
        chain_header: str,
    ) -> Response:
        """A signed JSON document ``pick`` chooses as (body, issuer chain) from the responses."""
        problem = bad_update_params(request)
        if problem is not None:
            return problem
        body, chain = pick(responses(now()))
        return _ok(body, "application/json", {chain_header: encode_chain(chain)})

    def tcb_route(fmspc_hex: str, responses: Callable[[datetime], SimPcsResponses]) -> Endpoint:
        async def tcb(request: Request) -> Response:
            fmspc = _hex_param(request, "fmspc", 12)
            if fmspc is None:
                return _error(400, "InvalidRequestSyntax", "fmspc must be 12 hex digits")
            if fmspc != fmspc_hex:
                return _error(404, "NotFound", f"no TCB Info for FMSPC {fmspc}")
            return signed_json(
                request,
                responses,
                lambda r: (r.tcb_info, r.tcb_info_issuer_chain),
                TCB_INFO_ISSUER_CHAIN,
            )

        return tcb

    def qe_identity_route(responses: Callable[[datetime], SimPcsResponses]) -> Endpoint:
        async def qe_identity(request: Request) -> Response:
            return signed_json(
                request,
                responses,
                lambda r: (r.qe_identity, r.qe_identity_issuer_chain),
                ENCLAVE_IDENTITY_ISSUER_CHAIN,
            )

        return qe_identity

    async def rootcacrl(request: Request) -> Response:
        # PCCS serves the Root CA CRL hex-encoded (backward compatibility with its v3 API).
        return _ok(platform.pcs_responses(now()).root_ca_crl.hex(), "text/plain", {})

    async def root_crl_der(request: Request) -> Response:
        # The root certificate's CRL distribution point, as Intel serves it: raw DER.
        return _ok(platform.pcs_responses(now()).root_ca_crl, "application/pkix-crl", {})

    async def pckcert(request: Request) -> Response:
        qeid = _hex_param(request, "qeid", None)
        cpusvn = _hex_param(request, "cpusvn", 32)
        pcesvn = _hex_param(request, "pcesvn", 4)
        pceid = _hex_param(request, "pceid", 4)
        encrypted_ppid = _hex_param(request, "encrypted_ppid", 768)
        if (
            cpusvn is None
            or pcesvn is None
            or pceid is None
            or (qeid is None and encrypted_ppid is None)
            or (qeid is not None and len(qeid) > 260)
            or ("encrypted_ppid" in request.query_params and encrypted_ppid is None)
        ):
            return _error(
                400,
                "InvalidRequestSyntax",
                "need qeid (up to 260 hex) or encrypted_ppid (768 hex), cpusvn (32 hex), "
                "pcesvn (4 hex), pceid (4 hex)",
            )
        if pceid != pce_id_hex or (qeid is not None and qeid != qe_id_hex):
            return _error(404, "NotFound", "no PCK certificate for this platform")
        ext = platform.pck_extension
        tcbm = ext.tcb.cpusvn.hex() + ext.tcb.pcesvn.to_bytes(2, "little").hex()
        cert_pem = platform.pck_certificate.public_bytes(serialization.Encoding.PEM)
        return _ok(
            cert_pem,
            "application/x-pem-file",
            {
                PCK_CERT_ISSUER_CHAIN: encode_chain(platform.pck_issuer_chain_pem),
                TCBM: tcbm.upper(),
                FMSPC: fmspc_hex,
                PCK_CERT_CA_TYPE: platform.ca_type,
            },
        )

    routes = [
        Route(f"{API_PREFIX}/pckcrl", pckcrl),
        Route(f"{API_PREFIX}/tcb", tcb_route(fmspc_hex, platform.pcs_responses)),
        Route(f"{API_PREFIX}/qe/identity", qe_identity_route(platform.pcs_responses)),
        # The platform's TDX host: TDX TCB Info (its own FMSPC) and the TD QE identity.
        Route(f"{TDX_API_PREFIX}/tcb", tcb_route(tdx.fmspc.hex().upper(), tdx.pcs_responses)),
        Route(f"{TDX_API_PREFIX}/qe/identity", qe_identity_route(tdx.pcs_responses)),
        Route(f"{API_PREFIX}/rootcacrl", rootcacrl),
        Route(f"{API_PREFIX}/pckcert", pckcert),
        Route("/" + ROOT_CRL_URL.rsplit("/", 1)[1], root_crl_der),
    ]
    return Starlette(routes=routes)
