"""RFC 4028 session timers and RFC 3262 reliable provisionals, per leg, on a fake clock."""

from __future__ import annotations

import pytest
from flows import (
    A_CSEQ,
    B_CONTACT,
    B_TAG,
    SDP_A,
    SDP_B,
    A,
    B,
    Harness,
    Setup,
    a_request,
    reply,
)

from b2bua.call.b2bua import B2BUA, B2BUAConfig
from b2bua.call.session import SessionTimerConfig


class StHarness(Harness):
    """The flow harness with a chosen session-timer configuration."""

    def __init__(self, st: SessionTimerConfig):
        self._st = st
        super().__init__()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.b2bua = B2BUA(self.stack, self.route, B2BUAConfig(session_timer=self._st), clock=self.clock)
        self.b2bua.on_call_end = self.records.append


def _call(h: Harness, *, a_extra: tuple[str, ...] = (), b_extra: tuple[str, ...] = ()) -> Setup:
    branch = h.branch("a-inv")
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, branch=branch, body=SDP_A, extra=a_extra))
    h.take_a()
    b_inv = h.one(B)
    s = Setup(branch, b_inv)
    h.from_b(reply(b_inv, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B, extra=b_extra))
    ok = [x for x in h.take_a() if x.status == 200][0]
    s.a_tag, s.a_200 = ok.msg.to_tag, ok
    h.from_a(a_request(h, "ACK", cseq=A_CSEQ, to_tag=s.a_tag))
    assert h.one(B).method == "ACK"
    return s


def _answer_our_refresh_of_a(h: Harness) -> None:
    """Caller A answers the refresh re-INVITE we send on its leg (we are its refresher)."""
    for sent in h.take_a():
        if sent.method in ("INVITE", "UPDATE"):
            h.from_a(reply(sent, 200, "OK", body=SDP_A if sent.method == "INVITE" else b""))
    h.take_a()


def test_outbound_invite_offers_timer_and_100rel() -> None:
    h = StHarness(SessionTimerConfig(session_expires=1800, min_se=90))
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A))
    inv = h.one(B).msg
    assert inv.get("session-expires") == "1800" and inv.get("min-se") == "90"
    assert {"100rel", "timer"} <= {x.strip() for x in inv.get("supported").split(",")}


def test_422_for_too_small_interval_from_the_caller() -> None:
    h = StHarness(SessionTimerConfig(min_se=120))
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A, extra=("Session-Expires: 100", "Supported: timer")))
    resp = [x for x in h.take_a() if x.status and x.status >= 200][0]
    assert resp.status == 422 and resp.msg.get("min-se") == "120"
    assert h.take_b() == []


def test_callee_422_retried_with_its_min_se() -> None:
    h = StHarness(SessionTimerConfig(session_expires=100, min_se=90))
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A))
    first = h.one(B)
    h.from_b(reply(first, 422, "Session Interval Too Small", to_tag="x", extra=("Min-SE: 600",)))
    retry = [x for x in h.take_b() if x.method == "INVITE"][0]
    assert retry.msg.get("session-expires") == "600" and retry.msg.get("min-se") == "600"
    assert retry.msg.cseq[0] == first.msg.cseq[0] + 1 and retry.msg.call_id == first.msg.call_id
    assert [x.status for x in h.take_a() if x.status != 100] == []  # the caller saw nothing of it


