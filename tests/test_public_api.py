"""The promised top-level API is exactly these names (other components and benchmarks use them)."""

from __future__ import annotations

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
        "TcbStatus",
        "VerificationError",
        "VerifiedQuote",
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
    }
