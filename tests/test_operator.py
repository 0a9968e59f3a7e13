"""Live call control (b2bua/call/operator.py) on the fake-clock harness: the list operators see, an
operator's hangup (with and without an announcement, answered or ringing), the drain before a restart."""

from __future__ import annotations

from flows import A, B, a_request, ack_non2xx, reply
from test_protection import FakePrompts, World, department

from b2bua.call.ending import GRACE_S
from b2bua.call.features import FeatureChain
from b2bua.call.operator import OPERATOR_REASON, SHUTDOWN_REASON, OperatorControl, mask


def _world(**kw: object) -> tuple[World, OperatorControl]:
    w = World(department(recording="off"))
    op = OperatorControl(w.h.b2bua, prompts=FakePrompts(), recording=w.protection.is_recording, **kw)  # type: ignore
    w.h.b2bua.features = FeatureChain(w.protection, op)
    return w, op


def _bye_both(w: World) -> tuple[object, object]:
    (bye_a,), (bye_b,) = w.h.take(A), w.h.take(B)
    assert bye_a.method == "BYE" and bye_b.method == "BYE"
    w.h.from_a(reply(bye_a, 200, "OK"))
    w.h.from_b(reply(bye_b, 200, "OK"))
    return bye_a, bye_b


def test_the_list_shows_each_call_and_masks_the_citizens_number() -> None:
    w, op = _world()
    w.talking()
    w.h.advance(65_000)
    caller = "01012345678"  # (the INVITE's From, as the citizen's carrier would have sent it)
    w.h.b2bua.calls[w.call_id].a_invite.request.set("from", f"<sip:{caller}@192.0.2.1>;tag=x")
    (info,) = op.calls()
    assert info.id == w.call_id and info.a_call_id == w.h.b2bua.calls[w.call_id].a_invite.request.call_id
    assert info.b_call_id and info.b_call_id != info.a_call_id
    assert (info.department, info.direction, info.state) == ("교통정책과", "inbound", "confirmed")
    assert info.duration_s == 65.0 and info.codec == {"a": "PCMU", "b": "PCMU"} and info.recording is False
    assert info.callee == "bob"  # the number the citizen dialled: shown
    assert info.caller == "*******5678"
    assert op.calls()[0].caller == "*******5678"  # the second listing from what the first one worked out
    op.set_show_numbers(True)  # a reload: at once
    assert op.calls()[0].caller == caller
    assert info.as_dict()["id"] == w.call_id
    shown = OperatorControl(w.h.b2bua, prompts=FakePrompts(), show_numbers=True).calls()[0]  # type: ignore
    assert shown.caller == caller


def test_mask_keeps_the_last_four_digits() -> None:
    assert mask("010-1234-5678") == "*******5678" and mask("2200") == "2200" and mask("anonymous") == ""


def test_an_operator_hangup_byes_both_legs_with_a_reason_and_its_own_cause() -> None:
    w, op = _world()
    w.talking()
    assert op.hangup("no-such-call") is False
    assert op.hangup(w.call_id) is True
    w.h.settle()
    bye_a, bye_b = _bye_both(w)
    assert bye_a.msg.get("reason") == OPERATOR_REASON == bye_b.msg.get("reason")  # type: ignore[attr-defined]
    rec = w.h.records[-1]
    assert rec.cause == "operator_hangup" and rec.ended_by == "b2bua" and not w.h.b2bua.calls


def test_an_announcement_plays_to_both_before_the_bye() -> None:
    w, op = _world()
    w.talking()
    op.hangup(w.call_id, announcement="long_call_end")
    w.h.settle()
    plays = w.engine.take("play")
    assert sorted(p[1] for p in plays) == ["a", "b"] and {p[2] for p in plays} == {"long_call_end"}
    assert w.h.take(A) == [] and w.h.take(B) == []  # not before it played
    w.play_done("a", "long_call_end")
    _bye_both(w)
    assert w.h.records[-1].cause == "operator_hangup"


def test_an_announcement_the_engine_never_finishes_still_ends_the_call() -> None:
    w, op = _world()
    w.talking()
    op.hangup(w.call_id, announcement="long_call_end")
    seconds = len(FakePrompts().get("long_call_end")) / 8000 + GRACE_S
    w.h.advance(seconds * 1000 - 10)
    assert w.h.take(A) == []
    w.h.advance(20)  # its length and the grace
    _bye_both(w)


def test_a_ringing_call_is_refused_to_the_caller_and_cancelled_to_the_callee() -> None:
    w, op = _world()
    w.invite()
    b_inv = next(s for s in w.h.take(B) if s.method == "INVITE")
    w.h.from_b(reply(b_inv, 180, "Ringing", to_tag="bt"))
    w.h.take(A)
    assert [i.state for i in op.calls()] == ["early"]
    op.hangup(w.call_id)
    w.h.settle()
    assert [s.status for s in w.h.take(A)] == [480]
    assert [s.method for s in w.h.take(B)] == ["CANCEL"]


def test_draining_refuses_new_calls_and_options_then_ends_the_calls_left() -> None:
    w, op = _world()
    w.talking()
    call_id = w.call_id
    op.drain(30.0)
    w.h.from_a(a_request(w.h, "OPTIONS", cseq=1, branch=w.h.branch("opt"), call_id="opt-1"))
    (opt,) = w.h.take(A)
    assert opt.status == 503 and opt.msg.get("retry-after") == "5"
    branch = w.h.branch("new")
    w.h.from_a(a_request(w.h, "INVITE", cseq=1, branch=branch, call_id="new-1"))
    refused = [s for s in w.h.take(A) if s.status != 100]
    assert [(s.status, s.msg.get("retry-after")) for s in refused] == [(503, "5")]
    w.h.from_a(ack_non2xx(branch, refused[0]))
    assert list(w.h.b2bua.calls) == [call_id]  # the call in progress goes on
    w.h.advance(29_000)
    assert w.h.take(A) == [] and w.h.take(B) == []
    w.h.advance(1_000)  # the drain's time is up
    bye_a, _ = _bye_both(w)
    assert bye_a.msg.get("reason") == SHUTDOWN_REASON  # type: ignore[attr-defined]
    assert w.h.records[-1].cause == "shutdown" and not w.h.b2bua.calls


def test_calls_whose_bye_is_never_answered_are_forgotten_with_their_cdr() -> None:
    w, op = _world()
    w.talking()
    assert op.end_all() == 1
    w.h.settle()
    assert [s.method for s in w.h.take(A)] == ["BYE"]  # nobody answers it
    assert w.h.b2bua.calls and not w.h.records[1:]
    assert op.finish_all() == 1
    assert not w.h.b2bua.calls and w.h.records[-1].cause == "shutdown"
