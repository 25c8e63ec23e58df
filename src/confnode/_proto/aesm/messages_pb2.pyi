from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Request(_message.Message):
    __slots__ = ("initQuoteReq", "getQuoteReq", "getLicTokenReq", "reportErrReq", "getWhiteListSizeReq", "getWhiteListReq", "sgxGetExtendedEpidGroupIdReq", "sgxSwitchExtendedEpidGroupReq", "sgxRegisterReq", "initQuoteExReq", "getQuoteSizeExReq", "getQuoteExReq", "checkUpdateStatusReq", "selectAttKeyIDReq", "getSupportedAttKeyIDNumReq", "getSupportedAttKeyIDsReq")
    class InitQuoteRequest(_message.Message):
        __slots__ = ("timeout",)
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        timeout: int
        def __init__(self, timeout: _Optional[int] = ...) -> None: ...
    class GetQuoteRequest(_message.Message):
        __slots__ = ("report", "quote_type", "spid", "nonce", "sig_rl", "buf_size", "qe_report", "timeout")
        REPORT_FIELD_NUMBER: _ClassVar[int]
        QUOTE_TYPE_FIELD_NUMBER: _ClassVar[int]
        SPID_FIELD_NUMBER: _ClassVar[int]
        NONCE_FIELD_NUMBER: _ClassVar[int]
        SIG_RL_FIELD_NUMBER: _ClassVar[int]
        BUF_SIZE_FIELD_NUMBER: _ClassVar[int]
        QE_REPORT_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        report: bytes
        quote_type: int
        spid: bytes
        nonce: bytes
        sig_rl: bytes
        buf_size: int
        qe_report: bool
        timeout: int
        def __init__(self, report: _Optional[bytes] = ..., quote_type: _Optional[int] = ..., spid: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., sig_rl: _Optional[bytes] = ..., buf_size: _Optional[int] = ..., qe_report: _Optional[bool] = ..., timeout: _Optional[int] = ...) -> None: ...
    class GetLaunchTokenRequest(_message.Message):
        __slots__ = ("mr_enclave", "mr_signer", "se_attributes", "timeout")
        MR_ENCLAVE_FIELD_NUMBER: _ClassVar[int]
        MR_SIGNER_FIELD_NUMBER: _ClassVar[int]
        SE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        mr_enclave: bytes
        mr_signer: bytes
        se_attributes: bytes
        timeout: int
        def __init__(self, mr_enclave: _Optional[bytes] = ..., mr_signer: _Optional[bytes] = ..., se_attributes: _Optional[bytes] = ..., timeout: _Optional[int] = ...) -> None: ...
    class ReportAttestationErrorRequest(_message.Message):
        __slots__ = ("platform_info", "attestation_error_code", "update_info_size", "timeout")
        PLATFORM_INFO_FIELD_NUMBER: _ClassVar[int]
        ATTESTATION_ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
        UPDATE_INFO_SIZE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        platform_info: bytes
        attestation_error_code: int
        update_info_size: int
        timeout: int
        def __init__(self, platform_info: _Optional[bytes] = ..., attestation_error_code: _Optional[int] = ..., update_info_size: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class GetWhiteListSizeRequest(_message.Message):
        __slots__ = ("timeout",)
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        timeout: int
        def __init__(self, timeout: _Optional[int] = ...) -> None: ...
    class GetWhiteListRequest(_message.Message):
        __slots__ = ("white_list_size", "timeout")
        WHITE_LIST_SIZE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        white_list_size: int
        timeout: int
        def __init__(self, white_list_size: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class SGXGetExtendedEpidGroupIdRequest(_message.Message):
        __slots__ = ("timeout",)
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        timeout: int
        def __init__(self, timeout: _Optional[int] = ...) -> None: ...
    class SGXSwitchExtendedEpidGroupRequest(_message.Message):
        __slots__ = ("x_group_id", "timeout")
        X_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        x_group_id: int
        timeout: int
        def __init__(self, x_group_id: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class SGXRegisterRequest(_message.Message):
        __slots__ = ("buf", "data_type", "timeout")
        BUF_FIELD_NUMBER: _ClassVar[int]
        DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        buf: bytes
        data_type: int
        timeout: int
        def __init__(self, buf: _Optional[bytes] = ..., data_type: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class InitQuoteExRequest(_message.Message):
        __slots__ = ("att_key_id", "b_pub_key_id", "buf_size", "timeout")
        ATT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        B_PUB_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        BUF_SIZE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        att_key_id: bytes
        b_pub_key_id: bool
        buf_size: int
        timeout: int
        def __init__(self, att_key_id: _Optional[bytes] = ..., b_pub_key_id: _Optional[bool] = ..., buf_size: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class GetQuoteSizeExRequest(_message.Message):
        __slots__ = ("att_key_id", "timeout")
        ATT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        att_key_id: bytes
        timeout: int
        def __init__(self, att_key_id: _Optional[bytes] = ..., timeout: _Optional[int] = ...) -> None: ...
    class GetQuoteExRequest(_message.Message):
        __slots__ = ("report", "att_key_id", "qe_report_info", "buf_size", "timeout")
        REPORT_FIELD_NUMBER: _ClassVar[int]
        ATT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        QE_REPORT_INFO_FIELD_NUMBER: _ClassVar[int]
        BUF_SIZE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        report: bytes
        att_key_id: bytes
        qe_report_info: bytes
        buf_size: int
        timeout: int
        def __init__(self, report: _Optional[bytes] = ..., att_key_id: _Optional[bytes] = ..., qe_report_info: _Optional[bytes] = ..., buf_size: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class CheckUpdateStatusRequest(_message.Message):
        __slots__ = ("platform_info", "update_info_size", "config", "timeout")
        PLATFORM_INFO_FIELD_NUMBER: _ClassVar[int]
        UPDATE_INFO_SIZE_FIELD_NUMBER: _ClassVar[int]
        CONFIG_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        platform_info: bytes
        update_info_size: int
        config: int
        timeout: int
        def __init__(self, platform_info: _Optional[bytes] = ..., update_info_size: _Optional[int] = ..., config: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    class SelectAttKeyIDRequest(_message.Message):
        __slots__ = ("att_key_id_list", "timeout")
        ATT_KEY_ID_LIST_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        att_key_id_list: bytes
        timeout: int
        def __init__(self, att_key_id_list: _Optional[bytes] = ..., timeout: _Optional[int] = ...) -> None: ...
    class GetSupportedAttKeyIDNumRequest(_message.Message):
        __slots__ = ("timeout",)
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        timeout: int
        def __init__(self, timeout: _Optional[int] = ...) -> None: ...
    class GetSupportedAttKeyIDsRequest(_message.Message):
        __slots__ = ("buf_size", "timeout")
        BUF_SIZE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        buf_size: int
        timeout: int
        def __init__(self, buf_size: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    INITQUOTEREQ_FIELD_NUMBER: _ClassVar[int]
    GETQUOTEREQ_FIELD_NUMBER: _ClassVar[int]
    GETLICTOKENREQ_FIELD_NUMBER: _ClassVar[int]
    REPORTERRREQ_FIELD_NUMBER: _ClassVar[int]
    GETWHITELISTSIZEREQ_FIELD_NUMBER: _ClassVar[int]
    GETWHITELISTREQ_FIELD_NUMBER: _ClassVar[int]
    SGXGETEXTENDEDEPIDGROUPIDREQ_FIELD_NUMBER: _ClassVar[int]
    SGXSWITCHEXTENDEDEPIDGROUPREQ_FIELD_NUMBER: _ClassVar[int]
    SGXREGISTERREQ_FIELD_NUMBER: _ClassVar[int]
    INITQUOTEEXREQ_FIELD_NUMBER: _ClassVar[int]
    GETQUOTESIZEEXREQ_FIELD_NUMBER: _ClassVar[int]
    GETQUOTEEXREQ_FIELD_NUMBER: _ClassVar[int]
    CHECKUPDATESTATUSREQ_FIELD_NUMBER: _ClassVar[int]
    SELECTATTKEYIDREQ_FIELD_NUMBER: _ClassVar[int]
    GETSUPPORTEDATTKEYIDNUMREQ_FIELD_NUMBER: _ClassVar[int]
    GETSUPPORTEDATTKEYIDSREQ_FIELD_NUMBER: _ClassVar[int]
    initQuoteReq: Request.InitQuoteRequest
    getQuoteReq: Request.GetQuoteRequest
    getLicTokenReq: Request.GetLaunchTokenRequest
    reportErrReq: Request.ReportAttestationErrorRequest
    getWhiteListSizeReq: Request.GetWhiteListSizeRequest
    getWhiteListReq: Request.GetWhiteListRequest
    sgxGetExtendedEpidGroupIdReq: Request.SGXGetExtendedEpidGroupIdRequest
    sgxSwitchExtendedEpidGroupReq: Request.SGXSwitchExtendedEpidGroupRequest
    sgxRegisterReq: Request.SGXRegisterRequest
    initQuoteExReq: Request.InitQuoteExRequest
    getQuoteSizeExReq: Request.GetQuoteSizeExRequest
    getQuoteExReq: Request.GetQuoteExRequest
    checkUpdateStatusReq: Request.CheckUpdateStatusRequest
    selectAttKeyIDReq: Request.SelectAttKeyIDRequest
    getSupportedAttKeyIDNumReq: Request.GetSupportedAttKeyIDNumRequest
    getSupportedAttKeyIDsReq: Request.GetSupportedAttKeyIDsRequest
    def __init__(self, initQuoteReq: _Optional[_Union[Request.InitQuoteRequest, _Mapping]] = ..., getQuoteReq: _Optional[_Union[Request.GetQuoteRequest, _Mapping]] = ..., getLicTokenReq: _Optional[_Union[Request.GetLaunchTokenRequest, _Mapping]] = ..., reportErrReq: _Optional[_Union[Request.ReportAttestationErrorRequest, _Mapping]] = ..., getWhiteListSizeReq: _Optional[_Union[Request.GetWhiteListSizeRequest, _Mapping]] = ..., getWhiteListReq: _Optional[_Union[Request.GetWhiteListRequest, _Mapping]] = ..., sgxGetExtendedEpidGroupIdReq: _Optional[_Union[Request.SGXGetExtendedEpidGroupIdRequest, _Mapping]] = ..., sgxSwitchExtendedEpidGroupReq: _Optional[_Union[Request.SGXSwitchExtendedEpidGroupRequest, _Mapping]] = ..., sgxRegisterReq: _Optional[_Union[Request.SGXRegisterRequest, _Mapping]] = ..., initQuoteExReq: _Optional[_Union[Request.InitQuoteExRequest, _Mapping]] = ..., getQuoteSizeExReq: _Optional[_Union[Request.GetQuoteSizeExRequest, _Mapping]] = ..., getQuoteExReq: _Optional[_Union[Request.GetQuoteExRequest, _Mapping]] = ..., checkUpdateStatusReq: _Optional[_Union[Request.CheckUpdateStatusRequest, _Mapping]] = ..., selectAttKeyIDReq: _Optional[_Union[Request.SelectAttKeyIDRequest, _Mapping]] = ..., getSupportedAttKeyIDNumReq: _Optional[_Union[Request.GetSupportedAttKeyIDNumRequest, _Mapping]] = ..., getSupportedAttKeyIDsReq: _Optional[_Union[Request.GetSupportedAttKeyIDsRequest, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("initQuoteRes", "getQuoteRes", "getLicTokenRes", "reportErrRes", "getWhiteListSizeRes", "getWhiteListRes", "sgxGetExtendedEpidGroupIdRes", "sgxSwitchExtendedEpidGroupRes", "sgxRegisterRes", "initQuoteExRes", "getQuoteSizeExRes", "getQuoteExRes", "checkUpdateStatusRes", "selectAttKeyIDRes", "unsupportedRequestResponse", "getSupportedAttKeyIDNumRes", "getSupportedAttKeyIDsRes")
    class InitQuoteResponse(_message.Message):
        __slots__ = ("errorCode", "targetInfo", "gid")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        TARGETINFO_FIELD_NUMBER: _ClassVar[int]
        GID_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        targetInfo: bytes
        gid: bytes
        def __init__(self, errorCode: _Optional[int] = ..., targetInfo: _Optional[bytes] = ..., gid: _Optional[bytes] = ...) -> None: ...
    class GetQuoteResponse(_message.Message):
        __slots__ = ("errorCode", "quote", "qe_report")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        QUOTE_FIELD_NUMBER: _ClassVar[int]
        QE_REPORT_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        quote: bytes
        qe_report: bytes
        def __init__(self, errorCode: _Optional[int] = ..., quote: _Optional[bytes] = ..., qe_report: _Optional[bytes] = ...) -> None: ...
    class GetLaunchTokenResponse(_message.Message):
        __slots__ = ("errorCode", "token")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        TOKEN_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        token: bytes
        def __init__(self, errorCode: _Optional[int] = ..., token: _Optional[bytes] = ...) -> None: ...
    class ReportAttestationErrorResponse(_message.Message):
        __slots__ = ("errorCode", "platform_update_info")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        PLATFORM_UPDATE_INFO_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        platform_update_info: bytes
        def __init__(self, errorCode: _Optional[int] = ..., platform_update_info: _Optional[bytes] = ...) -> None: ...
    class GetWhiteListSizeResponse(_message.Message):
        __slots__ = ("errorCode", "white_list_size")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        WHITE_LIST_SIZE_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        white_list_size: int
        def __init__(self, errorCode: _Optional[int] = ..., white_list_size: _Optional[int] = ...) -> None: ...
    class GetWhiteListResponse(_message.Message):
        __slots__ = ("errorCode", "white_list")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        WHITE_LIST_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        white_list: bytes
        def __init__(self, errorCode: _Optional[int] = ..., white_list: _Optional[bytes] = ...) -> None: ...
    class SGXGetExtendedEpidGroupIdResponse(_message.Message):
        __slots__ = ("errorCode", "x_group_id")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        X_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        x_group_id: int
        def __init__(self, errorCode: _Optional[int] = ..., x_group_id: _Optional[int] = ...) -> None: ...
    class SGXSwitchExtendedEpidGroupResponse(_message.Message):
        __slots__ = ("errorCode",)
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        def __init__(self, errorCode: _Optional[int] = ...) -> None: ...
    class SGXRegisterResponse(_message.Message):
        __slots__ = ("errorCode",)
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        def __init__(self, errorCode: _Optional[int] = ...) -> None: ...
    class InitQuoteExResponse(_message.Message):
        __slots__ = ("errorCode", "target_info", "pub_key_id_size", "pub_key_id")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        TARGET_INFO_FIELD_NUMBER: _ClassVar[int]
        PUB_KEY_ID_SIZE_FIELD_NUMBER: _ClassVar[int]
        PUB_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        target_info: bytes
        pub_key_id_size: int
        pub_key_id: bytes
        def __init__(self, errorCode: _Optional[int] = ..., target_info: _Optional[bytes] = ..., pub_key_id_size: _Optional[int] = ..., pub_key_id: _Optional[bytes] = ...) -> None: ...
    class GetQuoteSizeExResponse(_message.Message):
        __slots__ = ("errorCode", "quote_size")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        QUOTE_SIZE_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        quote_size: int
        def __init__(self, errorCode: _Optional[int] = ..., quote_size: _Optional[int] = ...) -> None: ...
    class GetQuoteExResponse(_message.Message):
        __slots__ = ("errorCode", "quote", "qe_report_info")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        QUOTE_FIELD_NUMBER: _ClassVar[int]
        QE_REPORT_INFO_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        quote: bytes
        qe_report_info: bytes
        def __init__(self, errorCode: _Optional[int] = ..., quote: _Optional[bytes] = ..., qe_report_info: _Optional[bytes] = ...) -> None: ...
    class CheckUpdateStatusResponse(_message.Message):
        __slots__ = ("errorCode", "platform_update_info", "status")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        PLATFORM_UPDATE_INFO_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        platform_update_info: bytes
        status: int
        def __init__(self, errorCode: _Optional[int] = ..., platform_update_info: _Optional[bytes] = ..., status: _Optional[int] = ...) -> None: ...
    class SelectAttKeyIDResponse(_message.Message):
        __slots__ = ("errorCode", "selected_att_key_id")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        SELECTED_ATT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        selected_att_key_id: bytes
        def __init__(self, errorCode: _Optional[int] = ..., selected_att_key_id: _Optional[bytes] = ...) -> None: ...
    class UnsupportedRequestResponse(_message.Message):
        __slots__ = ("errorCode",)
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        def __init__(self, errorCode: _Optional[int] = ...) -> None: ...
    class GetSupportedAttKeyIDNumResponse(_message.Message):
        __slots__ = ("errorCode", "att_key_id_num")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        ATT_KEY_ID_NUM_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        att_key_id_num: int
        def __init__(self, errorCode: _Optional[int] = ..., att_key_id_num: _Optional[int] = ...) -> None: ...
    class GetSupportedAttKeyIDsResponse(_message.Message):
        __slots__ = ("errorCode", "att_key_ids")
        ERRORCODE_FIELD_NUMBER: _ClassVar[int]
        ATT_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
        errorCode: int
        att_key_ids: bytes
        def __init__(self, errorCode: _Optional[int] = ..., att_key_ids: _Optional[bytes] = ...) -> None: ...
    INITQUOTERES_FIELD_NUMBER: _ClassVar[int]
    GETQUOTERES_FIELD_NUMBER: _ClassVar[int]
    GETLICTOKENRES_FIELD_NUMBER: _ClassVar[int]
    REPORTERRRES_FIELD_NUMBER: _ClassVar[int]
    GETWHITELISTSIZERES_FIELD_NUMBER: _ClassVar[int]
    GETWHITELISTRES_FIELD_NUMBER: _ClassVar[int]
    SGXGETEXTENDEDEPIDGROUPIDRES_FIELD_NUMBER: _ClassVar[int]
    SGXSWITCHEXTENDEDEPIDGROUPRES_FIELD_NUMBER: _ClassVar[int]
    SGXREGISTERRES_FIELD_NUMBER: _ClassVar[int]
    INITQUOTEEXRES_FIELD_NUMBER: _ClassVar[int]
    GETQUOTESIZEEXRES_FIELD_NUMBER: _ClassVar[int]
    GETQUOTEEXRES_FIELD_NUMBER: _ClassVar[int]
    CHECKUPDATESTATUSRES_FIELD_NUMBER: _ClassVar[int]
    SELECTATTKEYIDRES_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTEDREQUESTRESPONSE_FIELD_NUMBER: _ClassVar[int]
    GETSUPPORTEDATTKEYIDNUMRES_FIELD_NUMBER: _ClassVar[int]
    GETSUPPORTEDATTKEYIDSRES_FIELD_NUMBER: _ClassVar[int]
    initQuoteRes: Response.InitQuoteResponse
    getQuoteRes: Response.GetQuoteResponse
    getLicTokenRes: Response.GetLaunchTokenResponse
    reportErrRes: Response.ReportAttestationErrorResponse
    getWhiteListSizeRes: Response.GetWhiteListSizeResponse
    getWhiteListRes: Response.GetWhiteListResponse
    sgxGetExtendedEpidGroupIdRes: Response.SGXGetExtendedEpidGroupIdResponse
    sgxSwitchExtendedEpidGroupRes: Response.SGXSwitchExtendedEpidGroupResponse
    sgxRegisterRes: Response.SGXRegisterResponse
    initQuoteExRes: Response.InitQuoteExResponse
    getQuoteSizeExRes: Response.GetQuoteSizeExResponse
    getQuoteExRes: Response.GetQuoteExResponse
    checkUpdateStatusRes: Response.CheckUpdateStatusResponse
    selectAttKeyIDRes: Response.SelectAttKeyIDResponse
    unsupportedRequestResponse: Response.UnsupportedRequestResponse
    getSupportedAttKeyIDNumRes: Response.GetSupportedAttKeyIDNumResponse
    getSupportedAttKeyIDsRes: Response.GetSupportedAttKeyIDsResponse
    def __init__(self, initQuoteRes: _Optional[_Union[Response.InitQuoteResponse, _Mapping]] = ..., getQuoteRes: _Optional[_Union[Response.GetQuoteResponse, _Mapping]] = ..., getLicTokenRes: _Optional[_Union[Response.GetLaunchTokenResponse, _Mapping]] = ..., reportErrRes: _Optional[_Union[Response.ReportAttestationErrorResponse, _Mapping]] = ..., getWhiteListSizeRes: _Optional[_Union[Response.GetWhiteListSizeResponse, _Mapping]] = ..., getWhiteListRes: _Optional[_Union[Response.GetWhiteListResponse, _Mapping]] = ..., sgxGetExtendedEpidGroupIdRes: _Optional[_Union[Response.SGXGetExtendedEpidGroupIdResponse, _Mapping]] = ..., sgxSwitchExtendedEpidGroupRes: _Optional[_Union[Response.SGXSwitchExtendedEpidGroupResponse, _Mapping]] = ..., sgxRegisterRes: _Optional[_Union[Response.SGXRegisterResponse, _Mapping]] = ..., initQuoteExRes: _Optional[_Union[Response.InitQuoteExResponse, _Mapping]] = ..., getQuoteSizeExRes: _Optional[_Union[Response.GetQuoteSizeExResponse, _Mapping]] = ..., getQuoteExRes: _Optional[_Union[Response.GetQuoteExResponse, _Mapping]] = ..., checkUpdateStatusRes: _Optional[_Union[Response.CheckUpdateStatusResponse, _Mapping]] = ..., selectAttKeyIDRes: _Optional[_Union[Response.SelectAttKeyIDResponse, _Mapping]] = ..., unsupportedRequestResponse: _Optional[_Union[Response.UnsupportedRequestResponse, _Mapping]] = ..., getSupportedAttKeyIDNumRes: _Optional[_Union[Response.GetSupportedAttKeyIDNumResponse, _Mapping]] = ..., getSupportedAttKeyIDsRes: _Optional[_Union[Response.GetSupportedAttKeyIDsResponse, _Mapping]] = ...) -> None: ...
