"""TCB Info v2/v3 and Enclave Identity v2 models: real, synthetic and generated documents."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confnode import InvalidCollateral
from confnode.collateral import (
    Collateral,
    SignedQeIdentity,
    SignedTcbInfo,
    TcbStatus,
    parse_enclave_identity,
    parse_tcb_info,
)

INTEL_STATUSES = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
]


def _dt(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_tcb_status_values_are_intels_names() -> None:
    assert [s.value for s in TcbStatus] == [
        *INTEL_STATUSES,
        "TcbLevelNotFound",
        "TDRelaunchAdvised",
        "TDRelaunchAdvisedConfigurationNeeded",
    ]
    assert TcbStatus("SWHardeningNeeded") == "SWHardeningNeeded"


# ------------------------------------------------------------------------- real documents


def test_sgx_v3_tcb_info_matches_raw_json(dcap_qvl_dir: Path) -> None:
    bundle = json.loads((dcap_qvl_dir / "sgx_quote_collateral.json").read_text())
    raw = json.loads(bundle["tcb_info"])
    info = SignedTcbInfo.from_parts(bundle["tcb_info"], bytes(64)).info
    assert (info.id, info.version, info.tcb_type) == ("SGX", 3, 0)
    assert info.fmspc == bytes.fromhex("00A067110000")
    assert info.pce_id == b"\x00\x00"
    assert info.issue_date == _dt(raw["issueDate"]) and info.issue_date.tzinfo is not None
    assert info.next_update == _dt(raw["nextUpdate"])
    assert info.tcb_evaluation_data_number == raw["tcbEvaluationDataNumber"]
    assert len(info.tcb_levels) == len(raw["tcbLevels"])
    for level, expected in zip(info.tcb_levels, raw["tcbLevels"], strict=True):
        assert level.sgx_components == tuple(c["svn"] for c in expected["tcb"]["sgxtcbcomponents"])
        assert level.pcesvn == expected["tcb"]["pcesvn"]
        assert level.tdx_components is None
        assert level.status.value == expected["tcbStatus"]
        assert level.tcb_date == _dt(expected["tcbDate"])
        assert level.advisory_ids == tuple(expected.get("advisoryIDs", ()))
    assert info.tdx_module is None and info.tdx_module_identities == ()


def test_sgx_quote_collateral_contains_the_expected_level(dcap_qvl_dir: Path) -> None:
    bundle = Collateral.from_json((dcap_qvl_dir / "sgx_quote_collateral.json").read_text())
    statuses = {level.status for level in bundle.tcb_info.info.tcb_levels}
    assert TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED in statuses
    matching = [
        level
        for level in bundle.tcb_info.info.tcb_levels
        if level.status is TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
        and level.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    ]
    assert matching


def test_tdx_tcb_info_reports_tdx_parts(dcap_qvl_dir: Path) -> None:
    bundle = json.loads((dcap_qvl_dir / "tdx_quote_collateral.json").read_text())
    raw = json.loads(bundle["tcb_info"])
    info = SignedTcbInfo.from_parts(bundle["tcb_info"], bytes(64)).info
    assert info.id == "TDX"
    assert info.tdx_module is not None
    assert info.tdx_module.mrsigner == bytes(48)
    assert info.tdx_module.attributes_mask == b"\xff" * 8
    assert [m.id for m in info.tdx_module_identities] == [
        m["id"] for m in raw["tdxModuleIdentities"]
    ]
    assert [len(m.tcb_levels) for m in info.tdx_module_identities] == [
        len(m["tcbLevels"]) for m in raw["tdxModuleIdentities"]
    ]
    for level, expected in zip(info.tcb_levels, raw["tcbLevels"], strict=True):
        assert level.tdx_components == tuple(c["svn"] for c in expected["tcb"]["tdxtcbcomponents"])


def test_v2_flat_components_from_fortanix(fortanix_dir: Path) -> None:
    raw_text = json.loads((fortanix_dir / "00906ea10000.tcb").read_text())["raw_tcb_info"]
    raw = json.loads(raw_text)
    info = SignedTcbInfo.from_parts(raw_text, bytes(64)).info
    assert (info.id, info.version) == ("SGX", 2)
    assert info.fmspc == bytes.fromhex("00906EA10000")
    first = info.tcb_levels[0]
    expected = raw["tcbLevels"][0]["tcb"]
    assert first.sgx_components == tuple(expected[f"sgxtcbcomp{i:02d}svn"] for i in range(1, 17))
    assert first.pcesvn == expected["pcesvn"] == 10
    assert first.status is TcbStatus.SW_HARDENING_NEEDED
    assert first.tcb_date == datetime(2019, 12, 11, tzinfo=UTC)


def test_qe_identity_fields(oasis_dir: Path) -> None:
    identity = SignedQeIdentity.from_pcs_body((oasis_dir / "qe_identity_v2.json").read_bytes())
    qe = identity.identity
    assert (qe.id, qe.version, qe.isvprodid) == ("QE", 2, 1)
    assert qe.miscselect == bytes(4) and qe.miscselect_mask == b"\xff" * 4
    assert qe.attributes == bytes.fromhex("11000000000000000000000000000000")
    assert qe.attributes_mask == bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")
    assert qe.mrsigner.hex().upper() == (
        "8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF"
    )
    assert [(lvl.isvsvn, lvl.status) for lvl in qe.tcb_levels[:2]] == [
        (6, TcbStatus.UP_TO_DATE),
        (5, TcbStatus.OUT_OF_DATE),
    ]
    assert qe.tcb_levels[1].advisory_ids == ("INTEL-SA-00477",)
    assert qe.tcb_levels[0].advisory_ids == ()


# ------------------------------------------------------------------------- synthetic rules


def _level_v3(svn: int = 1, status: str = "UpToDate", tdx: bool = False) -> dict[str, Any]:
    tcb: dict[str, Any] = {
        "sgxtcbcomponents": [{"svn": svn, "category": "BIOS"}] + [{"svn": 0}] * 15,
        "pcesvn": 11,
    }
    if tdx:
        tcb["tdxtcbcomponents"] = [{"svn": 2}] * 16
    return {"tcb": tcb, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}


def _tcb_info_v3(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "SGX",
        "version": 3,
        "issueDate": "2025-06-19T10:56:11Z",
        "nextUpdate": "2025-07-19T10:56:11Z",
        "fmspc": "00a067110000",
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tcbLevels": [_level_v3(2), _level_v3(1, "OutOfDate")],
    }
    doc.update(overrides)
    return doc


def _qe_level(isvsvn: int, status: str) -> dict[str, Any]:
    return {"tcb": {"isvsvn": isvsvn}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}


def _identity(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "QE",
        "version": 2,
        "issueDate": "2025-06-19T10:01:18Z",
        "nextUpdate": "2025-07-19T10:01:18Z",
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": "8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF",
        "isvprodid": 1,
        "tcbLevels": [
            {"tcb": {"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
        ],
    }
    doc.update(overrides)
    return doc


def test_miscselect_kept_as_raw_bytes_and_read_little_endian() -> None:
    qe = parse_enclave_identity(_identity(miscselect="01020304", miscselectMask="FFFFFF0F"))
    assert qe.miscselect == b"\x01\x02\x03\x04"
    assert qe.miscselect_le == 0x04030201
    assert qe.miscselect_mask_le == 0x0FFFFFFF


def test_unknown_members_are_ignored_and_lowercase_hex_accepted() -> None:
    info = parse_tcb_info(_tcb_info_v3(futureField={"x": [1]}, fmspc="00a067110000"))
    assert info.fmspc == bytes.fromhex("00A067110000")


def test_datetimes_with_offsets_are_normalised_to_utc() -> None:
    info = parse_tcb_info(_tcb_info_v3(issueDate="2025-06-19T12:56:11+02:00"))
    assert info.issue_date == datetime(2025, 6, 19, 10, 56, 11, tzinfo=UTC)
    assert info.issue_date.utcoffset() == timedelta(0)


TDX_MODULE = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}


def test_tdx_levels_require_tdx_components() -> None:
    with pytest.raises(InvalidCollateral, match=r"tcbLevels\[0\]\.tcb\.tdxtcbcomponents: missing"):
        parse_tcb_info(_tcb_info_v3(id="TDX", tdxModule=TDX_MODULE))
    info = parse_tcb_info(
        _tcb_info_v3(id="TDX", tdxModule=TDX_MODULE, tcbLevels=[_level_v3(tdx=True)])
    )
    assert info.tcb_levels[0].tdx_components == (2,) * 16


def test_tdx_tcb_info_requires_tdx_module() -> None:
    """QVL's TDX TCB Info parser requires tdxModule: without it there is no SEAM identity."""
    with pytest.raises(InvalidCollateral, match=r"tdxModule: missing \(expected in TDX TCB Info"):
        parse_tcb_info(_tcb_info_v3(id="TDX", tcbLevels=[_level_v3(tdx=True)]))


