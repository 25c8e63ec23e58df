"""AESM request semantics: one parsed ``aesm.message.Request`` in, one ``Response`` body out.

This module holds the rules of ``node-and-aesm.md`` §1.10/§1.12 and no I/O, so they are tested
without sockets. The server parses on the event loop (cheap, bounded by the frame cap) and runs
:meth:`AesmHandler.execute` on its single quoting thread.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from confnode._proto.aesm import messages_pb2 as pb
from confnode.client import PUB_KEY_ID_SIZE, AesmCode
from confnode.errors import InvalidInput
from confnode.quotehelper.backend import BackendError, QuotingBackend
from confnode.sgx.structs import (
    ATT_KEY_ID_BASE_SIZE,
    ATT_KEY_ID_SIZE,
    DEFAULT_ECDSA_P256_ATT_KEY_ID,
    ECDSA_P256_ALGORITHM_ID,
    QE_REPORT_INFO_SIZE,
    REPORT_SIZE,
    TARGET_INFO_SIZE,
)

__all__ = [
    "DEFAULT_MAX_PADDING",
    "QUOTE_OPERATIONS",
    "AesmHandler",
    "ParsedRequest",
    "Reply",
    "parse_request",
]

log = logging.getLogger(__name__)

#: Request field numbers of the ECDSA (QuoteEx) family the daemon implements.
QUOTE_OPERATIONS: dict[int, str] = {
    15: "InitQuoteEx",
    16: "GetQuoteSizeEx",
    17: "GetQuoteEx",
    19: "SelectAttKeyID",
    21: "GetSupportedAttKeyIDNum",
    22: "GetSupportedAttKeyIDs",
}
#: AESM zero-pads a quote to the caller's ``buf_size``; above this the quote goes out unpadded
#: (every known client accepts both) so a uint32 ``buf_size`` cannot make the daemon allocate GiBs.
DEFAULT_MAX_PADDING = 64 * 1024
#: ``SGX_MAX_ATT_KEY_IDS``: the most entries SelectAttKeyID accepts.
_MAX_ATT_KEY_IDS = 10
_LIST_HEADER = struct.Struct("<HHI")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The one sub-message of a Request the daemon acts on.

    ``number`` is its field number (the reply uses the same one), ``complete`` whether every
    ``required`` field is present.
    """

    number: int
    operation: str
    message: Any
    complete: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """A serialized ``aesm.message.Response`` (no length prefix) and what it said."""

    operation: str
    code: int
    body: bytes
    quote_served: bool = False


def parse_request(body: bytes) -> ParsedRequest | None:
    """Parse a Request body; ``None`` when it holds no known sub-message (AESM closes silently).

    A Request with several sub-messages (no real client sends one) is served by the lowest field
    number.
    """
    request = pb.Request()
    try:
        request.ParseFromString(body)
    except DecodeError:
        return None
    fields = request.ListFields()
    if not fields:
        return None
    descriptor, message = min(fields, key=lambda item: item[0].number)
    if descriptor.message_type is None:
        return None
    operation = descriptor.message_type.name.removesuffix("Request")
    return ParsedRequest(descriptor.number, operation, message, message.IsInitialized())


def _response(number: int, code: int) -> tuple[pb.Response, Any]:
    response = pb.Response()
    field = pb.Response.DESCRIPTOR.fields_by_number[number]
    sub = getattr(response, field.name)
    # Explicitly set, so errorCode is on the wire even when 0 (its proto2 default is 1).
    sub.errorCode = code
    return response, sub


