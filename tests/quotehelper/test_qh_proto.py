"""messages.proto against the reference layout, and the checked-in stubs against a fresh protoc."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_tools import protoc
from qh_independent import AesmProto

SRC = Path(__file__).resolve().parents[2] / "src"
REL = Path("confnode/_proto/aesm/messages.proto")

_OPT, _REQ = "optional", "required"
_BYTES, _BOOL = FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_BOOL
_U32, _U64 = FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64

# node-and-aesm.md §1.6 (current layout, linux-sgx >= 2.9.1), typed in by hand.
QUOTE_EX: dict[str, dict[str, tuple[int, int, str]]] = {
    "Request.InitQuoteExRequest": {
        "att_key_id": (1, _BYTES, _OPT),
        "b_pub_key_id": (3, _BOOL, _REQ),
        "buf_size": (4, _U64, _OPT),
        "timeout": (9, _U32, _OPT),
    },
    "Response.InitQuoteExResponse": {
        "errorCode": (1, _U32, _REQ),
        "target_info": (2, _BYTES, _OPT),
        "pub_key_id_size": (3, _U64, _OPT),
        "pub_key_id": (4, _BYTES, _OPT),
    },
    "Request.GetQuoteSizeExRequest": {"att_key_id": (1, _BYTES, _OPT), "timeout": (9, _U32, _OPT)},
    "Response.GetQuoteSizeExResponse": {
        "errorCode": (1, _U32, _REQ),
        "quote_size": (2, _U32, _OPT),
    },
    "Request.GetQuoteExRequest": {
        "report": (1, _BYTES, _REQ),
        "att_key_id": (2, _BYTES, _OPT),
        "qe_report_info": (3, _BYTES, _OPT),
        "buf_size": (4, _U32, _REQ),
        "timeout": (9, _U32, _OPT),
    },
    "Response.GetQuoteExResponse": {
        "errorCode": (1, _U32, _REQ),
        "quote": (2, _BYTES, _OPT),
        "qe_report_info": (3, _BYTES, _OPT),
    },
    "Request.SelectAttKeyIDRequest": {
        "att_key_id_list": (1, _BYTES, _OPT),
        "timeout": (2, _U32, _OPT),
    },
    "Response.SelectAttKeyIDResponse": {
        "errorCode": (1, _U32, _REQ),
        "selected_att_key_id": (2, _BYTES, _OPT),
    },
    "Request.GetSupportedAttKeyIDNumRequest": {"timeout": (9, _U32, _OPT)},
    "Response.GetSupportedAttKeyIDNumResponse": {
        "errorCode": (1, _U32, _REQ),
        "att_key_id_num": (2, _U32, _OPT),
    },
    "Request.GetSupportedAttKeyIDsRequest": {
        "buf_size": (1, _U32, _REQ),
        "timeout": (9, _U32, _OPT),
    },
    "Response.GetSupportedAttKeyIDsResponse": {
        "errorCode": (1, _U32, _REQ),
        "att_key_ids": (2, _BYTES, _OPT),
    },
}

TOP_LEVEL = {
    "Request": {
        1: "initQuoteReq", 2: "getQuoteReq", 3: "getLicTokenReq", 4: "reportErrReq",
        10: "getWhiteListSizeReq", 11: "getWhiteListReq", 12: "sgxGetExtendedEpidGroupIdReq",
        13: "sgxSwitchExtendedEpidGroupReq", 14: "sgxRegisterReq", 15: "initQuoteExReq",
        16: "getQuoteSizeExReq", 17: "getQuoteExReq", 18: "checkUpdateStatusReq",
        19: "selectAttKeyIDReq", 21: "getSupportedAttKeyIDNumReq", 22: "getSupportedAttKeyIDsReq",
    },
    "Response": {
        1: "initQuoteRes", 2: "getQuoteRes", 3: "getLicTokenRes", 4: "reportErrRes",
        10: "getWhiteListSizeRes", 11: "getWhiteListRes", 12: "sgxGetExtendedEpidGroupIdRes",
        13: "sgxSwitchExtendedEpidGroupRes", 14: "sgxRegisterRes", 15: "initQuoteExRes",
        16: "getQuoteSizeExRes", 17: "getQuoteExRes", 18: "checkUpdateStatusRes",
        19: "selectAttKeyIDRes", 20: "unsupportedRequestResponse",
        21: "getSupportedAttKeyIDNumRes", 22: "getSupportedAttKeyIDsRes",
    },
}  # fmt: skip


def _label(field: FieldDescriptor) -> str:
    assert not field.is_repeated
    return _REQ if field.is_required else _OPT


def test_package_and_proto2_presence(aesm: AesmProto) -> None:
    assert aesm.Request.DESCRIPTOR.file.package == "aesm.message"
    assert aesm.Request.DESCRIPTOR.full_name == "aesm.message.Request"
    # proto2: an explicitly set 0 errorCode is tracked (and therefore serialized).
    response = aesm.Response()
    response.initQuoteExRes.errorCode = 0
    assert response.SerializeToString() == bytes.fromhex("7a020800")


@pytest.mark.parametrize("name", sorted(QUOTE_EX))
def test_quote_ex_fields(aesm: AesmProto, name: str) -> None:
    outer, inner = name.split(".")
    message = getattr(aesm, outer).DESCRIPTOR.nested_types_by_name[inner]
    got = {f.name: (f.number, f.type, _label(f)) for f in message.fields}
    assert got == QUOTE_EX[name]
    if outer == "Response":
        error_code = message.fields_by_name["errorCode"]
        assert error_code.has_default_value and error_code.default_value == 1


@pytest.mark.parametrize("outer", ["Request", "Response"])
def test_top_level_numbers(aesm: AesmProto, outer: str) -> None:
    descriptor = getattr(aesm, outer).DESCRIPTOR
    assert {f.number: f.name for f in descriptor.fields} == TOP_LEVEL[outer]
    assert all(_label(f) == _OPT and f.message_type is not None for f in descriptor.fields)
    assert not descriptor.oneofs
    for nested in descriptor.nested_types:
        if outer == "Response":
            assert _label(nested.fields_by_name["errorCode"]) == _REQ, nested.name


def test_checked_in_stubs_match_protoc(tmp_path: Path) -> None:
    """Same flags as scripts/gen_protos.py; the committed files must be what protoc writes."""
    well_known = resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"-I{well_known}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(REL),
        ]
    )
    assert code == 0
    for name in ("messages_pb2.py", "messages_pb2.pyi"):
        fresh = (tmp_path / REL.parent / name).read_bytes()
        assert fresh == (SRC / REL.parent / name).read_bytes(), f"{name} is stale: regenerate"