@pytest.mark.parametrize(
    ("overrides", "member"),
    [
        ({"tcbLevels": [_level_v3(tdx=True)]}, r"tcbLevels\[0\]\.tcb\.tdxtcbcomponents"),
        ({"tcbLevels": [_level_v3(2), _level_v3(1, tdx=True)]}, r"tcbLevels\[1\]"),
        ({"tdxModule": TDX_MODULE}, "tdxModule"),
        ({"tdxModuleIdentities": []}, "tdxModuleIdentities"),
    ],
)
def test_sgx_tcb_info_with_tdx_members_is_rejected(overrides: dict[str, Any], member: str) -> None:
    """TDX-only members in SGX TCB Info would let TDX SVNs reach SGX level ordering."""
    with pytest.raises(InvalidCollateral, match=member + r".*TDX-only member in SGX TCB Info"):
        parse_tcb_info(_tcb_info_v3(**overrides))


@pytest.mark.parametrize(
    "status", ["SWHardeningNeeded", "ConfigurationAndSWHardeningNeeded", "TcbLevelNotFound"]
)
def test_qe_identity_levels_take_only_intels_five_statuses(status: str) -> None:
    """QVL's Enclave Identity parser knows UpToDate, ConfigurationNeeded, OutOfDate,
    OutOfDateConfigurationNeeded and Revoked; anything else is a malformed document."""
    doc = _identity(tcbLevels=[_qe_level(8, "UpToDate"), _qe_level(6, status)])
    with pytest.raises(InvalidCollateral, match=r"tcbLevels\[1\]\.tcbStatus: expected one of"):
        parse_enclave_identity(doc)
    for ok in ("ConfigurationNeeded", "OutOfDateConfigurationNeeded", "Revoked"):
        parse_enclave_identity(_identity(tcbLevels=[_qe_level(6, ok)]))