def test_caller_refreshes_and_we_answer_locally() -> None:
    """The caller is the refresher on its leg: its refresh is answered by us, not relayed;
    without it the session expires at interval - min(32, interval/3) and both legs get BYE."""
    h = StHarness(SessionTimerConfig(session_expires=1800, min_se=90))
    s = _call(h, a_extra=("Session-Expires: 120;refresher=uac", "Supported: timer"))
    assert s.a_200.msg.get("session-expires") == "120;refresher=uac"
    assert "timer" in s.a_200.msg.get("require")
    h.advance(50_000)
    refresh = a_request(h, "UPDATE", cseq=A_CSEQ + 1, to_tag=s.a_tag,
                        extra=("Session-Expires: 120;refresher=uac", "Supported: timer"))
    h.from_a(refresh)
    ok = h.one(A)
    assert ok.status == 200 and ok.msg.get("session-expires") == "120;refresher=uac"
    assert h.take_b() == [], "a pure refresh is not relayed"
    # no further refresh: 120 - min(32, 40) = 88 s after the last one, BYE on both legs
    h.advance(87_000)
    assert not [x for x in h.take_a() if x.method == "BYE"]
    h.advance(2_000)
    bye_a = [x for x in h.take_a() if x.method == "BYE"]
    bye_b = [x for x in h.take_b() if x.method == "BYE"]
    assert bye_a and bye_b
    assert 'text="Session timer expired"' in bye_a[0].msg.get("reason")


def test_we_refresh_the_callee_leg_at_half_the_interval() -> None:
    """The callee's 2xx names us (its UAC) as refresher: UPDATE at 60 s when it allows UPDATE."""
    h = StHarness(SessionTimerConfig(session_expires=120, min_se=90))
    s = _call(h, b_extra=("Session-Expires: 120;refresher=uac", "Require: timer", "Allow: INVITE, ACK, BYE, UPDATE"))
    h.advance(59_000)
    assert h.take_b() == []
    h.advance(1_500)
    _answer_our_refresh_of_a(h)  # the caller's leg (no timer support there) is ours to refresh too
    upd = h.take_b()[0]  # the first send (UDP retransmissions follow)
    assert upd.method == "UPDATE" and upd.msg.get("session-expires") == "120;refresher=uac"
    assert not upd.msg.body
    h.from_b(reply(upd, 200, "OK", extra=("Session-Expires: 120;refresher=uac",)))
    h.advance(59_000)
    assert h.take_b() == []
    h.advance(1_500)
    assert h.take_b()[0].method == "UPDATE"
    _answer_our_refresh_of_a(h)
    assert not [x for x in h.take_a() if x.method == "BYE"]
    assert h.b2bua.calls, "the call is still up"
    assert s.a_tag


