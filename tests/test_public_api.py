"""The promised top-level API is exactly these names (other components and benchmarks use them)."""

from __future__ import annotations

import dataclasses
import inspect

import confnode


def test_exported_members() -> None:
    assert set(confnode.__all__) == {
        "Collateral",
        "CollateralFetchError",
        "ConfnodeError",
        "InfrastructureError",
        "InvalidCollateral",
        "InvalidInput",
        "InvalidQuote",
        "Quote",
        "QuoteRevoked",
        "TcbStatus",
        "VerificationError",
        "VerificationResult",
        "VerifiedQuote",
        "VerifiedTd",
        "VerifiedTdQuote",
        "parse_quote",
        "verify_quote",
    }
    for name in confnode.__all__:
        assert getattr(confnode, name) is not None


def test_verify_quote_signature() -> None:
    parameters = inspect.signature(confnode.verify_quote).parameters
    assert list(parameters)[:2] == ["quote", "collateral"]
    assert parameters["at"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["trusted_root"].default is None
    assert parameters["allow_expired_collateral"].default is False
    assert parameters["insecure_skip_crl"].default is False
    assert parameters["allow_revoked"].default is False  # revoked evidence raises by default
    assert inspect.signature(confnode.Collateral.from_json).parameters.keys() >= {"text"}
    assert {s.value for s in confnode.TcbStatus} >= {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
        "TcbLevelNotFound",
        "TDRelaunchAdvised",
        "TDRelaunchAdvisedConfigurationNeeded",
    }


def test_td_result_fields() -> None:
    """The attestation service's TdxVm route and policies read these names."""
    td = {f.name for f in dataclasses.fields(confnode.VerifiedTd)}
    assert td >= {
        "mr_td",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "report_data",
        "mr_seam",
        "mr_signer_seam",
        "seam_attributes",
        "td_attributes",
        "xfam",
        "mr_config_id",
        "mr_owner",
        "mr_owner_config",
        "tee_tcb_svn",
        "tee_tcb_svn2",
        "mr_servicetd",
        "debug",
    }
    result = {f.name for f in dataclasses.fields(confnode.VerifiedTdQuote)}
    shared = {f.name for f in dataclasses.fields(confnode.VerifiedQuote)} - {"enclave"}
    assert result >= shared | {"td", "tdx_module", "tdx_status"}
    assert confnode.VerificationResult == confnode.VerifiedQuote | confnode.VerifiedTdQuote
