"""Staff protection call flows on a fake clock: closed situations, the recording notice before
alerting, ringback, on-demand recording and the long-call key (issue #5).

The SIP side is the real stack and B2BUA (scripted peers from ``test_b2bua_flows``); the media
engine is a recorder of the commands call control sends it, and its events (``PlayDone``,
``DtmfEvent``) are injected the way the engine reports them. The same features run against the
real engine and SIPp in ``test_e2e_protection.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from flows import (
    A_CSEQ,
    B_CONTACT,
    SDP_A,
    SDP_B,
    A,
    B,
    Harness,
    a_request,
    b_request,
    reply,
)

from b2bua.call.b2bua import Route
from b2bua.call.protection import RecordingStarted, StaffProtection
from b2bua.config import Department
from media.engine import DtmfEvent, PlayDone

PROMPT_SECONDS = 2.0


@dataclass
class FakeEngine:
    """The engine's command interface, writing down every command."""

    commands: list[tuple] = field(default_factory=list)
    port: int = 40000

    def allocate(self, session: str, leg: str) -> tuple[str, int]:
        self.port += 2
        return "127.0.0.1", self.port

    def update(self, session: str, leg: str, **kw: Any) -> None:
        self.commands.append(("update", leg, kw))

    def delete(self, session: str) -> dict:
        self.commands.append(("delete",))
        return {}

    def play(self, session: str, leg: str, samples: Any, *, prompt: str = "", loop: bool = False,
             mix: bool = False) -> None:
        self.commands.append(("play", leg, prompt, loop, mix))

    def stop_play(self, session: str, leg: str) -> None:
        self.commands.append(("stop_play", leg))

    def record(self, session: str, path: str) -> None:
        self.commands.append(("record", path))

    def stop_record(self, session: str) -> None:
        self.commands.append(("stop_record",))

    def take(self, kind: str | None = None) -> list[tuple]:
        got = [c for c in self.commands if kind is None or c[0] == kind]
        self.commands = [c for c in self.commands if not (kind is None or c[0] == kind)]
        return got


class FakePrompts:
    def get(self, name: str) -> np.ndarray:
        if name == "missing":
            raise ValueError("no such prompt")
        return np.zeros(int(8000 * PROMPT_SECONDS), np.int16)

    def ringback(self, name: str) -> np.ndarray:
        return self.get(name)

    def beep(self) -> np.ndarray:
        return np.zeros(1600, np.int16)

    def refused(self) -> np.ndarray:
        return np.zeros(2400, np.int16)


@dataclass
class FakeRecordings:
    started_rows: list[RecordingStarted] = field(default_factory=list)
    stops: list[tuple[str, float]] = field(default_factory=list)

    def path_for(self, call_id: str, segment: int) -> str:
        return f"/rec/{call_id}-{segment}.wav"

    def started(self, rec: RecordingStarted) -> None:
        self.started_rows.append(rec)

    def stopped(self, path: str, when: float) -> None:
        self.stops.append((path, when))


def department(name: str = "교통정책과", **policy: Any) -> Department:
    return Department.model_validate({"name": name, "display_name": f"서울시 {name}", "numbers": ["02-2133-2200"],
                                      "trunk": "city-pbx", "extension": "2200", "policy": policy})


