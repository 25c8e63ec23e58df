"""The webhook's HTTPS shell: ``/mutate`` and ``/validate`` over the pure decisions."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from confnode.webhook._admission import WebhookConfig, mutate, validate
from confnode.webhook._errors import WebhookError

log = logging.getLogger("confnode.webhook")

#: The API server sends at most a few hundred KiB per review; refuse anything far larger.
MAX_BODY = 3 * 1024 * 1024


async def _bounded_body(request: Request) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``MAX_BODY``.

    Reading stops at the limit, so an oversized (or endless chunked) body is never buffered.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: WebhookConfig) -> Starlette:
    async def review(request: Request, decide: Any) -> Response:
        body = await _bounded_body(request)
        if body is None:
            return JSONResponse({"error": f"body exceeds {MAX_BODY} bytes"}, 413)
        try:
            document = json.loads(body)
            result = decide(document, config)
        except (ValueError, WebhookError) as error:
            log.warning("rejected malformed AdmissionReview: %s", error)
            return JSONResponse({"error": str(error)}, 400)
        except RecursionError:
            log.warning("rejected AdmissionReview: JSON nested too deeply")
            return JSONResponse({"error": "AdmissionReview JSON is nested too deeply"}, 400)
        response = result["response"]
        if not response["allowed"]:
            log.info("denied pod %s: %s", response["uid"], response["status"]["message"])
        return JSONResponse(result)

    async def mutate_endpoint(request: Request) -> Response:
        return await review(request, mutate)

    async def validate_endpoint(request: Request) -> Response:
        return await review(request, validate)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/mutate", mutate_endpoint, methods=["POST"]),
            Route("/validate", validate_endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
