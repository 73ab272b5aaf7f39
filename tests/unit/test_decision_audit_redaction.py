"""Redaction of secret-looking decision-audit metadata keys (CONTRACT.md §4.13); explain's verdict."""

from __future__ import annotations

import pytest

from caracal.domain.decision_audit import REDACTED, SECRET_KEYS, AuditDetailRow, explanation, redacted

CONTRACT_KEYS = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set_cookie",
    "client_secret",
    "private_key",
    "session",
    "session_id",
    "assertion",
]


def test_the_secret_keys_are_exactly_the_contracts() -> None:
    assert set(CONTRACT_KEYS) == SECRET_KEYS


@pytest.mark.parametrize("key", [*CONTRACT_KEYS, "Password", "ACCESS_TOKEN", "Authorization", "Session_Id"])
def test_each_secret_key_is_redacted_whatever_its_case(key: str) -> None:
    assert redacted({key: "s3cr3t", "kept": "v"}) == {key: REDACTED, "kept": "v"}


def test_redaction_reaches_nested_objects_and_lists_and_replaces_whole_values() -> None:
    value = {
        "request": {"headers": {"Cookie": "a=b", "accept": "json"}, "token": {"nested": "gone"}},
        "steps": [{"secret": 1}, [{"api_key": None}], "plain"],
        "count": 3,
    }
    assert redacted(value) == {
        "request": {"headers": {"Cookie": REDACTED, "accept": "json"}, "token": REDACTED},
        "steps": [{"secret": REDACTED}, [{"api_key": REDACTED}], "plain"],
        "count": 3,
    }


@pytest.mark.parametrize("key", ["tokens", "my_password", "sessionid", "passwords", "x-api-key"])
def test_keys_that_only_resemble_a_secret_key_are_kept(key: str) -> None:
    assert redacted({key: "v"}) == {key: "v"}


@pytest.mark.parametrize("value", [None, "text", 3, [1, 2], True])
def test_values_that_are_not_objects_pass_unchanged(value: object) -> None:
    assert redacted(value) == value


def _event(event_id: str, decision: str | None) -> AuditDetailRow:
    return AuditDetailRow(
        id=event_id,
        zone_id="z",
        event_type="authorization.decision",
        request_id="r",
        decision=decision,
        evaluation_status="ok",
        metadata_json={"k": "v"},
        occurred_at="2026-06-03T10:12:13.456Z",
        ingested_at="2026-06-03T10:12:13.456Z",
        policy_set_id=None,
        policy_set_version_id=None,
        manifest_sha=None,
        determining_policies_json=["p1"],
        diagnostics_json={"d": 1},
    )


@pytest.mark.parametrize(
    ("decisions", "final"),
    [
        (["allow", "deny", "allow"], "deny"),
        (["deny", "partial"], "deny"),
        (["allow", "partial"], "partial"),
        (["deny", None], "deny"),
        (["allow", None], "unknown"),
        ([], "unknown"),
    ],
)
def test_final_decision_is_deny_if_any_else_the_last_events_else_unknown(
    decisions: list[str | None], final: str
) -> None:
    events = [_event(f"e{n}", d) for n, d in enumerate(decisions)]
    found = explanation("z", "r", events)
    assert found.final_decision == final
    assert [d.event_id for d in found.denied] == [e.id for e in events if e.decision == "deny"]
