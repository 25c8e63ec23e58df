"""MAA claim-rule language: parser (with positions), evaluator semantics, default policy, hash."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode.policy import (
    DEFAULT_SGX_POLICY,
    Claim,
    PolicyParseError,
    PolicyTooComplex,
    claims_from_mapping,
    evaluate_policy,
    parse_policy,
    policy_hash,
)

MAA_SAMPLE = """version= 1.0;
authorizationrules
{
    [ type=="x-ms-sgx-is-debuggable", value==false ] &&
    [ type=="x-ms-sgx-product-id", value==3 ] &&
    [ type=="x-ms-sgx-svn", value>= 2 ] &&
    [ type=="x-ms-sgx-mrsigner", value=="abcd"]
        => permit();
};
issuancerules {
    c:[type=="x-ms-sgx-mrsigner"] => issue(type="custom-signer", value=c.value);
};
"""


def _enclave(**over: object) -> list[Claim]:
    values: dict[str, object] = {
        "x-ms-sgx-is-debuggable": False,
        "x-ms-sgx-product-id": 3,
        "x-ms-sgx-svn": 2,
        "x-ms-sgx-mrsigner": "abcd",
        "x-ms-attestation-type": "sgx",
        "x-confnode-tcb-status": "UpToDate",
    }
    values.update(over)
    return claims_from_mapping(values)


# -- parser -----------------------------------------------------------------------------------


def test_parses_maa_sample_into_rules() -> None:
    policy = parse_policy(MAA_SAMPLE)
    assert policy.version == "1.0"
    (rule,) = policy.authorization_rules
    assert (rule.line, rule.column) == (4, 5)
    assert len(rule.conditions) == 4
    assert rule.action.verb == "permit"
    assert rule.conditions[2].predicates[1].op == ">="
    (issue,) = policy.issuance_rules
    assert issue.conditions[0].binding == "c"
    assert (
        issue.render()
        == 'c:[type=="x-ms-sgx-mrsigner"] => issue(type="custom-signer", value=c.value)'
    )


def test_version_1_1_configuration_rules_and_comments() -> None:
    text = """version=1.1; // comment
configurationrules { => issueproperty(type="x-ms-sgx-tcbidentifier", value="10"); };
/* block
   comment */