def test_tdx_module_levels_take_only_intels_three_statuses() -> None:
    """QVL ``VALID_MODULE_TCB_STATUSES``: UpToDate, OutOfDate, Revoked."""
    identity = {**TDX_MODULE, "id": "TDX_01", "tcbLevels": [_qe_level(4, "ConfigurationNeeded")]}
    doc = _tcb_info_v3(
        id="TDX",
        tdxModule=TDX_MODULE,
        tdxModuleIdentities=[identity],
        tcbLevels=[_level_v3(tdx=True)],
    )
    with pytest.raises(InvalidCollateral, match=r"tdxModuleIdentities\[0\]\.tcbLevels\[0\]"):
        parse_tcb_info(doc)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 1}, "unsupported version 1; supported: 2, 3"),
        ({"version": 4}, "unsupported version 4"),
        ({"version": "3"}, "unsupported version '3'"),
        ({"id": "TDX", "version": 2}, "id: expected 'SGX' for version 2"),
        ({"id": "SEV"}, "id: expected 'SGX' or 'TDX'"),
        ({"fmspc": "00A06711"}, "fmspc: expected 12 hex digits"),
        ({"pceId": "zzzz"}, "pceId: expected 4 hex digits"),
        ({"issueDate": "2025-06-19T10:56:11"}, "issueDate: expected an ISO-8601"),
        ({"issueDate": "2025-02-30T10:56:11Z"}, "issueDate: expected an ISO-8601"),
        ({"tcbEvaluationDataNumber": True}, "tcbEvaluationDataNumber: expected an integer"),
        ({"tcbLevels": []}, "tcbLevels: expected a non-empty array"),
        ({"tcbLevels": [_level_v3(status="HardeningNeeded")]}, "unrecognised status"),
        ({"tcbLevels": [_level_v3(status="TcbLevelNotFound")]}, "unrecognised status"),
        (
            {"tcbLevels": [_level_v3(svn=256)]},
            r"sgxtcbcomponents\[0\]\.svn: expected an integer 0\.\.255",
        ),
        ({"tcbLevels": [_level_v3(), _level_v3()]}, r"tcbLevels\[1\]: duplicate TCB level"),
        ({"tcbLevels": [{"tcb": {"pcesvn": 1}}]}, "sgxtcbcomponents: missing"),
        ({"tcbLevels": ["x"]}, r"tcbLevels\[0\]: expected an object, found a string"),
    ],
)
def test_tcb_info_rejections_are_precise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_tcb_info(_tcb_info_v3(**overrides))


