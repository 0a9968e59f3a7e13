"""The call state machine (b2bua/call/state.py): the table, its use, and per-call logging."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from flows import A_CALL_ID, Harness, establish, hang_up_from_a

from b2bua.call.model import Call
from b2bua.call.state import (
    CLOSING,
    DONE,
    LIVE,
    RINGING,
    TRANSITIONS,
    UNANSWERED,
    CallState,
    CallStateError,
    check_transition,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_state_is_reachable_from_routing_and_ends() -> None:
    seen, todo = {CallState.ROUTING}, [CallState.ROUTING]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(CallState)
    assert TRANSITIONS[CallState.ENDED] == frozenset()
    assert all(CallState.ENDED in TRANSITIONS[s] for s in CallState if s is not CallState.ENDED)


@pytest.mark.parametrize(("old", "new"), [
    (CallState.CONFIRMED, CallState.CANCELLING),  # an answered call is never cancelled (§9.1)
    (CallState.ANSWERED, CallState.EARLY),
    (CallState.TERMINATING, CallState.CONFIRMED),
    (CallState.ENDED, CallState.ROUTING),
    (CallState.CANCELLING, CallState.ANSWERED),
])
def test_forbidden_moves_raise(old: CallState, new: CallState) -> None:
    with pytest.raises(CallStateError, match=f"{old.value} -> {new.value}"):
        check_transition(old, new)


def test_groups_are_made_of_the_table_s_states() -> None:
    assert RINGING < UNANSWERED and not (UNANSWERED & LIVE) and not (LIVE & DONE) and DONE < CLOSING


def test_only_call_enter_changes_the_state() -> None:
    """No module of call control assigns ``.state`` itself: every change goes through the table."""
    offenders = []
    for f in sorted((ROOT / "b2bua" / "call").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(el, ast.Attribute) and el.attr == "state" and \
                            not (f.name == "model.py" and isinstance(el.value, ast.Name) and el.value.id == "self"):
                        offenders.append(f"{f.name}:{node.lineno}")
    assert offenders == []


def test_a_call_walks_the_table(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[CallState, CallState]] = []
    enter = Call.enter

    def spy(self: Call, new: CallState) -> None:
        moves.append((self.state, new))
        enter(self, new)

    monkeypatch.setattr(Call, "enter", spy)
    s = establish(h)
    hang_up_from_a(h, s)
    assert moves == [(CallState.ROUTING, CallState.PROCEEDING), (CallState.PROCEEDING, CallState.EARLY),
                     (CallState.EARLY, CallState.ANSWERED), (CallState.ANSWERED, CallState.CONFIRMED),
                     (CallState.CONFIRMED, CallState.TERMINATING), (CallState.TERMINATING, CallState.ENDED)]
    assert not h.b2bua.calls


def test_every_log_line_of_a_call_names_its_sip_call_id(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="b2bua.call")
    s = establish(h)
    hang_up_from_a(h, s)
    call_lines = [r for r in caplog.records if r.name == "b2bua.call"]
    assert len(call_lines) >= 2  # start and end at least
    for r in call_lines:
        assert getattr(r, "sip_call_id", None) == A_CALL_ID
        assert A_CALL_ID in r.getMessage()
    assert any("start" in r.getMessage() for r in call_lines) and any(" end " in r.getMessage() for r in call_lines)


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_json_logs_carry_the_call_and_its_sip_call_id(h: Harness) -> None:
    import io
    import json

    from b2bua.cli import _JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(_JsonFormatter())
    logger = logging.getLogger("b2bua.call")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        hang_up_from_a(h, establish(h))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) >= 2
    assert {x["sip_call_id"] for x in lines} == {A_CALL_ID}
    assert len({x["call"] for x in lines}) == 1 and lines[0]["call"].startswith("c")


def test_a_percent_sign_in_a_peers_call_id_is_logged_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """The call's logger writes the SIP Call-ID before the message: a '%' in it is not a format directive
    (once: "--- Logging error --- unsupported format character", and the line lost; found by fuzzing)."""
    import logging

    from b2bua.call.model import CallLog

    log = CallLog(logging.getLogger("b2bua.call.test"), {"call": "c1", "sip_call_id": "ab%dcd%s@x"})
    with caplog.at_level(logging.INFO, logger="b2bua.call.test"):
        log.info("start from=%s to=%s", "sip:a@x", "sip:b@y")
    (record,) = caplog.records
    assert record.getMessage() == "call c1 [ab%dcd%s@x] start from=sip:a@x to=sip:b@y"
