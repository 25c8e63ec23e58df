"""MAA policy-language details: version 1.2, optional issuancerules, and slips that would make a
condition silently never hold (type mismatches, claim-name case, issuer spelling)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confnode.policy import (
    SGX_CLAIM_TYPES,
    PolicyParseError,
    claims_from_mapping,
    evaluate_policy,
    parse_policy,
)

ENCLAVE = claims_from_mapping(
    {
        "x-ms-sgx-is-debuggable": True,
        "x-ms-sgx-svn": 3,
        "x-ms-sgx-mrsigner": "abcd",
        "x-ms-attestation-type": "sgx",
    }
)


def test_version_1_2_parses_and_evaluates() -> None:
    text = """version=1.2;
configurationrules { => issueproperty(type="x-ms-sgx-tcbidentifier", value="10"); };
authorizationrules { [type=="x-ms-sgx-svn", value>=2] => permit(); };
issuancerules { c:[type=="x-ms-sgx-mrsigner"] => issue(type="signer", value=c.value); };"""
    policy = parse_policy(text)
    assert policy.version == "1.2"
    evaluation = evaluate_policy(policy, ENCLAVE)
    assert evaluation.permitted
    assert evaluation.issued_json() == {"signer": "abcd"}


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_issuancerules_are_optional(version: str) -> None:
    policy = parse_policy(f"version={version}; authorizationrules {{ => permit(); }};")
    assert policy.issuance_rules == ()
    evaluation = evaluate_policy(policy, ENCLAVE)
    assert evaluation.permitted and evaluation.issued == ()


def test_version_1_2_functions_are_refused_by_name() -> None:
    text = (
        "version=1.2; authorizationrules { => permit(); }; issuancerules {\n"
        'c:[type=="events"] => add(type="x", value=JmesPath(c.value, "Events[0]")); };'
    )
    with pytest.raises(PolicyParseError, match=r"line 2, column 43: function JmesPath\(\)"):
        parse_policy(text)


@pytest.mark.parametrize(
    ("condition", "at", "needle"),
    [
        # The classic fail-open: a Boolean claim compared with the string "true".
        ('[type=="x-ms-sgx-is-debuggable", value=="true"]', '"true"', "is a Boolean claim"),
        ('[type=="x-ms-sgx-is-debuggable", value!="false"]', '"false"', "is a Boolean claim"),
        ('[type=="x-ms-sgx-is-debuggable", value==1]', "1", "compares it with an Integer"),
        ('[type=="x-ms-sgx-svn", value=="3"]', '"3"', "is an Integer claim"),
        ('[type=="x-ms-sgx-svn", value!=true]', "true", "is an Integer claim"),
        ('[type=="x-ms-sgx-mrsigner", value==12]', "12", "is a String claim"),
        ('[type=="x-ms-sgx-mrsigner", value>="ab"]', '"ab"', ">= compares integers"),
        ('[type=="$is-debuggable", value=="true"]', '"true"', "$is-debuggable is a Boolean"),
        ('[type=="X-MS-SGX-IS-DEBUGGABLE", value==true]', "[", "only in case"),
        ('[type=="x-ms-sgx-Is-Debuggable"]', "[", 'write "x-ms-sgx-is-debuggable"'),
        ('[type=="x-ms-sgx-svn", issuer=="attestationservice"]', '"att', "exact spelling"),
        ('[type=="x-ms-sgx-svn", issuer=="Attestation Service"]', '"Att', "is not one of"),
    ],
)
def test_conditions_that_could_never_hold_are_refused(condition: str, at: str, needle: str) -> None:
    """In a deny() rule each of these would never fire: the policy would fail open. The error
    points at the offending constant (or the condition, for a misspelt claim type)."""
    text = f"version=1.0; authorizationrules {{\n{condition} => deny();\n=> permit(); }};"
    with pytest.raises(PolicyParseError) as info:
        parse_policy(text)
    column = condition.rindex(at) + 1 if at != "[" else 1
    assert (info.value.line, info.value.column) == (2, column), info.value.message
    assert needle in info.value.message


def test_well_typed_conditions_on_service_claims_parse() -> None:
    text = """version=1.0; authorizationrules {
[type=="x-ms-sgx-is-debuggable", value==true] => deny();
[type=="$svn", value<2, issuer=="AttestationService"] => deny();
[type=="x-ms-sgx-mrsigner", value!="abcd"] => deny();
=> permit(); };"""
    evaluation = evaluate_policy(parse_policy(text), ENCLAVE)
    assert not evaluation.permitted
    assert evaluation.explain().startswith("denied by authorizationrules rule 1")


def test_claim_types_can_be_given_or_switched_off() -> None:
    text = 'version=1.0; authorizationrules { [type=="flag", value=="yes"] => permit(); };'
    parse_policy(text)  # not a service claim: no type is known
    with pytest.raises(PolicyParseError, match="flag is a Boolean claim"):
        parse_policy(text, claim_types={"flag": bool})
    relaxed = 'version=1.0; authorizationrules { [type=="x-ms-sgx-svn", value=="3"] => deny(); };'
    parse_policy(relaxed, claim_types={})


def test_trace_warns_when_a_condition_compares_across_types() -> None:
    """Claims the parser cannot know (added by the policy itself) are checked at evaluation: the
    rule that did not match says why in the draft trace."""
    text = """version=1.0; authorizationrules {
[type=="x-ms-sgx-svn"] => add(type="patched", value=true);
[type=="patched", value=="false"] => deny();
[type=="Patched"] => deny();
=> permit(); };"""
    evaluation = evaluate_policy(parse_policy(text), ENCLAVE)
    assert evaluation.permitted
    mismatch, case = evaluation.trace[1].effect, evaluation.trace[2].effect
    assert 'warning: value=="false" compares patched claims (bool) with a str' in mismatch
    assert 'no claim has type "Patched", but "patched" exists' in case


def test_trace_has_no_warning_for_an_honest_miss() -> None:
    text = 'version=1.0; authorizationrules { [type=="x-ms-sgx-svn", value==9] => permit(); };'
    (entry,) = evaluate_policy(parse_policy(text), ENCLAVE).trace
    assert not entry.matched and "warning" not in entry.effect


_NAMES = st.sampled_from([*SGX_CLAIM_TYPES, "custom", "X-MS-SGX-SVN"])
_VALUES = st.sampled_from(['"true"', "true", "false", "3", '"abc"', "-1"])
_OPS = st.sampled_from(["==", "!=", "<", ">="])


@given(st.lists(st.tuples(_NAMES, _OPS, _VALUES), min_size=1, max_size=4))
def test_accepted_policies_compare_service_claims_only_with_their_type(
    conditions: list[tuple[str, str, str]],
) -> None:
    """Property: whatever the parser accepts, every condition on a service claim compares with a
    constant of that claim's type, so only the evidence decides whether it holds."""
    body = " && ".join(f'[type=="{n}", value{op}{v}]' for n, op, v in conditions)
    try:
        policy = parse_policy(f"version=1.0; authorizationrules {{ {body} => deny(); }};")
    except PolicyParseError:
        return
    for condition in policy.authorization_rules[0].conditions:
        name = condition.claim_type
        assert name is not None
        assert name in SGX_CLAIM_TYPES or name.casefold() not in {
            n.casefold() for n in SGX_CLAIM_TYPES
        }
        known = SGX_CLAIM_TYPES.get(name)
        value = condition.predicates[1].operand.value  # type: ignore[union-attr]
        if known is not None:
            assert type(value) is known
            assert condition.predicates[1].op in ("==", "!=") or known is int