class World:
    """A B2BUA with staff protection for one department whose situation a test sets."""

    def __init__(self, dept: Department, situation: str = "open", fallback: Department | None = None):
        self.h = Harness()
        self.engine = FakeEngine()
        self.h.b2bua.engine = self.engine  # type: ignore[assignment]
        self.h.b2bua.config.session_timer.enabled = False  # the scripted peers answer no refreshes
        self.depts = {d.name: d for d in (dept, fallback) if d is not None}
        self.dept = dept
        self.situation = situation
        self.recordings = FakeRecordings()
        self.wall = 1_800_000_000.0
        self.h.b2bua.router = self.route
        self.protection = StaffProtection(
            self.h.b2bua, departments=self.depts.get, situation=lambda d: self.situation if d is dept else "open",
            prompts=FakePrompts(), recordings=self.recordings, fallback=self.fallback, wall=lambda: self.wall)

    def route(self, req: Any, peer: Any) -> Route:
        return Route(["sip:2200@127.0.0.1:5080"], name=f"dept:{self.dept.name}", department=self.dept.name,
                     direction="inbound")

    def fallback(self, target: str) -> Route | None:
        if target in self.depts:
            return Route([f"sip:{target}@127.0.0.1:5080"], name=f"dept:{target}", department=target,
                         direction="inbound")
        return None

    # driving ------------------------------------------------------------------------------------
    def invite(self) -> None:
        self.h.from_a(a_request(self.h, "INVITE", cseq=A_CSEQ, branch=self.h.branch("a-inv"), body=SDP_A))

    def event(self, ev: object) -> None:
        self.h.b2bua.on_media_event(ev)
        self.h._collect()

    def play_done(self, leg: str = "a", prompt: str = "") -> None:
        self.event(PlayDone(self.call_id, leg, prompt))

    def key(self, leg: str, digits: str, gap_ms: float = 200) -> None:
        for d in digits:
            self.event(DtmfEvent(self.call_id, leg, d, 100, "rfc4733"))
            self.h.advance(gap_ms)

    @property
    def call_id(self) -> str:
        return next(iter(self.h.b2bua.calls))

    def a_statuses(self) -> list[int]:
        return [s.status for s in self.h.take(A) if s.status is not None]

    def answer(self, b_invite: Any) -> Any:
        self.h.from_b(reply(b_invite, 180, "Ringing", to_tag="bt", contact=B_CONTACT))
        self.h.from_b(reply(b_invite, 200, "OK", to_tag="bt", contact=B_CONTACT, body=SDP_B))
        got = self.h.take(A)
        ok = next(s for s in got if s.status == 200)
        self.h.from_a(a_request(self.h, "ACK", cseq=A_CSEQ, to_tag=ok.msg.to_tag))
        assert [s.method for s in self.h.take(B)] == ["ACK"]
        self.a_tag = ok.msg.to_tag
        return ok

    def talking(self) -> Any:
        """An open department without notice: a call answered, commands cleared."""
        self.invite()
        b_inv = next(s for s in self.h.take(B) if s.method == "INVITE")
        self.answer(b_inv)
        self.engine.take()
        return b_inv


def test_closed_situation_plays_its_prompt_as_early_media_then_releases() -> None:
    w = World(department(ringback={"default": "city_notice", "after_hours": "after_hours"}), "after_hours")
    w.invite()
    got = w.h.take(A)
    assert [s.status for s in got] == [100, 183]
    early = got[1].msg
    assert early.get("content-type") == "application/sdp" and b"m=audio" in early.body
    assert b"192.0.2.1" not in early.body  # our address, not the caller's
    assert w.h.take(B) == []  # the staff phone is never alerted
    assert ("play", "a", "after_hours", False, False) in w.engine.take("play")
    w.h.advance(1000)
    assert w.h.take(A) == [] and w.h.b2bua.calls  # the prompt is still playing
    w.play_done("a", "after_hours")
    final = w.h.take(A)
    assert [s.status for s in final] == [480]
    assert not w.h.b2bua.calls
    rec = w.h.records[-1]
    assert rec.status == 480 and rec.cause == "closed_after_hours" and rec.ended_by == "b2bua"


def test_closed_situation_without_prompt_releases_at_once_with_the_configured_status() -> None:
    w = World(department(ringback={"default": "city_notice"}, closed={"holiday": {"release_status": 603}}), "holiday")
    w.invite()
    assert w.a_statuses() == [100, 603]
    assert w.engine.take("play") == [] and w.h.take(B) == []


