"""Azure Key Vault release policies (Secure Key Release JSON), parsed and evaluated.

Shape::

    {"version": "1.0.0",
     "anyOf": [                                   # or "allOf"
        {"authority": "https://attest.example",
         "allOf": [                               # or "anyOf"; no deeper nesting
            {"claim": "x-ms-sgx-mrsigner", "equals": "ab12..."},
            {"claim": "x-ms-sgx-svn", "greaterOrEquals": 2},
            {"claim": "x-ms-runtime.keys", "exists": true}]}]}

The older preview form ``{"claim": ..., "condition": "equals", "value": ...}`` is accepted too.
Claim paths use dots to descend into objects (a claim whose own name contains the whole path is
tried first). ``equals`` and ``notEquals`` compare a string policy value with a Boolean claim as a
Boolean (``"false"``, ``"True"``: case-insensitive, as .NET's ``bool.Parse``) and with a numeric
claim as a number (``"3"``), because published policies write values both ways. Values that cannot
be compared that way (``"yes"`` with a Boolean, ``"abc"`` with a number, an object, ``null``)
satisfy neither ``equals`` nor ``notEquals``: ``notEquals "True"`` used to hold for a claim that is
``true`` (its spelling is ``true``), i.e. it failed open.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from confnode.policy._errors import PolicyParseError

Combinator = Literal["anyOf", "allOf"]
_OPS = ("equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists")
_MISSING = object()
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class ReleaseCondition:
    claim: str
    op: str
    value: Any

    def render(self) -> str:
        return f"{self.claim} {self.op} {json.dumps(self.value)}"


@dataclass(frozen=True, slots=True)
class AuthorityRule:
    authority: str
    combinator: Combinator
    conditions: tuple[ReleaseCondition, ...]


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    version: str
    combinator: Combinator
    authorities: tuple[AuthorityRule, ...]


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    allowed: bool
    #: One line per authority rule: why it matched or which condition failed.
    reasons: tuple[str, ...]


def parse_release_policy(data: str | bytes | Mapping[str, Any]) -> ReleasePolicy:
    """Parse a release policy document; raise :class:`PolicyParseError` naming the bad member."""
    if isinstance(data, str | bytes):
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise PolicyParseError(f"release policy is not JSON: {error}") from error
    else:
        doc = dict(data)
    if not isinstance(doc, dict):
        raise PolicyParseError(f"release policy must be a JSON object, found {type(doc).__name__}")
    version = doc.get("version", "1.0.0")
    if not isinstance(version, str) or not version.startswith("1."):
        raise PolicyParseError(f"release policy version {version!r} is not supported (want 1.x)")
    combinator, members = _combinator(doc, "release policy")
    authorities: list[AuthorityRule] = []
    for i, member in enumerate(members):
        where = f"{combinator}[{i}]"
        if not isinstance(member, dict):
            raise PolicyParseError(f"{where} must be an object with 'authority'")
        authority = member.get("authority")
        if not isinstance(authority, str) or not authority:
            raise PolicyParseError(f"{where} has no 'authority' (the attestation service URL)")
        inner, items = _combinator(member, where)
        conditions = tuple(
            _condition(item, f"{where}.{inner}[{j}]") for j, item in enumerate(items)
        )
        authorities.append(AuthorityRule(authority, inner, conditions))
    return ReleasePolicy(version, combinator, tuple(authorities))


def _combinator(doc: Mapping[str, Any], where: str) -> tuple[Combinator, list[Any]]:
    present = [k for k in ("anyOf", "allOf") if k in doc]
    if len(present) != 1:
        raise PolicyParseError(f"{where} needs exactly one of 'anyOf' or 'allOf'")
    key: Combinator = "anyOf" if present[0] == "anyOf" else "allOf"
    members = doc[key]
    if not isinstance(members, list) or not members:
        raise PolicyParseError(f"{where}.{key} must be a non-empty list")
    return key, members


def _condition(item: Any, where: str) -> ReleaseCondition:
    if not isinstance(item, dict):
        raise PolicyParseError(f"{where} must be an object with 'claim'")
    if "anyOf" in item or "allOf" in item:
        raise PolicyParseError(f"{where}: anyOf/allOf cannot be nested below the authority level")
    claim = item.get("claim")
    if not isinstance(claim, str) or not claim:
        raise PolicyParseError(f"{where} has no 'claim'")
    if "condition" in item:  # older preview schema
        op, value = item["condition"], item.get("value")
        if op not in _OPS:
            raise PolicyParseError(f"{where}: unknown condition {op!r} (expected one of {_OPS})")
    else:
        ops = [k for k in item if k != "claim"]
        if len(ops) != 1 or ops[0] not in _OPS:
            raise PolicyParseError(
                f"{where}: expected exactly one operator of {', '.join(_OPS)}, found {ops}"
            )
        op, value = ops[0], item[ops[0]]
    if op == "exists" and not isinstance(value, bool):
        raise PolicyParseError(f"{where}: 'exists' takes true or false, found {value!r}")
    if op != "exists" and not isinstance(value, str | int | float | bool):
        raise PolicyParseError(f"{where}: {op} needs a string, number or boolean")
    return ReleaseCondition(claim, op, value)


def evaluate_release_policy(
    policy: ReleasePolicy, claims: Mapping[str, Any], *, issuer: str
) -> ReleaseDecision:
    """Decide whether a token from ``issuer`` with ``claims`` satisfies ``policy``."""
    results: list[bool] = []
    reasons: list[str] = []
    for rule in policy.authorities:
        if _norm_url(rule.authority) != _norm_url(issuer):
            results.append(False)
            reasons.append(f"authority {rule.authority} does not match token issuer {issuer}")
            continue
        outcomes = [(c, _check(c, claims)) for c in rule.conditions]
        ok = (all if rule.combinator == "allOf" else any)(r for _, r in outcomes)
        results.append(ok)
        if ok:
            reasons.append(f"authority {rule.authority}: {rule.combinator} satisfied")
        else:
            failed = [c.render() for c, r in outcomes if not r]
            reasons.append(
                f"authority {rule.authority}: {rule.combinator} not satisfied "
                f"(failed: {'; '.join(failed)})"
            )
    allowed = (all if policy.combinator == "allOf" else any)(results)
    return ReleaseDecision(allowed, tuple(reasons))


def _norm_url(url: str) -> str:
    return url.rstrip("/").lower()


def _lookup(claims: Mapping[str, Any], path: str) -> Any:
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _check(cond: ReleaseCondition, claims: Mapping[str, Any]) -> bool:
    actual = _lookup(claims, cond.claim)
    if cond.op == "exists":
        return (actual is not _MISSING) is cond.value
    if actual is _MISSING:
        return False
    if cond.op == "equals":
        return _equal(actual, cond.value) is True
    if cond.op == "notEquals":
        return _equal(actual, cond.value) is False  # None: incomparable, so not "not equal"
    a, b = _number(actual), _number(cond.value)
    if a is None or b is None:
        return False
    if cond.op == "less":
        return a < b
    if cond.op == "lessOrEquals":
        return a <= b
    if cond.op == "greater":
        return a > b
    return a >= b


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.lower())
    return None


def _equal(actual: Any, expected: Any) -> bool | None:
    """Whether the claim equals the policy value; None when they cannot be compared."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        a, b = _boolean(actual), _boolean(expected)
        return None if a is None or b is None else a == b
    if isinstance(actual, str) and isinstance(expected, str):
        return actual == expected
    x, y = _number(actual), _number(expected)
    return None if x is None or y is None else x == y


def _number(value: Any) -> int | float | None:
    """A comparable number: a JSON number, or a string spelling one exactly; ints stay ints
    (float() overflows past 1e308, comparisons do not). Anything else (``"1_000"``, ``"nan"``,
    ``null``, an object) is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        if _JSON_INTEGER.fullmatch(value) and len(value) <= 4000:
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else None
    return None
