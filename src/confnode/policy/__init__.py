"""Attestation and release policies.

* MAA's claim-rule language (``version=1.0;`` / ``1.1`` / ``1.2``): :func:`parse_policy` builds a
  syntax tree (errors carry line and column), :func:`evaluate_policy` runs it over the incoming
  claims and returns the decision, the issued claims and a rule-by-rule trace.
* Azure Key Vault release policies (JSON): :func:`parse_release_policy` and
  :func:`evaluate_release_policy`.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

from confnode.policy._ast import ClaimValue, Policy, Rule
from confnode.policy._default import (
    DEFAULT_DENIED_TCB_STATUSES,
    DEFAULT_SGX_POLICY,
    LEGACY_INCOMING_CLAIMS,
    SGX_CLAIM_TYPES,
    policy_hash,
)
from confnode.policy._errors import PolicyDenied, PolicyParseError, PolicyTooComplex
from confnode.policy._evaluate import (
    MAX_PRODUCED,
    MAX_PRODUCED_BYTES,
    POLICY_ISSUER,
    SERVICE_ISSUER,
    Claim,
    Evaluation,
    RuleTrace,
    claims_from_mapping,
    evaluate_policy,
)
from confnode.policy._parser import SUPPORTED_VERSIONS, parse_policy
from confnode.policy._release import (
    ReleaseDecision,
    ReleasePolicy,
    evaluate_release_policy,
    parse_release_policy,
)

__all__ = [
    "DEFAULT_DENIED_TCB_STATUSES",
    "DEFAULT_SGX_POLICY",
    "LEGACY_INCOMING_CLAIMS",
    "MAX_PRODUCED",
    "MAX_PRODUCED_BYTES",
    "POLICY_ISSUER",
    "SERVICE_ISSUER",
    "SGX_CLAIM_TYPES",
    "SUPPORTED_VERSIONS",
    "Claim",
    "ClaimValue",
    "Evaluation",
    "Policy",
    "PolicyDenied",
    "PolicyParseError",
    "PolicyTooComplex",
    "ReleaseDecision",
    "ReleasePolicy",
    "Rule",
    "RuleTrace",
    "claims_from_mapping",
    "evaluate_policy",
    "evaluate_release_policy",
    "parse_policy",
    "parse_release_policy",
    "policy_hash",
]