def test_closed_situation_falls_back_to_another_department_after_the_prompt() -> None:
    other = department("총무과", recording="off", ringback={"default": "city_notice"})
    w = World(department(ringback={"moved": "office_moved"}, closed={"moved": {"release_status": 480,
                                                                             "fallback": "총무과"}}),
              "moved", fallback=other)
    w.invite()
    assert w.a_statuses() == [100, 183]
    w.play_done("a", "office_moved")
    invites = [s for s in w.h.take(B) if s.method == "INVITE"]
    assert len(invites) == 1 and invites[0].msg.uri.startswith("sip:총무과@")
    # the fallback department's ringback plays while its phone rings
    assert ("play", "a", "city_notice", True, False) in w.engine.take("play")
    w.answer(invites[0])
    assert w.h.records == [] and w.protection.stats["fallbacks"] == 1


def test_full_recording_plays_the_notice_before_alerting_and_records_from_the_notice() -> None:
    w = World(department(recording="full", ringback={"default": "city_notice"}))
    w.invite()
    got = w.h.take(A)
    assert [s.status for s in got] == [100, 183]
    early_sdp = got[1].msg.body
    assert w.h.take(B) == []  # not alerted during the notice
    assert w.engine.take("play") == [("play", "a", "recording_notice", False, False)]
    records = w.engine.take("record")
    assert len(records) == 1
    row = w.recordings.started_rows[0]
    assert row.reason == "full" and row.direction == "inbound" and row.department == "교통정책과"
    assert row.path == records[0][1]
    w.play_done("a", "recording_notice")
    b_inv = [s for s in w.h.take(B) if s.method == "INVITE"]
    assert len(b_inv) == 1
    assert ("play", "a", "city_notice", True, False) in w.engine.take("play")  # looped ringback
    ok = w.answer(b_inv[0])
    assert ("stop_play", "a") in w.engine.take("stop_play")
    assert ok.msg.body == early_sdp  # the answer in the 200 is the one of the 183 (RFC 3261 §13.2.1)
    assert w.engine.take("record") == []  # already recording: not restarted at the answer
    w.h.from_a(a_request(w.h, "BYE", cseq=A_CSEQ + 1, to_tag=w.a_tag))
    bye = next(s for s in w.h.take(B) if s.method == "BYE")
    w.h.from_b(reply(bye, 200, "OK"))
    assert w.recordings.stops and w.recordings.stops[0][0] == row.path


def test_notice_that_never_reports_done_does_not_hold_the_call() -> None:
    w = World(department(recording="full"))
    w.invite()
    w.h.take(A)
    w.h.advance(PROMPT_SECONDS * 1000 + 1000)
    assert w.h.take(B) == []
    w.h.advance(1001)  # prompt length + 2 s grace (before Timer A retransmits)
    assert [s.method for s in w.h.take(B)] == ["INVITE"]


def test_cancel_during_the_notice_ends_the_call_and_its_recording() -> None:
    w = World(department(recording="full"))
    branch = w.h.branch("a-inv")
    w.h.from_a(a_request(w.h, "INVITE", cseq=A_CSEQ, branch=branch, body=SDP_A))
    w.h.take(A)
    w.h.from_a(a_request(w.h, "CANCEL", cseq=A_CSEQ, branch=branch))
    assert sorted(w.a_statuses()) == [200, 487]
    assert not w.h.b2bua.calls and w.h.take(B) == []
    assert len(w.recordings.stops) == 1


def test_on_demand_recording_key_from_staff_starts_and_stops_with_a_beep() -> None:
    w = World(department(recording="on_demand", recording_key="*1"))
    w.talking()
    w.key("a", "*1")  # the caller's keypad does nothing
    assert w.engine.take() == []
    w.wall += 10
    w.key("b", "*1")
    cmds = w.engine.take()
    assert [c[0] for c in cmds] == ["record", "play"]
    assert cmds[1][1:] == ("b", "beep", False, True)  # the beep only to staff, mixed
    row = w.recordings.started_rows[-1]
    assert row.reason == "on_demand" and row.start == w.wall
    w.wall += 30
    w.key("b", "*1")
    cmds = w.engine.take()
    assert [c[0] for c in cmds] == ["stop_record", "play"]
    assert w.recordings.stops == [(row.path, w.wall)]
    w.key("b", "*1")  # a second segment, a second file
    assert [c[0] for c in w.engine.take()] == ["record", "play"]
    assert w.recordings.started_rows[-1].path.endswith("-2.wav")