authorizationrules { => permit(); };
issuancerules { };"""
    policy = parse_policy(text)
    assert len(policy.configuration_rules) == 1
    result = evaluate_policy(policy, [])
    assert [c.value for c in result.properties] == ["10"]


@pytest.mark.parametrize(
    ("text", "line", "column", "needle"),
    [
        ("", 1, 1, "expected 'version'"),
        ("version=2.0;", 1, 9, "version 2.0 is not supported"),
        ("version=1.0", 1, 12, "expected ';' after the version"),
        ("version=1.0;\nissuancerules{};\nauthorizationrules{};", 3, 1, "must come before"),
        ("version=1.0;\nissuancerules{};", 2, 17, "expected section authorizationrules"),
        (
            'version=1.0; authorizationrules { [type=="a" value==1] => permit(); };',
            1,
            46,
            "expected ']'",
        ),
        ('version=1.0;\nauthorizationrules {\n  [type="a"] => permit();\n};', 3, 8, "use '=='"),
        (
            "version=1.0;\nauthorizationrules {\n  c:[type=\u201dx\u201d] => permit();};",
            3,
            11,
            "ASCII double quotes",
        ),
        (
            'version=1.0; authorizationrules { => issue(type="a", value=1); };',
            1,
            38,
            "not allowed in authorizationrules",
        ),
        (
            'version=1.0; authorizationrules { [type=="a", value==d.value] => permit(); };',
            1,
            54,
            "'d' is not a name bound",
        ),
        ("version=1.0; authorizationrules { permit(); };", 1, 35, "expected '=>'"),
        (
            'version=1.0; authorizationrules { [type<"a"] => permit(); };',
            1,
            40,
            "only be compared with == or !=",
        ),
        (
            'version=1.0; authorizationrules { [type=="a\n"] => permit(); };',
            1,
            42,
            "string not closed",
        ),
        (
            "version=1.0; authorizationrules { => permit(); }; issuancerules { "
            'c:[type=="a"] && c:[type=="b"] => issue(claim=c); };',
            1,
            84,
            "already bound",
        ),
        (
            "version=1.0; configurationrules { }; authorizationrules { }; issuancerules { };",
            1,
            14,
            "needs policy version 1.1",
        ),
        (
            'version=1.0; authorizationrules { !c:[type=="a"] => deny(); };',
            1,
            36,
            "negated condition cannot bind",
        ),
        ("version=1.0; /* never closed", 1, 14, "unterminated /* comment"),
        (
            'version=1.0; authorizationrules { [type=="a", value=='
            + "9" * 5000
            + "] => permit(); };",
            1,
            54,
            "out of range",
        ),
        (
            "version=1.0; authorizationrules { [value==9223372036854775808] => deny(); };",
            1,
            43,
            "out of range",
        ),
    ],
)
def test_syntax_errors_point_at_line_and_column(
    text: str, line: int, column: int, needle: str
) -> None:
    with pytest.raises(PolicyParseError, match=f"line {line}, column {column}: ") as info:
        parse_policy(text)
    assert needle in str(info.value)
    assert (info.value.line, info.value.column) == (line, column)


_POLICY_ALPHABET = st.sampled_from(
    [
        "version",
        "=",
        "1.0",
        ";",
        "authorizationrules",
        "issuancerules",
        "configurationrules",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "type",
        "value",
        "issuer",
        "==",
        "!=",
        ">=",
        "<",
        "&&",
        "=>",
        ",",
        ":",
        ".",
        "c",
        "permit",
        "deny",
        "issue",
        "add",
        "claim",
        '"x"',
        "1",
        "-3",
        "true",
        "!",
        " ",
        "\n",
        "//",
        "/*",
        "*/",
        '"',
        "\\",
        "\u201d",
        "\x00",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_POLICY_ALPHABET, max_size=40).map("".join))
def test_token_soup_never_raises_anything_but_parse_errors(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyParseError as error:
        assert error.line is None or error.line >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_parse_errors(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyParseError:
        pass


# -- evaluator --------------------------------------------------------------------------------


def test_sample_policy_permits_matching_enclave_and_issues_claims() -> None:
    result = evaluate_policy(parse_policy(MAA_SAMPLE), _enclave())
    assert result.permitted
    assert result.issued_json() == {"custom-signer": "abcd"}
    assert result.explain() == "permitted by authorizationrules rule 1 (line 4)"


@pytest.mark.parametrize(
    ("override", "failing_condition"),
    [
        ({"x-ms-sgx-is-debuggable": True}, 1),
        ({"x-ms-sgx-product-id": 4}, 2),
        ({"x-ms-sgx-svn": 1}, 3),
        ({"x-ms-sgx-mrsigner": "ffff"}, 4),
        ({"x-ms-sgx-product-id": "3"}, 2),  # a string is never equal to an integer
        ({"x-ms-sgx-svn": True}, 3),  # a boolean is not an integer for >=
    ],
)
def test_sample_policy_denies_and_names_the_failed_condition(
    override: dict[str, object], failing_condition: int
) -> None:
    result = evaluate_policy(parse_policy(MAA_SAMPLE), _enclave(**override))
    assert not result.permitted
    assert result.issued == ()
    (entry,) = result.trace
    assert not entry.matched
    assert entry.effect.startswith(f"not matched: condition {failing_condition} ")


def test_deny_wins_over_an_earlier_permit() -> None:
    text = """version=1.0; authorizationrules {
        => permit();
        [type=="x-confnode-tcb-status", value=="OutOfDate"] => deny();
    }; issuancerules { => issue(type="never", value=1); };"""
    result = evaluate_policy(parse_policy(text), _enclave(**{"x-confnode-tcb-status": "OutOfDate"}))
    assert not result.permitted
    assert result.deciding_rule is not None and result.deciding_rule.index == 2
    assert result.issued == ()  # issuance rules do not run after a denial


def test_no_permit_means_denied() -> None:
    text = 'version=1.0; authorizationrules { [type=="absent"] => permit(); }; issuancerules { };'
    result = evaluate_policy(parse_policy(text), _enclave())
    assert not result.permitted
    assert result.explain() == "denied: no authorization rule permitted the request"


def test_bindings_join_across_conditions_and_issue_claim() -> None:
    text = """version=1.0; authorizationrules { => permit(); };
