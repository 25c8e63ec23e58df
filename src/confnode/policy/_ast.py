"""The syntax tree of a claim-rule policy (frozen, so a parsed policy can be shared freely)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: A claim value: the language's three value types (String, Integer, Boolean).
ClaimValue = str | int | bool

Property = Literal["type", "value", "issuer"]
Operator = Literal["==", "!=", "<", "<=", ">", ">="]
Verb = Literal["permit", "deny", "issue", "add", "issueproperty"]
SectionName = Literal["configurationrules", "authorizationrules", "issuancerules"]


@dataclass(frozen=True, slots=True)
class Constant:
    value: ClaimValue
    line: int
    column: int

    def render(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, int):
            return str(self.value)
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """``c.value``: a property of the claim bound to ``name`` earlier in the same rule."""

    name: str
    prop: Property
    line: int
    column: int

    def render(self) -> str:
        return f"{self.name}.{self.prop}"


Expr = Constant | ClaimRef


@dataclass(frozen=True, slots=True)
class Predicate:
    prop: Property
    op: Operator
    operand: Expr

    def render(self) -> str:
        return f"{self.prop}{self.op}{self.operand.render()}"


@dataclass(frozen=True, slots=True)
class Condition:
    """``name:[p, p, ...]`` (or ``![...]``): true when some claim satisfies every predicate."""

    binding: str | None
    predicates: tuple[Predicate, ...]
    negated: bool
    line: int
    column: int
    #: Rendered once (traces quote it on every evaluation); filled in automatically.
    text: str = field(default="", compare=False)
    #: The constant of a ``type==`` predicate, used to index candidate claims.
    claim_type: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", self.render())
        for p in self.predicates:
            if p.prop == "type" and p.op == "==" and isinstance(p.operand, Constant):
                object.__setattr__(self, "claim_type", p.operand.value)
                break

    def render(self) -> str:
        body = "[" + ", ".join(p.render() for p in self.predicates) + "]"
        prefix = "!" if self.negated else (f"{self.binding}:" if self.binding else "")
        return prefix + body


@dataclass(frozen=True, slots=True)
class Action:
    verb: Verb
    claim: str | None  # issue(claim=c)
    type: Expr | None  # issue(type=..., value=...)
    value: Expr | None
    line: int
    column: int

    def render(self) -> str:
        if self.claim is not None:
            return f"{self.verb}(claim={self.claim})"
        if self.type is not None and self.value is not None:
            return f"{self.verb}(type={self.type.render()}, value={self.value.render()})"
        return f"{self.verb}()"


@dataclass(frozen=True, slots=True)
class Rule:
    conditions: tuple[Condition, ...]
    action: Action
    line: int
    column: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", self.render())

    def render(self) -> str:
        conditions = " && ".join(c.render() for c in self.conditions)
        return f"{conditions} => {self.action.render()}".lstrip()


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy. ``text`` is the exact source, which the policy hash is computed over."""

    version: str
    configuration_rules: tuple[Rule, ...]
    authorization_rules: tuple[Rule, ...]
    issuance_rules: tuple[Rule, ...]
    text: str