class AesmHandler:
    """Executes QuoteEx-family requests against a backend, as AESM's ECDSA bundle does."""

    def __init__(
        self,
        backend: QuotingBackend,
        *,
        att_key_ids: Sequence[bytes] = (DEFAULT_ECDSA_P256_ATT_KEY_ID,),
        max_padding: int = DEFAULT_MAX_PADDING,
    ) -> None:
        if not att_key_ids or any(len(k) != ATT_KEY_ID_SIZE for k in att_key_ids):
            raise InvalidInput(
                f"att_key_ids must be one or more {ATT_KEY_ID_SIZE}-byte entries, got "
                f"{[len(k) for k in att_key_ids]}"
            )
        self.backend = backend
        self.att_key_ids = tuple(att_key_ids)
        self._bases = {k[:ATT_KEY_ID_BASE_SIZE] for k in self.att_key_ids}
        self.max_padding = max_padding

    # -- entry points ----------------------------------------------------------------------------

    def error_reply(self, request: ParsedRequest, code: int) -> Reply:
        """The matching response carrying only ``errorCode`` (plus ``quote_size`` 0 where AESM
        always sets it)."""
        response, sub = _response(request.number, code)
        if request.number == 16:
            sub.quote_size = 0
        return Reply(request.operation, code, response.SerializeToString())

    def execute(self, request: ParsedRequest) -> Reply:
        """Answer one request; never raises for bad input or backend failure."""
        if not request.complete:
            return self.error_reply(request, AesmCode.UNEXPECTED_ERROR)
        if request.number not in QUOTE_OPERATIONS:
            return self.error_reply(request, AesmCode.SERVICE_UNAVAILABLE)
        try:
            return self._dispatch(request)
        except BackendError as exc:
            log.warning("%s: backend %s failed: %s", request.operation, self.backend.name, exc)
            return self.error_reply(request, exc.aesm_code)
        except Exception:
            log.exception("%s: backend %s raised", request.operation, self.backend.name)
            return self.error_reply(request, AesmCode.UNEXPECTED_ERROR)

    # -- per request -----------------------------------------------------------------------------

    def _dispatch(self, request: ParsedRequest) -> Reply:
        msg = request.message
        number = request.number
        if number == 15:
            return self._init_quote_ex(request, msg)
        if number == 16:
            return self._get_quote_size_ex(request, msg)
        if number == 17:
            return self._get_quote_ex(request, msg)
        if number == 19:
            return self._select_att_key_id(request, msg)
        if number == 21:
            response, sub = _response(number, AesmCode.SUCCESS)
            sub.att_key_id_num = len(self.att_key_ids)
            return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString())
        return self._get_supported_att_key_ids(request, msg)

    def _key_id_code(self, msg: Any, field: str) -> int:
        """3 if the key id is absent or short, 38 if its 158-byte base is not offered, else 0."""
        if not msg.HasField(field) or len(getattr(msg, field)) < ATT_KEY_ID_SIZE:
            return AesmCode.PARAMETER_ERROR
        if getattr(msg, field)[:ATT_KEY_ID_BASE_SIZE] not in self._bases:
            return AesmCode.UNSUPPORTED_ATT_KEY_ID
        return AesmCode.SUCCESS

    def _init_quote_ex(self, request: ParsedRequest, msg: Any) -> Reply:
        code = self._key_id_code(msg, "att_key_id")
        if code:
            return self.error_reply(request, code)
        # buf_size is a uint64 that DCAP leaves uninitialised when b_pub_key_id is false:
        # it only matters when the caller asks for the key id.
        want_key_id = msg.b_pub_key_id and msg.buf_size != 0
        if want_key_id and msg.buf_size < PUB_KEY_ID_SIZE:
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        target_info = self.backend.target_info()
        if len(target_info) != TARGET_INFO_SIZE:
            raise BackendError(
                f"backend target info is {len(target_info)} bytes, expected {TARGET_INFO_SIZE}",
                aesm_code=AesmCode.UNEXPECTED_ERROR,
            )
        response, sub = _response(request.number, AesmCode.SUCCESS)
        sub.target_info = target_info
        sub.pub_key_id_size = PUB_KEY_ID_SIZE
        pub_key_id = self.backend.pub_key_id() if want_key_id else None
        if pub_key_id is not None:
            if len(pub_key_id) != PUB_KEY_ID_SIZE:
                raise BackendError(
                    f"backend pub_key_id is {len(pub_key_id)} bytes, expected {PUB_KEY_ID_SIZE}",
                    aesm_code=AesmCode.UNEXPECTED_ERROR,
                )
            # Exactly the 32-byte ECDSA_ID: clients copy it only if its length == pub_key_id_size.
            sub.pub_key_id = pub_key_id
        return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString())

    def _get_quote_size_ex(self, request: ParsedRequest, msg: Any) -> Reply:
        code = self._key_id_code(msg, "att_key_id")
        if code:
            return self.error_reply(request, code)
        response, sub = _response(request.number, AesmCode.SUCCESS)
        sub.quote_size = self.backend.quote_size()
        return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString())

    def _get_quote_ex(self, request: ParsedRequest, msg: Any) -> Reply:
        code = self._key_id_code(msg, "att_key_id")
        if code:
            return self.error_reply(request, code)
        if len(msg.report) != REPORT_SIZE:
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        # AESM goes by the field's size: a present but empty qe_report_info counts as absent.
        qe_report_info = bytes(msg.qe_report_info) or None
        if qe_report_info is not None and len(qe_report_info) != QE_REPORT_INFO_SIZE:
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        buf_size = msg.buf_size
        if buf_size < self.backend.quote_size():
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        quote, returned_info = self.backend.quote(bytes(msg.report), qe_report_info)
        if len(quote) > buf_size:
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        if qe_report_info is not None and (
            returned_info is None or len(returned_info) != QE_REPORT_INFO_SIZE
        ):
            raise BackendError(
                "backend did not return a 960-byte qe_report_info",
                aesm_code=AesmCode.UNABLE_TO_GENERATE_QE_REPORT,
            )
        response, sub = _response(request.number, AesmCode.SUCCESS)
        if buf_size <= self.max_padding:
            quote = quote + bytes(buf_size - len(quote))
        sub.quote = quote
        if qe_report_info is not None:
            sub.qe_report_info = returned_info
        return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString(), True)

    def _select_att_key_id(self, request: ParsedRequest, msg: Any) -> Reply:
        listing = bytes(msg.att_key_id_list)
        if not listing:
            selected = self.att_key_ids[0]
        else:
            if len(listing) < _LIST_HEADER.size + ATT_KEY_ID_SIZE:
                return self.error_reply(request, AesmCode.PARAMETER_ERROR)
            ident, version, count = _LIST_HEADER.unpack_from(listing)
            if (
                ident != 0
                or version != 0
                or count > _MAX_ATT_KEY_IDS
                or len(listing) != _LIST_HEADER.size + count * ATT_KEY_ID_SIZE
            ):
                return self.error_reply(request, AesmCode.PARAMETER_ERROR)
            entries = [
                listing[at : at + ATT_KEY_ID_SIZE]
                for at in range(_LIST_HEADER.size, len(listing), ATT_KEY_ID_SIZE)
            ]
            matches = [e for e in entries if e[:ATT_KEY_ID_BASE_SIZE] in self._bases]
            if not matches:
                return self.error_reply(request, AesmCode.UNSUPPORTED_ATT_KEY_ID)
            # Tie-break on aesmd.conf's default quoting type (ecdsa_256), else the first match.
            preferred = [
                e
                for e in matches
                if int.from_bytes(e[154:158], "little") == ECDSA_P256_ALGORITHM_ID
            ]
            selected = (preferred or matches)[0]
        response, sub = _response(request.number, AesmCode.SUCCESS)
        sub.selected_att_key_id = selected
        return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString())

    def _get_supported_att_key_ids(self, request: ParsedRequest, msg: Any) -> Reply:
        if msg.buf_size != len(self.att_key_ids) * ATT_KEY_ID_SIZE:
            return self.error_reply(request, AesmCode.PARAMETER_ERROR)
        response, sub = _response(request.number, AesmCode.SUCCESS)
        sub.att_key_ids = b"".join(self.att_key_ids)
        return Reply(request.operation, AesmCode.SUCCESS, response.SerializeToString())
