"""Draft policies cannot amplify a request into a huge response or stall the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from attestation_testlib import ATTEST, ServiceFactory, Sim, token_payload

from confnode.attestation import AttestationService
from confnode.attestation._app import MAX_TRACE_BYTES
from confnode.policy import MAX_PRODUCED, MAX_PRODUCED_BYTES

ClientFor = Callable[[AttestationService], httpx.AsyncClient]
PERMIT = "version=1.0; authorizationrules { => permit(); };"


async def test_claim_copying_rules_are_refused_not_amplified(
    client: httpx.AsyncClient, sim: Sim
) -> None:
    """Each rule re-issues every incoming claim: unbounded, a ~60 kB draft became many MB of
    token and trace. Producing claims counts against the budget."""
    rules = "c:[] => issue(type=c.type, value=c.value);\n" * 500
    draft = f"{PERMIT} issuancerules {{ {rules} }};"
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 400, response.text[:300]
    assert f"more than {MAX_PRODUCED} claims" in response.json()["error"]["message"]
    assert len(response.content) < 4096


async def test_large_issued_values_are_bounded(client: httpx.AsyncClient, sim: Sim) -> None:
    """Short rules that copy a long claim (128 hex digits) under every incoming claim type add
    up past the size budget before the claim count budget."""
    rule = 'c:[type=="x-ms-sgx-report-data"] && d:[] => issue(type=d.type, value=c.value);\n'
    draft = f"{PERMIT} issuancerules {{ {rule * 100} }};"
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 400, response.text[:300]
    assert f"{MAX_PRODUCED_BYTES} characters" in response.json()["error"]["message"]


async def test_trace_is_bounded_and_returned_once(client: httpx.AsyncClient, sim: Sim) -> None:
    rules = f'[type=="{"a" * 100}"] => deny();\n' * 500
    draft = f"version=1.0; authorizationrules {{ {rules} => permit(); }};"
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    trace = body["trace"]
    assert len(trace) < 501
    assert "more rule(s) not shown" in trace[-1]["truncated"]
    assert len(json.dumps(trace)) < 2 * MAX_TRACE_BYTES
    assert "x-confnode-policy-trace" not in token_payload(body["token"])  # in the body only


async def test_trace_entries_clip_huge_rule_text(client: httpx.AsyncClient, sim: Sim) -> None:
    huge = "y" * 50_000
    draft = f'version=1.0; authorizationrules {{ [type=="{huge}"] => deny(); => permit(); }};'
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code == 200, response.text[:300]
    first = response.json()["trace"][0]
    assert len(first["text"]) < 2000 and "more characters" in first["text"]


async def test_denial_message_is_clipped(client: httpx.AsyncClient, sim: Sim) -> None:
    huge = "z" * 50_000
    draft = f'version=1.0; authorizationrules {{ [type!="{huge}"] => deny(); }};'
    response = await client.post(ATTEST, json=sim.body(draftPolicyForAttestation=draft))
    assert response.status_code in (400, 403), response.text[:300]  # a denial, MAA-coded
    assert len(response.json()["error"]["message"]) < 4096


async def test_draft_evaluation_runs_off_the_event_loop(
    make_service: ServiceFactory,
    client_for: ClientFor,
    sim: Sim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/healthz answers while a draft policy is being evaluated."""
    import confnode.attestation._app as app_module

    real = app_module.evaluate_policy
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_evaluate(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)  # on the event loop, this would hold /healthz for 10 s
        finished.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "evaluate_policy", slow_evaluate)
    client = client_for(make_service())
    body = sim.body(draftPolicyForAttestation=f"{PERMIT} issuancerules {{ }};")
    attest = asyncio.create_task(client.post(ATTEST, json=body))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, started.wait, 10)
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert not finished.is_set(), "/healthz waited for the policy evaluation"
    release.set()
    assert (await attest).status_code == 200
