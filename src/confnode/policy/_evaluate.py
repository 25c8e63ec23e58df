"""Evaluation of a parsed claim-rule policy over an incoming claim set.

Semantics (MAA's, made explicit):

* A condition is true when at least one claim satisfies all of its predicates; ``![...]`` is true
  when none does. ``c:[...]`` binds each satisfying claim in turn, so a rule fires once per
  combination of bound claims (capped at :data:`MAX_FIRINGS`). One evaluation makes at most
  :data:`MAX_STEPS` claim comparisons and produces (adds or issues) at most
  :data:`MAX_PRODUCED` claims of :data:`MAX_PRODUCED_BYTES` in all; a policy needing more raises
  :class:`PolicyTooComplex`. What a policy produces ends up in a token and a trace, so this bounds
  the output (and the work of deduplicating it), not only the comparisons.
* Comparisons are type-strict: a string never equals an integer, a boolean is not an integer, and
  ``< <= > >=`` hold only between integers. A comparison across types is false. The parser refuses
  such slips on the service's own claims; for other claims, a rule that did not match says in its
  trace when the failed condition compared across types or named a claim type in the wrong case.
* Configuration rules run first, then authorization rules, then issuance rules. Claims added with
  ``add``/``issue``/``issueproperty`` join the incoming set for the rules that follow.
* Authorization: a ``deny()`` that fires ends evaluation with a denial; otherwise the request is
  permitted only if at least one ``permit()`` fired. Issuance rules run only when permitted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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
    Rule,
    SectionName,
)
from confnode.policy._errors import PolicyTooComplex

#: Issuer of the claims the service derives from the evidence.
SERVICE_ISSUER = "AttestationService"
#: Issuer of the claims a policy adds or issues.
POLICY_ISSUER = "AttestationPolicy"
#: Upper bound on how often one rule may fire (combinations of bound claims).
MAX_FIRINGS = 256
#: Upper bound on predicate checks in one evaluation. Bindings multiply (``a:[] && b:[] && ...``
#: over N claims is N^k combinations), so without it one draft policy stalls a worker.
MAX_STEPS = 100_000
#: Upper bound on the claims one evaluation adds or issues, and on their total size (claim type
#: plus value, in characters).
MAX_PRODUCED = 1024
MAX_PRODUCED_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Claim:
    type: str
    value: ClaimValue
    issuer: str = SERVICE_ISSUER


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """What one rule did, for the rule-by-rule explanation."""

    section: SectionName
    index: int  # 1-based within its section
    line: int
    rule: str
    matched: bool
    effect: str

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "rule": self.index,
            "line": self.line,
            "text": self.rule,
            "matched": self.matched,
            "effect": self.effect,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    permitted: bool
    issued: tuple[Claim, ...]
    properties: tuple[Claim, ...]
    trace: tuple[RuleTrace, ...]
    #: The ``deny()`` that fired, or the first ``permit()`` that fired; None when nothing fired.
    deciding_rule: RuleTrace | None

    def explain(self) -> str:
        """One line saying why the request was permitted or denied."""
        rule = self.deciding_rule
        if self.permitted and rule is not None:
            return f"permitted by authorizationrules rule {rule.index} (line {rule.line})"
        if rule is not None:
            return f"denied by authorizationrules rule {rule.index} (line {rule.line}): {rule.rule}"
        return "denied: no authorization rule permitted the request"

    def issued_json(self) -> dict[str, Any]:
        """Issued claims as JSON token claims; a type issued with several values becomes a list."""
        out: dict[str, Any] = {}
        seen: set[tuple[str, type, ClaimValue]] = set()
        for claim in self.issued:
            key = (claim.type, _kind(claim.value), claim.value)
            if key in seen:
                continue
            seen.add(key)
            if claim.type not in out:
                out[claim.type] = claim.value
                continue
            current = out[claim.type]
            values = current if isinstance(current, list) else [current]
            values.append(claim.value)
            out[claim.type] = values
        return out


def claims_from_mapping(values: Mapping[str, Any], issuer: str = SERVICE_ISSUER) -> list[Claim]:
    """Incoming claims from a JSON-like mapping; lists become one claim per element.

    Values that are not strings, integers or booleans (objects, null) are not claims the language
    can compare, so they are left out.
    """
    out: list[Claim] = []
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        out.extend(Claim(name, item, issuer) for item in items if isinstance(item, str | int))
    return out


class _Budget:
    """Counts predicate checks and produced claims; raises :class:`PolicyTooComplex` past
    :data:`MAX_STEPS`, :data:`MAX_PRODUCED` or :data:`MAX_PRODUCED_BYTES`."""

    __slots__ = ("bytes_left", "claims_left", "left")

    def __init__(self) -> None:
        self.left = MAX_STEPS
        self.claims_left = MAX_PRODUCED
        self.bytes_left = MAX_PRODUCED_BYTES

    def produce(self, rule: Rule, claim: Claim) -> None:
        self.claims_left -= 1
        value = claim.value
        self.bytes_left -= len(claim.type) + (len(value) if isinstance(value, str) else 8)
        if self.claims_left < 0 or self.bytes_left < 0:
            raise PolicyTooComplex(
                f"the policy produces more than {MAX_PRODUCED} claims or "
                f"{MAX_PRODUCED_BYTES} characters of claims; expected fewer issued/added claims",
                line=rule.line,
                column=rule.column,
            )

    def spend(self, rule: Rule, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise PolicyTooComplex(
                f"evaluating the policy needs more than {MAX_STEPS} claim comparisons; "
                'expected rules whose conditions name a claim type (type=="...")',
                line=rule.line,
                column=rule.column,
            )


class _ClaimSet:
    """The growing incoming claim set, indexed by claim type for ``type==`` conditions."""

    __slots__ = ("all", "by_type")

    def __init__(self, claims: Iterable[Claim]) -> None:
        self.all: list[Claim] = []
        self.by_type: dict[str, list[Claim]] = {}
        for claim in claims:
            self.append(claim)

    def append(self, claim: Claim) -> None:
        self.all.append(claim)
        self.by_type.setdefault(claim.type, []).append(claim)

    def candidates(self, condition: Condition) -> tuple[Claim, ...] | list[Claim]:
        if condition.claim_type is None:
            return self.all
        return self.by_type.get(condition.claim_type, ())


def evaluate_policy(policy: Policy, claims: Iterable[Claim]) -> Evaluation:
    """Run ``policy`` over ``claims``; pure and deterministic."""
    incoming = _ClaimSet(claims)
    budget = _Budget()
    trace: list[RuleTrace] = []
    properties: list[Claim] = []
    issued: list[Claim] = []

    for index, rule in enumerate(policy.configuration_rules, 1):
        trace.append(
            _run(rule, "configurationrules", index, incoming, issued, properties, budget)[0]
        )

    deciding: RuleTrace | None = None
    denied = False
    for index, rule in enumerate(policy.authorization_rules, 1):
        entry, fired = _run(rule, "authorizationrules", index, incoming, issued, properties, budget)
        trace.append(entry)
        if fired and rule.action.verb == "deny":
            deciding, denied = entry, True
            break
        if fired and rule.action.verb == "permit" and deciding is None:
            deciding = entry
    permitted = not denied and deciding is not None

    if permitted:
        for index, rule in enumerate(policy.issuance_rules, 1):
            trace.append(
                _run(rule, "issuancerules", index, incoming, issued, properties, budget)[0]
            )
    return Evaluation(permitted, tuple(issued), tuple(properties), tuple(trace), deciding)


def _run(
    rule: Rule,
    section: SectionName,
    index: int,
    incoming: _ClaimSet,
    issued: list[Claim],
    properties: list[Claim],
    budget: _Budget,
) -> tuple[RuleTrace, bool]:
    reached = [0]
    search = _assignments(rule, incoming, {}, 0, reached, budget)
    firings = list(itertools.islice(search, MAX_FIRINGS))
    text = rule.text
    if not firings:
        failed = rule.conditions[reached[0]] if reached[0] < len(rule.conditions) else None
        why = f"condition {reached[0] + 1} {failed.text} " if failed else ""
        effect = f"not matched: {why}was not satisfied".replace("  ", " ")
        slip = _slip(rule, failed, incoming, budget) if failed else None
        if slip:
            effect += f" (warning: {slip})"
        return RuleTrace(section, index, rule.line, text, False, effect), False

    action = rule.action
    if action.verb in ("permit", "deny"):
        return RuleTrace(section, index, rule.line, text, True, f"{action.verb}()"), True
    produced: list[Claim] = []
    seen: set[tuple[str, type, ClaimValue]] = set()
    for env in firings:
        claim = _produce(action, env)
        key = (claim.type, _kind(claim.value), claim.value)  # True and 1 are different claims
        if key not in seen:
            seen.add(key)
            budget.produce(rule, claim)
            produced.append(claim)
    for claim in produced:
        incoming.append(claim)
        if action.verb == "issue":
            issued.append(claim)
        elif action.verb == "issueproperty":
            properties.append(claim)
    listed = ", ".join(f"{c.type}={_render(c.value)}" for c in produced)
    return RuleTrace(section, index, rule.line, text, True, f"{action.verb} {listed}"), True


def _slip(rule: Rule, condition: Condition, claims: _ClaimSet, budget: _Budget) -> str | None:
    """Why ``condition`` may have failed by a slip rather than on the evidence: its claim type
    exists only in another case, or its value constant has another type than every such claim."""
    name = condition.claim_type
    if name is None:
        return None
    present = claims.by_type.get(name)
    if not present:
        budget.spend(rule, len(claims.by_type))
        folded = name.casefold()
        other = next((t for t in claims.by_type if t.casefold() == folded), None)
        if other is None:
            return None
        return f'no claim has type "{name}", but "{other}" exists: claim types are case-sensitive'
    budget.spend(rule, len(present))
    kinds = {_kind(c.value) for c in present}
    for p in condition.predicates:
        if p.prop == "value" and isinstance(p.operand, Constant):
            if _kind(p.operand.value) not in kinds:
                names = " or ".join(sorted(k.__name__ for k in kinds))
                return (
                    f"{p.render()} compares {name} claims ({names}) with a "
                    f"{_kind(p.operand.value).__name__}, which never matches"
                )
    return None


def _assignments(
    rule: Rule,
    claims: _ClaimSet,
    env: dict[str, Claim],
    i: int,
    reached: list[int],
    budget: _Budget,
) -> Iterator[dict[str, Claim]]:
    reached[0] = max(reached[0], i)
    if i == len(rule.conditions):
        yield env
        return
    condition = rule.conditions[i]
    # Firings are collected before the action runs, so the claim set cannot change under us.
    matches = _matches(rule, condition, claims, env, budget)
    if condition.negated or condition.binding is None:
        # Only existence matters: further matches would repeat the same environment.
        if (next(matches, None) is None) is condition.negated:
            yield from _assignments(rule, claims, env, i + 1, reached, budget)
        return
    for claim in matches:
        bound = {**env, condition.binding: claim}
        yield from _assignments(rule, claims, bound, i + 1, reached, budget)


def _matches(
    rule: Rule, condition: Condition, claims: _ClaimSet, env: Mapping[str, Claim], budget: _Budget
) -> Iterator[Claim]:
    cost = max(1, len(condition.predicates))
    for claim in claims.candidates(condition):
        budget.spend(rule, cost)
        if all(_holds(p, claim, env) for p in condition.predicates):
            yield claim


def _holds(predicate: Predicate, claim: Claim, env: Mapping[str, Claim]) -> bool:
    actual: ClaimValue = getattr(claim, predicate.prop)
    return _compare(actual, predicate.op, _resolve(predicate.operand, env))


def _resolve(expr: Expr, env: Mapping[str, Claim]) -> ClaimValue:
    if isinstance(expr, Constant):
        return expr.value
    ref: ClaimRef = expr
    value: ClaimValue = getattr(env[ref.name], ref.prop)
    return value


def _produce(action: Action, env: Mapping[str, Claim]) -> Claim:
    if action.claim is not None:
        source = env[action.claim]
        return Claim(source.type, source.value, POLICY_ISSUER)
    assert action.type is not None and action.value is not None  # guaranteed by the parser
    claim_type = _resolve(action.type, env)
    return Claim(str(claim_type), _resolve(action.value, env), POLICY_ISSUER)


def _kind(value: ClaimValue) -> type:
    return bool if isinstance(value, bool) else int if isinstance(value, int) else str


def _compare(actual: ClaimValue, op: Operator, expected: ClaimValue) -> bool:
    if _kind(actual) is not _kind(expected):
        return False
    if op == "==":
        return actual == expected
    if op == "!=":
        return actual != expected
    if not isinstance(actual, int) or isinstance(actual, bool):
        return False
    assert isinstance(expected, int)
    if op == "<":
        return actual < expected
    if op == "<=":
        return actual <= expected
    if op == ">":
        return actual > expected
    return actual >= expected


def _render(value: ClaimValue) -> str:
    return Constant(value, 0, 0).render()