def test_refresh_by_reinvite_repeats_our_sdp_when_update_is_not_allowed() -> None:
    h = StHarness(SessionTimerConfig(session_expires=120, min_se=90))
    _call(h, b_extra=("Session-Expires: 120;refresher=uac",))
    h.advance(60_500)
    reinv = h.take_b()[0]
    assert reinv.method == "INVITE" and reinv.msg.body  # no Allow: UPDATE -> re-INVITE with SDP
    h.from_b(reply(reinv, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    ack = h.one(B)
    assert ack.method == "ACK" and ack.msg.cseq == (reinv.msg.cseq[0], "ACK")


def test_refresh_refused_with_481_ends_the_call() -> None:
    h = StHarness(SessionTimerConfig(session_expires=120, min_se=90))
    _call(h, b_extra=("Session-Expires: 120;refresher=uac", "Allow: UPDATE"))
    h.advance(60_500)
    upd = h.take_b()[0]  # the first send (UDP retransmissions follow)
    h.from_b(reply(upd, 481, "Call/Transaction Does Not Exist"))
    assert [x for x in h.take_a() if x.method == "BYE"]
    assert [x for x in h.take_b() if x.method == "BYE"]


def test_callee_refreshes_and_silence_expires_its_leg() -> None:
    h = StHarness(SessionTimerConfig(session_expires=1800, min_se=90))
    _call(h, b_extra=("Session-Expires: 300;refresher=uas", "Require: timer"))
    h.advance(300_000 - 32_000 - 500)
    assert not [x for x in h.take_b() if x.method == "BYE"]
    h.advance(1_000)
    assert [x for x in h.take_b() if x.method == "BYE"]
    assert h.records == [] or h.records[-1].cause == "session_expired"


# -- RFC 3262 ------------------------------------------------------------------------------------
def test_reliable_provisional_to_the_caller_retransmitted_until_prack() -> None:
    h = Harness()
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A, extra=("Supported: 100rel",)))
    h.take_a()
    b_inv = h.one(B)
    h.from_b(reply(b_inv, 183, "Session Progress", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    p1 = h.one(A)
    assert p1.status == 183 and p1.msg.get("rseq") == "1" and "100rel" in p1.msg.get("require")
    h.advance(500)
    again = h.take_a()
    assert [x.status for x in again] == [183] and again[0].msg.get("rseq") == "1"
    # a second provisional waits for the PRACK of the first (RFC 3262 §3)
    h.from_b(reply(b_inv, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    assert h.take_a() == []
    prack = a_request(h, "PRACK", cseq=A_CSEQ + 1, to_tag=p1.msg.to_tag, extra=(f"RAck: 1 {A_CSEQ} INVITE",))
    h.from_a(prack)
    got = h.take_a()
    assert [x.status for x in got] == [200, 180]
    assert got[1].msg.get("rseq") == "2"
    h.advance(1_000)
    assert [x.status for x in h.take_a()] == [180]  # the 180 is now the one retransmitted


def test_prack_with_wrong_rack_gets_481() -> None:
    h = Harness()
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A, extra=("Require: 100rel",)))
    h.take_a()
    b_inv = h.one(B)
    h.from_b(reply(b_inv, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    p1 = h.one(A)
    h.from_a(a_request(h, "PRACK", cseq=A_CSEQ + 1, to_tag=p1.msg.to_tag, extra=(f"RAck: 7 {A_CSEQ} INVITE",)))
    assert [x.status for x in h.take_a()] == [481]


def test_unprack_ed_provisional_fails_the_call_after_64_t1() -> None:
    h = Harness()
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A, extra=("Supported: 100rel",)))
    h.take_a()
    b_inv = h.one(B)
    h.from_b(reply(b_inv, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    h.take_a()
    h.advance(32_100)
    statuses = [x.status for x in h.take_a()]
    assert statuses.count(180) >= 5 and 504 in statuses
    assert [x.method for x in h.take_b()] == ["CANCEL"]


def test_callee_reliable_provisional_is_pracked_once() -> None:
    h = Harness()
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A))
    h.take_a()
    b_inv = h.one(B)
    rel = reply(b_inv, 183, "Session Progress", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B,
                extra=("Require: 100rel", "RSeq: 4711"))
    h.from_b(rel)
    prack = h.one(B)
    assert prack.method == "PRACK" and prack.msg.get("rack") == f"4711 {b_inv.msg.cseq[0]} INVITE"
    assert prack.msg.to_tag == B_TAG
    a_got = h.take_a()
    assert [x.status for x in a_got] == [183] and a_got[0].msg.get("rseq") is None  # A did not ask for 100rel
    h.from_b(rel)  # retransmission: neither a new PRACK nor a second 183 to A
    assert h.take_b() == [] and h.take_a() == []


@pytest.mark.parametrize("require", ["Require: 100rel", "Supported: 100rel"])
def test_100rel_is_not_refused(require: str) -> None:
    h = Harness()
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A, extra=(require,)))
    assert [x.status for x in h.take_a()] == [100]
    assert h.one(B).method == "INVITE"


def test_max_call_duration_ends_the_call() -> None:
    h = Harness()
    h.b2bua.config.max_duration = 600.0
    _call(h)
    h.advance(599_000)
    assert not [x for x in h.take_b() if x.method == "BYE"]
    h.advance(1_500)
    bye_b = [x for x in h.take_b() if x.method == "BYE"]
    bye_a = [x for x in h.take_a() if x.method == "BYE"]
    assert bye_a and bye_b and "Maximum call duration" in bye_b[0].msg.get("reason")
