"""confnode's exception tree.

Every error confnode raises on purpose derives from :class:`ConfnodeError`. Three kinds are kept
apart, because callers react to them differently::

    ConfnodeError
    ├── InvalidInput            malformed input: fix the input, retrying is pointless
    │   ├── InvalidQuote        quote bytes that do not parse
    │   └── InvalidCollateral   certificates, CRLs, TCB Info, QE Identity that do not parse
    ├── VerificationError       well-formed evidence that fails a check or a policy
    └── InfrastructureError     a peer or resource failed: retrying may help
        └── CollateralFetchError

Packages add their own subclasses under these three (``confnode.verify`` adds one
``VerificationError`` subclass per checklist step). Every error carries a one-line message that
says what was found and what was expected, and an optional ``hint`` for the CLI.
"""

from __future__ import annotations

__all__ = [
    "CollateralFetchError",
    "ConfnodeError",
    "InfrastructureError",
    "InvalidCollateral",
    "InvalidInput",
    "InvalidQuote",
    "VerificationError",
]


class ConfnodeError(Exception):
    """Base of every deliberate confnode error."""

    #: Default remedy printed by the CLI after the message; subclasses or callers may override.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInput(ConfnodeError, ValueError):
    """Input that cannot be parsed or is structurally inconsistent."""


class InvalidQuote(InvalidInput):
    """Quote bytes that do not parse. The message names the field and its byte offset."""

    def __init__(
        self, message: str, *, field: str | None = None, offset: int | None = None
    ) -> None:
        where = ""
        if field is not None:
            where = f"{field}" + (f" at offset {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.field = field
        self.offset = offset


class InvalidCollateral(InvalidInput):
    """Collateral that does not parse (bad PEM/DER/hex, malformed JSON, unknown version)."""


class VerificationError(ConfnodeError):
    """Well-formed evidence that failed a verification step or a policy.

    ``step`` names the checklist step (e.g. ``"pck-chain"``) so machine consumers can branch on it.
    """

    step: str = "verify"

    def __init__(self, message: str, *, step: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if step is not None:
            self.step = step


class InfrastructureError(ConfnodeError):
    """A peer, file or device needed to do the work was unavailable or misbehaved."""


class CollateralFetchError(InfrastructureError):
    """Collateral could not be fetched from PCS/PCCS (network error, HTTP error, bad response)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