def test_tcb_info_v3_requires_id_and_component_count() -> None:
    doc = _tcb_info_v3()
    del doc["id"]
    with pytest.raises(InvalidCollateral, match="id: missing"):
        parse_tcb_info(doc)
    doc = _tcb_info_v3()
    doc["tcbLevels"][0]["tcb"]["sgxtcbcomponents"] = [{"svn": 1}] * 15
    with pytest.raises(InvalidCollateral, match="expected 16 components, found '15 components'"):
        parse_tcb_info(doc)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 1}, "Enclave Identity: unsupported version 1; supported: 2"),
        ({"miscselect": "0000"}, "miscselect: expected 8 hex digits"),
        ({"attributesMask": "FF"}, "attributesMask: expected 32 hex digits"),
        ({"mrsigner": ""}, "mrsigner: expected 64 hex digits"),
        ({"isvprodid": 65536}, "isvprodid: expected an integer 0..65535"),
        ({"tcbLevels": [{"tcb": {"isvsvn": -1}}]}, r"tcbLevels\[0\]\.tcb\.isvsvn"),
        (
            {"tcbLevels": [{"tcb": {"isvsvn": 1}, "tcbDate": "2024-03-13T00:00:00Z"}]},
            "tcbStatus: missing",
        ),
    ],
)
def test_enclave_identity_rejections_are_precise(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCollateral, match=message):
        parse_enclave_identity(_identity(**overrides))


def test_non_object_documents_are_rejected() -> None:
    with pytest.raises(
        InvalidCollateral, match="TCB Info: document: expected an object, found an array"
    ):
        parse_tcb_info([])
    with pytest.raises(InvalidCollateral, match="Enclave Identity: document: expected an object"):
        parse_enclave_identity(None)


# ----------------------------------------------------------------------- generated documents

