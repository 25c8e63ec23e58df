"""Recursive-descent parser for MAA's claim-rule language (policy versions 1.0, 1.1 and 1.2).

Grammar (``[x]`` optional, ``x*`` repeated)::

    policy     := "version" "=" NUMBER ";" section* EOF   (authorizationrules required)
    section    := SECTION "{" rule* "}" [";"]
    rule       := [condition ("&&" condition)*] "=>" action [";"]
    condition  := ["!"] [IDENT ":"] "[" [predicate ("," predicate)*] "]"
    predicate  := ("type" | "value" | "issuer") OP expr
    expr       := STRING | INTEGER | "true" | "false" | IDENT "." ("type" | "value" | "issuer")
    action     := ("permit" | "deny") "(" ")"
                | ("issue" | "add" | "issueproperty") "(" ("claim" "=" IDENT
                                                         | "type" "=" expr "," "value" "=" expr) ")"

Semantic checks done here, so that evaluation never meets a malformed tree: sections appear once,
in order (configuration, authorization, issuance); actions are legal in their section; a claim
reference names a binding made earlier in the same rule; ordering operators only compare values.

Conditions that could never hold are errors, not silently false (in a ``deny()`` rule that would
fail open): a condition on a claim type of ``claim_types`` (by default the SGX incoming claims)
must compare its value with a constant of that claim's type (``value==true``, not ``"true"``),
order only integers, and spell the claim type in its exact case; an ``issuer`` must be one of
MAA's three, exactly spelled. Version 1.2's functions (``JmesPath`` …) are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn, cast

from confnode.policy._ast import (
    Action,
    ClaimRef,
    ClaimValue,
    Condition,
    Constant,
    Expr,
    Operator,
    Policy,
    Predicate,
    Property,
    Rule,
    SectionName,
    Verb,
)
from confnode.policy._default import SGX_CLAIM_TYPES
from confnode.policy._errors import PolicyParseError
from confnode.policy._evaluate import POLICY_ISSUER, SERVICE_ISSUER, _kind
from confnode.policy._lexer import Kind, Token, tokenize

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
#: The claim issuers MAA defines (``CustomClaim`` is the default for client-supplied claims).
ISSUERS = (SERVICE_ISSUER, POLICY_ISSUER, "CustomClaim")
#: Policy version 1.2 functions (TPM event-log queries); not implemented.
_FUNCTIONS = ("jmespath", "jsontoclaimvalue", "containsonlyvalue", "appendstring")
_SECTIONS: tuple[SectionName, ...] = ("configurationrules", "authorizationrules", "issuancerules")
_PROPS = ("type", "value", "issuer")
_OPS = ("==", "!=", "<", "<=", ">", ">=")
_ALLOWED: dict[SectionName, tuple[Verb, ...]] = {
    "configurationrules": ("issueproperty",),
    "authorizationrules": ("permit", "deny", "add"),
    "issuancerules": ("issue", "add", "issueproperty"),
}
#: Bounds that keep evaluation cheap for any accepted policy.
MAX_POLICY_CHARS = 64 * 1024
MAX_RULES = 512
MAX_CONDITIONS = 16
#: Integer constants are bounded to 64-bit signed values.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def parse_policy(
    text: str, *, claim_types: Mapping[str, type[ClaimValue]] = SGX_CLAIM_TYPES
) -> Policy:
    """Parse policy text into a :class:`Policy`; raise :class:`PolicyParseError` with line:col.

    ``claim_types`` gives the value type of the claims the service provides; conditions on them
    are checked against it (see the module docstring).
    """
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyParseError(
            f"policy is {len(text)} characters long, the limit is {MAX_POLICY_CHARS}"
        )
    return _Parser(tokenize(text), text, claim_types).policy()


_TYPE_NAMES: dict[type, str] = {bool: "a Boolean", int: "an Integer", str: "a String"}


class _Parser:
    def __init__(
        self, tokens: list[Token], text: str, claim_types: Mapping[str, type[ClaimValue]]
    ) -> None:
        self.tokens = tokens
        self.pos = 0
        self.text = text
        self.rule_count = 0
        self.claim_types = claim_types
        self.folded = {name.casefold(): name for name in claim_types}

    # -- token helpers ---------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not Kind.EOF:
            self.pos += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> NoReturn:
        at = tok or self.tok
        raise PolicyParseError(message, line=at.line, column=at.column)

    def is_punct(self, text: str) -> bool:
        return self.tok.kind is Kind.PUNCT and self.tok.text == text

    def expect_punct(self, text: str, context: str) -> Token:
        if not self.is_punct(text):
            self.fail(f"expected '{text}' {context}, found {self.tok.describe()}")
        return self.advance()

    def expect_ident(self, context: str, *choices: str) -> Token:
        tok = self.tok
        if tok.kind is not Kind.IDENT or (choices and tok.text.lower() not in choices):
            wanted = " or ".join(f"'{c}'" for c in choices) if choices else "an identifier"
            self.fail(f"expected {wanted} {context}, found {tok.describe()}")
        return self.advance()

    # -- grammar ---------------------------------------------------------------------------------

    def policy(self) -> Policy:
        self.expect_ident("at the start of the policy", "version")
        self.expect_punct("=", "after 'version'")
        tok = self.tok
        if tok.kind not in (Kind.NUMBER, Kind.INTEGER):
            self.fail(f"expected a version number such as 1.0, found {tok.describe()}")
        self.advance()
        version = tok.text if tok.kind is Kind.NUMBER else f"{tok.text}.0"
        if version not in SUPPORTED_VERSIONS:
            self.fail(
                f"policy version {version} is not supported (supported: "
                f"{', '.join(SUPPORTED_VERSIONS)})",
                tok,
            )
        self.expect_punct(";", "after the version")

        sections: dict[SectionName, tuple[Rule, ...]] = {}
        while self.tok.kind is not Kind.EOF:
            name_tok = self.expect_ident("(a section name)", *_SECTIONS)
            name = cast(SectionName, name_tok.text.lower())
            if name in sections:
                self.fail(f"section {name} appears twice", name_tok)
            later = [s for s in _SECTIONS[_SECTIONS.index(name) + 1 :] if s in sections]
            if later:
                self.fail(f"section {name} must come before {later[0]}", name_tok)
            if name == "configurationrules" and version == "1.0":
                self.fail("configurationrules needs policy version 1.1 or later", name_tok)
            sections[name] = self.section(name)
        if "authorizationrules" not in sections:  # issuancerules are optional, as in MAA
            self.fail("expected section authorizationrules before the end of the policy")
        return Policy(
            version=version,
            configuration_rules=sections.get("configurationrules", ()),
            authorization_rules=sections["authorizationrules"],
            issuance_rules=sections.get("issuancerules", ()),
            text=self.text,
        )

    def section(self, name: SectionName) -> tuple[Rule, ...]:
        self.expect_punct("{", f"after {name}")
        rules: list[Rule] = []
        while not self.is_punct("}"):
            if self.tok.kind is Kind.EOF:
                self.fail(f"expected '}}' to close {name}, found end of policy")
            rules.append(self.rule(name))
        self.advance()
        if self.is_punct(";"):
            self.advance()
        return tuple(rules)

    def rule(self, section: SectionName) -> Rule:
        start = self.tok
        self.rule_count += 1
        if self.rule_count > MAX_RULES:
            self.fail(f"too many rules (limit {MAX_RULES})", start)
        conditions: list[Condition] = []
        bound: set[str] = set()
        if not self.is_punct("=>"):
            while True:
                if len(conditions) >= MAX_CONDITIONS:
                    self.fail(f"too many conditions in one rule (limit {MAX_CONDITIONS})")
                condition = self.condition(bound)
                if condition.binding is not None:
                    bound.add(condition.binding)
                conditions.append(condition)
                if self.is_punct("&&"):
                    self.advance()
                    continue
                break
        self.expect_punct("=>", "between the conditions and the action")
        action = self.action(section, bound)
        if self.is_punct(";"):
            self.advance()
        return Rule(tuple(conditions), action, start.line, start.column)

    def condition(self, bound: set[str]) -> Condition:
        start = self.tok
        negated = False
        binding: str | None = None
        if self.is_punct("!"):
            self.advance()
            negated = True
        if self.tok.kind is Kind.IDENT:
            name_tok = self.advance()
            if self.is_punct("(") and not negated:
                self.fail(f"expected '=>' before the action {name_tok.text}(...)", name_tok)
            if negated:
                self.fail("a negated condition cannot bind a name", name_tok)
            if name_tok.text in bound:
                self.fail(f"name {name_tok.text!r} is already bound in this rule", name_tok)
            self.expect_punct(":", f"after the binding name {name_tok.text!r}")
            binding = name_tok.text
        self.expect_punct("[", "to open a condition")
        predicates: list[Predicate] = []
        if not self.is_punct("]"):
            while True:
                predicates.append(self.predicate(bound))
                if self.is_punct(","):
                    self.advance()
                    continue
                break
        self.expect_punct("]", "to close the condition")
        condition = Condition(binding, tuple(predicates), negated, start.line, start.column)
        self.check_condition(condition)
        return condition

    def check_condition(self, condition: Condition) -> None:
        """Refuse a condition that could never hold because of a type, case or issuer slip."""
        for p in condition.predicates:
            if p.prop == "issuer" and isinstance(p.operand, Constant):
                issuer = p.operand.value
                if issuer not in ISSUERS:
                    raise PolicyParseError(
                        f"issuer {issuer!r} is not one of {', '.join(ISSUERS)} (exact spelling)",
                        line=p.operand.line,
                        column=p.operand.column,
                    )
        name = condition.claim_type
        if name is None:
            return
        known = self.claim_types.get(name)
        if known is None:
            same = self.folded.get(name.casefold())
            if same is not None:
                raise PolicyParseError(
                    f'claim type "{name}" differs from "{same}" only in case; claim types are '
                    f'case-sensitive, so this condition would never hold (write "{same}")',
                    line=condition.line,
                    column=condition.column,
                )
            return
        for p in condition.predicates:
            if p.prop != "value" or not isinstance(p.operand, Constant):
                continue
            kind = _kind(p.operand.value)
            at = {"line": p.operand.line, "column": p.operand.column}
            if kind is not known:
                raise PolicyParseError(
                    f"{name} is {_TYPE_NAMES[known]} claim, but {p.render()} compares it with "
                    f"{_TYPE_NAMES[kind]}, which never matches; compare it with "
                    f"{_TYPE_NAMES[known]} constant",
                    **at,
                )
            if p.op not in ("==", "!=") and known is not int:
                raise PolicyParseError(
                    f"{p.op} compares integers, but {name} is {_TYPE_NAMES[known]} claim",
                    **at,
                )

    def predicate(self, bound: set[str]) -> Predicate:
        prop_tok = self.expect_ident("(a claim property)", *_PROPS)
        prop = cast(Property, prop_tok.text.lower())
        op_tok = self.tok
        if op_tok.kind is not Kind.PUNCT or op_tok.text not in _OPS:
            if op_tok.kind is Kind.PUNCT and op_tok.text == "=":
                self.fail(f"expected a comparison after '{prop}', found '=' (use '==')")
            self.fail(
                f"expected a comparison (== != < <= > >=) after '{prop}', found {op_tok.describe()}"
            )
        self.advance()
        op = cast(Operator, op_tok.text)
        operand = self.expr(bound)
        if prop != "value":
            if op not in ("==", "!="):
                self.fail(f"'{prop}' can only be compared with == or !=", op_tok)
            if isinstance(operand, Constant) and not isinstance(operand.value, str):
                self.fail(f"'{prop}' must be compared with a string", self.tokens[self.pos - 1])
        return Predicate(prop, op, operand)

    def expr(self, bound: set[str]) -> Expr:
        tok = self.tok
        if tok.kind is Kind.STRING:
            self.advance()
            return Constant(tok.text, tok.line, tok.column)
        if tok.kind is Kind.INTEGER:
            # Checked before int(): Python refuses to convert more than 4300 digits.
            if len(tok.text.lstrip("-")) > 19 or not _INT_MIN <= int(tok.text) <= _INT_MAX:
                self.fail(f"integer {tok.text[:24]} is out of range; expected a 64-bit integer")
            self.advance()
            return Constant(int(tok.text), tok.line, tok.column)
        if tok.kind is Kind.IDENT:
            self.advance()
            low = tok.text.lower()
            if low in ("true", "false") and not self.is_punct("."):
                return Constant(low == "true", tok.line, tok.column)
            if low in _FUNCTIONS and self.is_punct("("):
                self.fail(
                    f"function {tok.text}() (policy version 1.2) is not supported by this "
                    "service; SGX evidence has no event log to query",
                    tok,
                )
            if tok.text not in bound:
                self.fail(f"{tok.text!r} is not a name bound earlier in this rule", tok)
            self.expect_punct(".", f"after {tok.text!r} (e.g. {tok.text}.value)")
            prop_tok = self.expect_ident(f"after '{tok.text}.'", *_PROPS)
            return ClaimRef(tok.text, cast(Property, prop_tok.text.lower()), tok.line, tok.column)
        self.fail(
            f"expected a value (string, integer, true/false or c.value), found {tok.describe()}"
        )

    def action(self, section: SectionName, bound: set[str]) -> Action:
        verb_tok = self.expect_ident(
            "(an action)", "permit", "deny", "issue", "add", "issueproperty"
        )
        verb = cast(Verb, verb_tok.text.lower())
        if verb not in _ALLOWED[section]:
            allowed = ", ".join(f"{v}()" for v in _ALLOWED[section])
            self.fail(f"{verb}() is not allowed in {section} (allowed: {allowed})", verb_tok)
        self.expect_punct("(", f"after {verb}")
        if verb in ("permit", "deny"):
            self.expect_punct(")", f"{verb}() takes no arguments")
            return Action(verb, None, None, None, verb_tok.line, verb_tok.column)
        first = self.expect_ident(f"in {verb}(...)", "claim", "type", "value")
        self.expect_punct("=", f"after '{first.text}'")
        if first.text.lower() == "claim":
            ref = self.expect_ident(f"in {verb}(claim=...)")
            if ref.text not in bound:
                self.fail(f"{ref.text!r} is not a name bound by a condition of this rule", ref)
            self.expect_punct(")", f"to close {verb}(claim=...)")
            return Action(verb, ref.text, None, None, verb_tok.line, verb_tok.column)
        args: dict[str, Expr] = {first.text.lower(): self.expr(bound)}
        self.expect_punct(",", f"between the arguments of {verb}(...)")
        want = "value" if "type" in args else "type"
        self.expect_ident(f"in {verb}(...)", want)
        self.expect_punct("=", f"after '{want}'")
        args[want] = self.expr(bound)
        self.expect_punct(")", f"to close {verb}(...)")
        type_expr = args["type"]
        if isinstance(type_expr, Constant) and not isinstance(type_expr.value, str):
            raise PolicyParseError(
                "the claim type of issue/add must be a string",
                line=type_expr.line,
                column=type_expr.column,
            )
        return Action(verb, None, type_expr, args["value"], verb_tok.line, verb_tok.column)