issuancerules {
    a:[type=="wanted"] && b:[type=="have", value==a.value] => issue(claim=b);
    c:[type=="have"] => add(type="seen", value=c.value);
    [type=="seen", value=="two"] => issue(type="saw-two", value=true);
    ![type=="missing"] => issue(type="no-missing", value=true);
    [type=="missing"] => issue(type="has-missing", value=true);
};"""
    claims = [Claim("wanted", "two"), Claim("have", "one"), Claim("have", "two")]
    result = evaluate_policy(parse_policy(text), claims)
    issued = result.issued_json()
    assert issued == {"have": "two", "saw-two": True, "no-missing": True}
    assert result.issued[0].issuer == "AttestationPolicy"
    assert "seen" not in issued  # add() feeds later rules without issuing


def test_issuer_condition_and_repeated_types_become_lists() -> None:
    text = """version=1.0; authorizationrules {
        [type=="t", issuer=="AttestationService"] => permit(); };
    issuancerules { c:[type=="t"] => issue(type="all", value=c.value); };"""
    claims = [Claim("t", 1), Claim("t", 2), Claim("t", 3, "CustomClaim")]
    result = evaluate_policy(parse_policy(text), claims)
    assert result.permitted
    assert result.issued_json() == {"all": [1, 2, 3]}


def test_multiplying_bindings_are_refused_not_searched() -> None:
    """k unconstrained bindings over N claims are N^k combinations: refused, not searched."""
    claims = claims_from_mapping({f"claim-{i}": i for i in range(30)})
    bindings = " && ".join(f"v{i}:[]" for i in range(4))
    text = f'version=1.0; authorizationrules {{ {bindings} && [type=="absent"] => permit(); }};'
    with pytest.raises(PolicyTooComplex, match=r"line 1, column 35: .*claim comparisons"):
        evaluate_policy(parse_policy(text + " issuancerules { };"), claims)


def test_unbound_conditions_only_need_one_match() -> None:
    claims = claims_from_mapping({f"claim-{i}": i for i in range(30)})
    conditions = " && ".join(["[]"] * 16)
    text = f"version=1.0; authorizationrules {{ {conditions} => permit(); }}; issuancerules {{ }};"
    assert evaluate_policy(parse_policy(text), claims).permitted


def test_claims_from_mapping_expands_lists_and_skips_objects() -> None:
    claims = claims_from_mapping({"ids": ["A", "B"], "obj": {"k": 1}, "n": None, "b": False})
    assert claims == [Claim("ids", "A"), Claim("ids", "B"), Claim("b", False)]


# -- default policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "permitted"),
    [
        ("UpToDate", True),
        ("SWHardeningNeeded", True),
        ("ConfigurationNeeded", True),
        ("ConfigurationAndSWHardeningNeeded", True),
        ("OutOfDate", False),
        ("OutOfDateConfigurationNeeded", False),
    ],
)
def test_default_policy_tcb_stance(status: str, permitted: bool) -> None:
    result = evaluate_policy(
        parse_policy(DEFAULT_SGX_POLICY), _enclave(**{"x-confnode-tcb-status": status})
    )
    assert result.permitted is permitted


def test_default_policy_issues_maa_aliases() -> None:
    result = evaluate_policy(parse_policy(DEFAULT_SGX_POLICY), _enclave())
    assert result.issued_json() == {
        "is-debuggable": False,
        "sgx-mrsigner": "abcd",
        "product-id": 3,
        "svn": 2,
        "tee": "sgx",
    }


def test_policy_hash_is_maas_double_base64url_sha256() -> None:
    text = "version=1.0; authorizationrules { => permit(); }; issuancerules { };"
    inner = base64.urlsafe_b64encode(text.encode()).rstrip(b"=")
    expected = base64.urlsafe_b64encode(hashlib.sha256(inner).digest()).rstrip(b"=").decode()
    assert policy_hash(text) == expected
    assert policy_hash(text) != policy_hash(text + " ")