dates = st.datetimes(
    min_value=datetime(2018, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
svns = st.lists(st.integers(0, 255), min_size=16, max_size=16).map(tuple)
statuses = st.sampled_from(INTEL_STATUSES)
advisories = st.lists(st.from_regex(r"INTEL-SA-\d{5}", fullmatch=True), max_size=3).map(tuple)


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


tdx_modules = st.fixed_dictionaries(
    {
        "mrsigner": st.binary(min_size=48, max_size=48).map(bytes.hex),
        "attributes": st.binary(min_size=8, max_size=8).map(bytes.hex),
        "attributesMask": st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper()),
    }
)
module_levels = st.lists(
    st.fixed_dictionaries(
        {
            "tcb": st.fixed_dictionaries({"isvsvn": st.integers(0, 255)}),
            "tcbDate": dates.map(_iso),
            "tcbStatus": st.sampled_from(["UpToDate", "OutOfDate", "Revoked"]),
        },
        optional={"advisoryIDs": advisories.map(list)},
    ),
    min_size=1,
    max_size=3,
)
tdx_module_identities = st.builds(
    lambda module, ident, levels: {**module, "id": ident, "tcbLevels": levels},
    tdx_modules,
    st.from_regex(r"TDX_[0-9A-F]{2}", fullmatch=True),
    module_levels,
)


@st.composite
def tcb_info_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A TCB Info JSON object and the values the parser must report for it."""
    version = draw(st.sampled_from([2, 3]))
    tee = "SGX" if version == 2 else draw(st.sampled_from(["SGX", "TDX"]))
    keys = draw(
        st.lists(
            st.tuples(svns, st.integers(0, 0xFFFF), svns),
            min_size=1,
            max_size=5,
            unique_by=lambda k: k[:2],
        )
    )
    levels = []
    expected_levels = []
    for sgx, pcesvn, tdx in keys:
        date, status, adv = draw(dates), draw(statuses), draw(advisories)
        if version == 2:
            tcb: dict[str, Any] = {f"sgxtcbcomp{i + 1:02d}svn": v for i, v in enumerate(sgx)}
        else:
            tcb = {"sgxtcbcomponents": [{"svn": v, "category": "BIOS"} for v in sgx]}
            if tee == "TDX":
                tcb["tdxtcbcomponents"] = [{"svn": v} for v in tdx]
        tcb["pcesvn"] = pcesvn
        level: dict[str, Any] = {"tcb": tcb, "tcbDate": _iso(date), "tcbStatus": status}
        explicit_empty = draw(st.booleans())
        if adv or explicit_empty:
            level["advisoryIDs"] = list(adv)
        levels.append(level)
        expected_levels.append(
            {
                "sgx": sgx,
                "pcesvn": pcesvn,
                "tdx": tdx if tee == "TDX" else None,
                "date": date,
                "status": status,
                "advisories": adv,
            }
        )
    issue, nxt = draw(dates), draw(dates)
    fmspc, pce_id = draw(st.binary(min_size=6, max_size=6)), draw(st.binary(min_size=2, max_size=2))
    doc: dict[str, Any] = {
        "version": version,
        "issueDate": _iso(issue),
        "nextUpdate": _iso(nxt),
        "fmspc": fmspc.hex().upper() if draw(st.booleans()) else fmspc.hex(),
        "pceId": pce_id.hex(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": draw(st.integers(0, 100)),
        "tcbLevels": levels,
    }
    if version == 3:
        doc["id"] = tee
    module = identities = None
    if tee == "TDX":
        module = draw(tdx_modules)
        doc["tdxModule"] = module
        if draw(st.booleans()):
            identities = draw(st.lists(tdx_module_identities, max_size=3))
            doc["tdxModuleIdentities"] = identities
    expected = {
        "id": tee,
        "version": version,
        "issue": issue,
        "next": nxt,
        "fmspc": fmspc,
        "pce_id": pce_id,
        "eval": doc["tcbEvaluationDataNumber"],
        "levels": expected_levels,
        "module": module,
        "identities": identities or [],
    }
    keys_order = draw(st.permutations(list(doc)))
    return {k: doc[k] for k in keys_order}, expected


@settings(max_examples=80, deadline=None)
@given(generated=tcb_info_documents(), indent=st.sampled_from([None, 1]))
def test_generated_tcb_info_documents_parse_and_round_trip(
    generated: tuple[dict[str, Any], dict[str, Any]], indent: int | None, dcap_qvl_dir: Path
) -> None:
    doc, expected = generated
    body = json.dumps(doc, indent=indent)
    signature = bytes(range(64))
    signed = SignedTcbInfo.from_pcs_body(
        '{"tcbInfo": ' + body + ', "signature": "' + signature.hex() + '"}'
    )
    assert signed.body == body.encode()
    assert signed.signature == signature
    info = signed.info
    assert (info.id, info.version) == (expected["id"], expected["version"])
    assert (info.issue_date, info.next_update) == (expected["issue"], expected["next"])
    assert (info.fmspc, info.pce_id) == (expected["fmspc"], expected["pce_id"])
    assert info.tcb_evaluation_data_number == expected["eval"]
    got = [
        {
            "sgx": lvl.sgx_components,
            "pcesvn": lvl.pcesvn,
            "tdx": lvl.tdx_components,
            "date": lvl.tcb_date,
            "status": lvl.status.value,
            "advisories": lvl.advisory_ids,
        }
        for lvl in info.tcb_levels
    ]
    assert got == expected["levels"]
    module = expected["module"]
    if module is None:
        assert info.tdx_module is None
    else:
        assert info.tdx_module is not None
        assert info.tdx_module.mrsigner.hex() == module["mrsigner"]
        assert info.tdx_module.attributes.hex() == module["attributes"]
        assert info.tdx_module.attributes_mask.hex().upper() == module["attributesMask"]
    assert [
        (
            m.id,
            m.mrsigner.hex(),
            [(lvl.isvsvn, lvl.status.value, lvl.advisory_ids) for lvl in m.tcb_levels],
        )
        for m in info.tdx_module_identities
    ] == [
        (
            m["id"],
            m["mrsigner"],
            [
                (lvl["tcb"]["isvsvn"], lvl["tcbStatus"], tuple(lvl.get("advisoryIDs", ())))
                for lvl in m["tcbLevels"]
            ],
        )
        for m in expected["identities"]
    ]

    base = Collateral.from_json(_sgx_bundle_text(dcap_qvl_dir))
    bundle = Collateral.from_parts(
        tcb_info=signed,
        tcb_info_issuer_chain=base.tcb_info_issuer_chain,
        qe_identity=base.qe_identity,
        qe_identity_issuer_chain=base.qe_identity_issuer_chain,
    )
    again = Collateral.from_json(bundle.to_json())
    assert again == bundle
    assert again.tcb_info.body == body.encode()


_BUNDLE_CACHE: dict[Path, str] = {}


def _sgx_bundle_text(directory: Path) -> str:
    if directory not in _BUNDLE_CACHE:
        _BUNDLE_CACHE[directory] = (directory / "sgx_quote_collateral.json").read_text()
    return _BUNDLE_CACHE[directory]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 70000) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None)
@given(generated=tcb_info_documents(), data=st.data())
def test_mutated_documents_parse_or_raise_invalid_collateral(
    generated: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    doc = copy.deepcopy(generated[0])
    identity = _identity()
    target = data.draw(st.sampled_from([doc, identity]))
    path = data.draw(st.sampled_from(_paths(target)))
    parent = target
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    parse = parse_tcb_info if target is doc else parse_enclave_identity
    try:
        parse(target)
    except InvalidCollateral:
        pass
