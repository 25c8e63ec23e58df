"""Errors raised by the policy package."""

from __future__ import annotations

from confnode.errors import InvalidInput, VerificationError


class PolicyParseError(InvalidInput):
    """A policy text (claim rules or a release policy) that does not parse.

    ``line``/``column`` are 1-based and point at the offending character when known.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line is not None and column is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.column = column
        self.reason = message


class PolicyTooComplex(PolicyParseError):
    """A policy whose evaluation would exceed the work budget (e.g. many unconstrained bindings).

    Rejected like a malformed policy: a rule whose bindings multiply out must not hold a worker.
    """


class PolicyDenied(VerificationError):
    """The evidence is authentic but the attestation or release policy does not permit it."""

    step = "policy"