def test_staff_keys_are_never_relayed_to_the_caller() -> None:
    w = World(department())
    w.invite()
    b_inv = next(s for s in w.h.take(B) if s.method == "INVITE")
    w.answer(b_inv)
    updates = w.engine.take("update")
    staff = [kw for kind, leg, kw in updates if leg == "b"]
    caller = [kw for kind, leg, kw in updates if leg == "a"]
    assert staff and all(kw["relay_dtmf"] is False for kw in staff)
    assert caller and all(kw["relay_dtmf"] is True for kw in caller)
    # and only the staff member's audio is searched for key tones (a phone without telephone-event)
    assert all(kw["inband_keys"] is True for kw in staff)
    assert all(kw["inband_keys"] is False for kw in caller)


def test_nobody_s_key_tones_are_looked_for_on_a_call_without_staff_protection() -> None:
    w = World(department())
    w.h.b2bua.router = lambda req, peer: Route(["sip:2200@127.0.0.1:5080"], name="plain")  # no department
    w.invite()
    b_inv = next(s for s in w.h.take(B) if s.method == "INVITE")
    w.answer(b_inv)
    updates = w.engine.take("update")
    assert {leg for _, leg, _ in updates} == {"a", "b"}
    assert all(kw["inband_keys"] is False and kw["relay_dtmf"] is True for _, _, kw in updates)


def test_long_call_key_before_the_limit_only_beeps_to_staff() -> None:
    w = World(department(long_call={"limit_min": 20, "key": "*9"}))
    w.talking()
    w.h.advance(19 * 60_000)
    w.key("b", "*9")
    assert w.engine.take() == [("play", "b", "refused", False, True)]
    assert w.h.take(A) == [] and w.h.take(B) == []
    assert w.h.b2bua.calls


def test_long_call_key_after_the_limit_announces_to_both_then_byes_with_a_reason() -> None:
    w = World(department(long_call={"limit_min": 20, "key": "*9"}))
    w.talking()
    w.h.advance(20 * 60_000)
    w.key("a", "*9")  # the caller's keypad never triggers it
    assert w.engine.take() == []
    w.key("b", "*9")
    plays = w.engine.take("play")
    assert sorted(plays) == [("play", "a", "long_call_end", False, True), ("play", "b", "long_call_end", False, True)]
    assert w.h.take(A) == [] and w.h.take(B) == []  # nobody is hung up on before the announcement
    w.play_done("a", "long_call_end")
    bye_a, bye_b = w.h.take(A), w.h.take(B)
    assert [s.method for s in bye_a] == ["BYE"] and [s.method for s in bye_b] == ["BYE"]
    for bye in (bye_a[0], bye_b[0]):
        assert bye.msg.get("reason") == 'Q.850;cause=16;text="Long call terminated by staff"'
    w.h.from_a(reply(bye_a[0], 200, "OK"))
    w.h.from_b(reply(bye_b[0], 200, "OK"))
    rec = w.h.records[-1]
    assert rec.cause == "long_call_terminated" and rec.ended_by == "b2bua"


def test_long_call_bye_goes_out_even_without_play_done() -> None:
    w = World(department(long_call={"limit_min": 1, "key": "#"}))
    w.talking()
    w.h.advance(61_000)
    w.key("b", "#")
    w.h.advance(PROMPT_SECONDS * 1000 + 2100)
    assert [s.method for s in w.h.take(B)] == ["BYE"]


def test_keys_too_far_apart_are_not_a_sequence() -> None:
    w = World(department(long_call={"limit_min": 1, "key": "*9"}))
    w.talking()
    w.h.advance(120_000)
    w.key("b", "*", gap_ms=4000)
    w.key("b", "9")
    assert w.engine.take("play") == []


def test_hard_maximum_duration_ends_any_call_with_the_announcement() -> None:
    w = World(department(long_call={"limit_min": 20, "hard_max_min": 30}))
    w.talking()
    w.h.advance(30 * 60_000 - 1000)
    assert w.engine.take("play") == []
    w.h.advance(1000)
    assert len(w.engine.take("play")) == 2
    w.h.advance(PROMPT_SECONDS * 1000 + 2100)
    bye = w.h.take(B)
    assert [s.method for s in bye] == ["BYE"] and "Maximum call duration" in bye[0].msg.get("reason")


@pytest.mark.parametrize("situation,prompt", [("open", "city_notice"), ("lunch", "lunch_break"),
                                              ("construction", "construction")])
def test_ringback_prompt_follows_the_situation(situation: str, prompt: str) -> None:
    w = World(department(ringback={"default": "city_notice", "lunch": "lunch_break",
                                   "construction": "construction"}), situation)
    w.invite()
    assert w.a_statuses() == [100, 183]
    assert [s.method for s in w.h.take(B)] == ["INVITE"]  # ringing at once (no notice)
    assert w.engine.take("play") == [("play", "a", prompt, True, False)]


def test_calls_without_a_department_are_left_alone() -> None:
    w = World(department())
    w.h.b2bua.router = lambda req, peer: Route(["sip:127.0.0.1:5080"], name="lab")
    w.invite()
    assert w.a_statuses() == [100]
    assert w.engine.take("play") == []


def test_unknown_number_announcement_then_the_configured_status() -> None:
    w = World(department())
    w.h.b2bua.router = lambda req, peer: Route([], name="unknown_number", direction="inbound",
                                               announcement="unknown_number_prompt", release_status=404)
    w.invite()
    assert w.a_statuses() == [100, 183]
    assert w.engine.take("play") == [("play", "a", "unknown_number_prompt", False, False)]
    w.play_done("a", "unknown_number_prompt")
    assert w.a_statuses() == [404]
    assert w.h.records[-1].cause == "unknown_number" and w.h.take(B) == []


def test_the_2xx_carries_our_early_answer_even_when_the_staff_phone_sends_none() -> None:
    """The staff phone put its SDP in a 183 only; our own answer to the caller went in an unreliable
    183, so the caller's 200 must repeat it."""
    w = World(department(ringback={"default": "city_notice"}))
    w.invite()
    early = [s for s in w.h.take(A) if s.status == 183][0].msg.body
    b_inv = next(s for s in w.h.take(B) if s.method == "INVITE")
    w.h.from_b(reply(b_inv, 183, "Session Progress", to_tag="bt", contact=B_CONTACT, body=SDP_B))
    w.h.from_b(reply(b_inv, 200, "OK", to_tag="bt", contact=B_CONTACT))
    ok = next(s for s in w.h.take(A) if s.status == 200)
    assert ok.msg.body == early


def test_staff_keys_by_sip_info_count_and_never_reach_the_caller() -> None:
    w = World(department(recording="on_demand", recording_key="*1"))
    b_inv = w.talking()
    for n, digit in enumerate("*1"):
        body = f"Signal={digit}\r\nDuration=160\r\n".encode()
        w.h.from_b(b_request(w.h, b_inv, "INFO", cseq=10 + n, to_tag="bt", body=body, ctype="application/dtmf-relay"))
        assert [s.status for s in w.h.take(B)] == [200]  # answered by us
    assert w.h.take(A) == []  # the caller got no INFO
    assert [c[0] for c in w.engine.take()] == ["record", "play"]  # and the key worked
    # the caller's own INFO is relayed as before
    w.h.from_a(a_request(w.h, "INFO", cseq=A_CSEQ + 1, to_tag=w.a_tag, body=b"Signal=5\r\nDuration=160\r\n",
                         ctype="application/dtmf-relay"))
    assert [s.method for s in w.h.take(B)] == ["INFO"]
