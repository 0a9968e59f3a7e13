"""End-to-end call flows through :class:`B2BUA` + :class:`SipStack` on a fake clock (the harness is
in ``tests/flows.py``)."""

from __future__ import annotations

import pytest
from flows import (
    A_CALL_ID,
    A_CONTACT,
    A_CSEQ,
    A_TAG,
    B_CONTACT,
    B_TAG,
    LOCAL,
    OUR_CONTACT_URI,
    SDP_A,
    SDP_A_HOLD,
    SDP_B,
    SDP_B_HELD,
    TIMER_B,
    A,
    B,
    Harness,
    Setup,
    a_request,
    ack_2xx,
    ack_non2xx,
    answer,
    b_request,
    establish,
    hang_up_from_a,
    reply,
    ring,
    start_call,
    via_branch,
)

from b2bua.call.b2bua import Route
from b2bua.sip.events import Peer
from b2bua.sip.message import Request, parse_message
from b2bua.sip.uri import Address


@pytest.fixture
def h() -> Harness:
    return Harness()



def test_basic_call(h: Harness) -> None:
    a_branch = h.branch("a-inv")
    a_inv = a_request(h, "INVITE", cseq=A_CSEQ, branch=a_branch, body=SDP_A)
    h.from_a(a_inv)
    a_req = parse_message(a_inv)

    trying = h.one(A)
    assert trying.status == 100
    assert trying.msg.call_id == A_CALL_ID and trying.msg.cseq == (A_CSEQ, "INVITE")
    assert trying.msg.top_via.branch == a_branch

    b_inv = h.one(B)
    inv = b_inv.msg
    assert isinstance(inv, Request) and inv.method == "INVITE"
    assert inv.uri == "sip:bob@127.0.0.1:5080"
    assert inv.call_id != A_CALL_ID
    assert inv.from_tag and inv.from_tag != A_TAG
    assert inv.to_tag is None
    assert len(inv.vias) == 1, "the B2BUA is a UA: A's Via is not forwarded"
    assert inv.top_via.branch != a_branch and inv.top_via.branch.startswith("z9hG4bK")
    assert (inv.top_via.host, inv.top_via.port) == LOCAL
    assert inv.get("contact") != A_CONTACT
    assert Address.parse(inv.get("contact")).uri == OUR_CONTACT_URI
    assert inv.cseq[1] == "INVITE" and inv.cseq[0] != A_CSEQ
    assert inv.body == a_req.body == SDP_A
    assert inv.content_type == "application/sdp"
    assert int(inv.get("max-forwards")) == 69
    assert "client.example.com" not in b_inv.data.decode(), "A's topology leaked to B"

    # B rings: A gets 180 with the B2BUA's own To tag
    h.from_b(reply(b_inv, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    ringing = h.one(A)
    assert ringing.status == 180
    a_tag = ringing.msg.to_tag
    assert a_tag and a_tag != B_TAG
    assert ringing.msg.call_id == A_CALL_ID and ringing.msg.from_tag == A_TAG
    assert Address.parse(ringing.msg.get("contact")).uri == OUR_CONTACT_URI
    assert h.take_b() == []

    # B answers: A gets 200 with B's SDP and our Contact; B is NOT acked yet
    h.from_b(reply(b_inv, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    ok = h.one(A)
    assert ok.status == 200 and ok.msg.cseq == (A_CSEQ, "INVITE")
    assert ok.msg.to_tag == a_tag
    assert ok.msg.body == SDP_B and ok.msg.content_type == "application/sdp"
    assert Address.parse(ok.msg.get("contact")).uri == OUR_CONTACT_URI
    assert "bob@127.0.0.1:5080" not in ok.data.decode(), "B's Contact leaked to A"
    assert h.take_b() == [], "B was ACKed before A's ACK arrived"
    h.advance(200)
    assert h.take_b() == []
    assert len(h.b2bua.calls) == 1

    # A ACKs: B gets its ACK (CSeq 1 ACK, B's To tag, to B's Contact)
    h.from_a(ack_2xx(h, A_CSEQ, a_tag))
    ack = h.one(B)
    assert ack.method == "ACK"
    assert ack.msg.cseq == (inv.cseq[0], "ACK") == (1, "ACK")
    assert ack.msg.to_tag == B_TAG
    assert ack.msg.from_tag == inv.from_tag
    assert ack.msg.call_id == inv.call_id
    assert ack.msg.uri == "sip:bob@127.0.0.1:5080"
    assert via_branch(ack) != inv.top_via.branch, "ACK to a 2xx is a new transaction (§13.2.2.4)"
    assert h.take_a() == []

    # A hangs up
    h.from_a(a_request(h, "BYE", cseq=A_CSEQ + 1, to_tag=a_tag))
    bye_ok = h.one(A)
    assert bye_ok.status == 200 and bye_ok.msg.cseq == (A_CSEQ + 1, "BYE")
    assert bye_ok.msg.to_tag == a_tag
    bye = h.one(B)
    assert bye.method == "BYE"
    assert bye.msg.call_id == inv.call_id and bye.msg.to_tag == B_TAG and bye.msg.from_tag == inv.from_tag
    assert bye.msg.cseq == (2, "BYE")
    assert bye.msg.uri == "sip:bob@127.0.0.1:5080"
    assert h.records == []

    h.from_b(reply(bye, 200, "OK"))
    assert h.b2bua.calls == {}
    assert h.b2bua._legs == {}
    assert len(h.records) == 1
    rec = h.records[0]
    assert rec.status == 200 and rec.ended_by == "a" and rec.cause == "normal"
    assert rec.a_call_id == A_CALL_ID and rec.b_call_id == inv.call_id
    assert rec.answer is not None

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None
    assert h.take_a() == [] and h.take_b() == []
    h.nothing_unexpected()


def test_b_200_retransmitted_after_ack_gets_the_same_ack_again(h: Harness) -> None:
    """§13.2.2.4: the UAC core answers each 2xx retransmission with the same ACK."""
    s = establish(h)
    h.from_b(reply(s.b_invite, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    again = h.one(B)
    assert again.method == "ACK" and again.msg.cseq == (1, "ACK") and again.msg.to_tag == B_TAG
    assert h.take_a() == []


# -- 2. 2xx retransmission, ACK timeout ----------------------------------------------------------
def test_2xx_retransmission_and_ack_timeout(h: Harness) -> None:
    s = start_call(h)
    ring(h, s)
    ok = answer(h, s)
    t0 = ok.at

    # B retransmits its 200 before A ACKs: nothing goes anywhere
    h.advance(200)
    h.from_b(reply(s.b_invite, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    assert h.take_a() == [] and h.take_b() == []
    h.advance(400)  # past t0 + 500 ms: our first 2xx retransmission
    h.from_b(reply(s.b_invite, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    assert h.take_b() == []
    h.advance((TIMER_B - 0.6 - 0.1) * 1000)  # up to t0 + 31.9 s

    to_a = h.take_a()
    assert all(x.status == 200 and x.data == ok.data for x in to_a), to_a
    # intervals T1, 2*T1, 4*T1, then capped at T2 = 4 s (§13.3.1.4)
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [round(x.at - t0, 3) for x in to_a] == expected
    assert h.take_b() == [], "B must not be ACKed before A's ACK"
    assert h.records == []

    # 64*T1 without A's ACK: ACK and BYE B, BYE A
    h.advance(300)
    to_b = h.take_b()
    assert [x.method for x in to_b] == ["ACK", "BYE"]
    ack, bye_b = to_b
    assert ack.msg.cseq == (1, "ACK") and ack.msg.to_tag == B_TAG
    assert bye_b.msg.to_tag == B_TAG and bye_b.msg.cseq == (2, "BYE")
    to_a = h.take_a()
    assert [x.method for x in to_a] == ["BYE"]
    bye_a = to_a[0]
    assert bye_a.msg.call_id == A_CALL_ID
    assert bye_a.msg.from_tag == s.a_tag and bye_a.msg.to_tag == A_TAG
    assert bye_a.msg.uri == "sip:alice@127.0.0.1:5070"

    h.from_b(reply(bye_b, 200, "OK"))
    h.from_a(reply(bye_a, 200, "OK"))
    assert h.b2bua.calls == {}
    assert len(h.records) == 1
    assert h.records[0].cause == "ack_timeout"
    assert h.records[0].ended_by == "a"

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 3. CANCEL ----------------------------------------------------------------------------------
def test_cancel_while_ringing(h: Harness) -> None:
    s = start_call(h)
    ring(h, s)
    h.advance(1000)
    assert h.take_a() == [] and h.take_b() == []

    h.from_a(a_request(h, "CANCEL", cseq=A_CSEQ, branch=s.a_branch))
    to_a = h.take_a()
    assert [(x.status, x.msg.cseq) for x in to_a] == [(200, (A_CSEQ, "CANCEL")), (487, (A_CSEQ, "INVITE"))]
    assert to_a[1].msg.to_tag == s.a_tag
    cancel = h.one(B)
    inv = s.b_invite.msg
    assert cancel.method == "CANCEL"
    assert cancel.msg.uri == inv.uri
    assert via_branch(cancel) == inv.top_via.branch, "CANCEL must match the INVITE's branch (§9.1)"
    assert cancel.msg.call_id == inv.call_id and cancel.msg.from_tag == inv.from_tag
    assert cancel.msg.to_tag is None
    assert cancel.msg.cseq == (inv.cseq[0], "CANCEL")

    h.from_a(ack_non2xx(s.a_branch, to_a[1]))  # A acks its 487 (absorbed by the transaction)
    assert h.take_b() == []

    h.from_b(reply(cancel, 200, "OK", to_tag=B_TAG))
    h.from_b(reply(s.b_invite, 487, "Request Terminated", to_tag=B_TAG))
    ack = h.one(B)
    assert ack.method == "ACK"
    assert via_branch(ack) == inv.top_via.branch, "ACK to a non-2xx is in the INVITE transaction (§17.1.1.3)"
    assert ack.msg.cseq == (inv.cseq[0], "ACK") and ack.msg.to_tag == B_TAG
    assert ack.msg.uri == inv.uri
    assert h.take_a() == []
    assert h.b2bua.calls == {} and h.b2bua._legs == {}
    assert len(h.records) == 1 and h.records[0].status == 487 and h.records[0].ended_by == "a"

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None
    assert h.take_a() == [] and h.take_b() == []


def _cancel_race(h: Harness, s: Setup) -> None:
    """A CANCELs, B's 200 crosses our CANCEL: the B2BUA must ACK then BYE B (§15, §9.1)."""
    h.from_a(a_request(h, "CANCEL", cseq=A_CSEQ, branch=s.a_branch))
    assert [x.status for x in h.take_a()] == [200, 487]
    cancel = h.one(B)
    assert cancel.method == "CANCEL"

    h.from_b(reply(s.b_invite, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    h.from_b(reply(cancel, 200, "OK", to_tag=B_TAG))
    to_b = h.take_b()
    assert [x.method for x in to_b] == ["ACK", "BYE"], to_b
    ack, bye = to_b
    assert ack.msg.cseq == (1, "ACK") and ack.msg.to_tag == B_TAG
    assert via_branch(ack) != via_branch(s.b_invite)
    assert ack.msg.uri == "sip:bob@127.0.0.1:5080"
    assert bye.msg.to_tag == B_TAG and bye.msg.call_id == s.b_invite.msg.call_id
    assert bye.msg.cseq == (2, "BYE")
    assert h.take_a() == [], "A already got 487; it must hear nothing more"

    h.from_b(reply(bye, 200, "OK"))
    assert h.b2bua.calls == {} and h.b2bua._legs == {}
    assert len(h.records) == 1 and h.records[0].status == 487

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0


def test_cancel_race_200_after_cancel_dialog_from_180(h: Harness) -> None:
    s = start_call(h)
    ring(h, s)  # 180 with B's To tag: an early dialog exists when the 200 arrives
    _cancel_race(h, s)


def test_cancel_race_200_after_cancel_no_early_dialog(h: Harness) -> None:
    s = start_call(h)
    h.from_b(reply(s.b_invite, 100, "Trying"))  # no To tag: no early dialog
    assert h.take_a() == []
    _cancel_race(h, s)


# -- 4. CANCEL before any provisional from B ----------------------------------------------------
def test_cancel_waits_for_first_provisional(h: Harness) -> None:
    s = start_call(h)
    h.from_a(a_request(h, "CANCEL", cseq=A_CSEQ, branch=s.a_branch))
    assert [x.status for x in h.take_a()] == [200, 487]
    assert h.take_b() == [], "CANCEL sent before any provisional response (§9.1)"
    h.advance(300)
    assert h.take_b() == []

    h.from_b(reply(s.b_invite, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    cancel = h.one(B)
    assert cancel.method == "CANCEL" and via_branch(cancel) == via_branch(s.b_invite)
    assert cancel.msg.cseq == (1, "CANCEL")
    assert h.take_a() == [], "a 180 after A's CANCEL must not reach A"

    h.from_b(reply(cancel, 200, "OK", to_tag=B_TAG))
    h.from_b(reply(s.b_invite, 487, "Request Terminated", to_tag=B_TAG))
    ack = h.one(B)
    assert ack.method == "ACK" and via_branch(ack) == via_branch(s.b_invite)
    assert h.b2bua.calls == {}
    assert len(h.records) == 1 and h.records[0].status == 487

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 5. rejection mapping -----------------------------------------------------------------------
@pytest.mark.parametrize(("b_status", "b_reason", "a_status"), [
    (486, "Busy Here", 486),
    (503, "Service Unavailable", 500),
    (302, "Moved Temporarily", 480),
    (404, "Not Found", 404),
    (603, "Decline", 603),
])
def test_rejection_mapping(h: Harness, b_status: int, b_reason: str, a_status: int) -> None:
    s = start_call(h)
    ring(h, s)
    extra = ("Contact: <sip:elsewhere@192.0.2.99>",) if b_status == 302 else ()
    h.from_b(reply(s.b_invite, b_status, b_reason, to_tag=B_TAG, extra=extra))
    ack = h.one(B)
    assert ack.method == "ACK" and via_branch(ack) == via_branch(s.b_invite)
    assert ack.msg.to_tag == B_TAG

    final = h.one(A)
    assert final.status == a_status
    assert final.msg.to_tag == s.a_tag
    assert final.msg.cseq == (A_CSEQ, "INVITE")
    reason = final.msg.get("reason")
    assert reason is not None and f"cause={b_status}" in reason
    assert "192.0.2.99" not in final.data.decode(), "a 3xx Contact must not reach A"
    if b_status == 503:
        assert "Service Unavailable" not in final.data.decode().split("\r\n", 1)[0]
    assert h.b2bua.calls == {}
    rec = h.records[0]
    assert rec.status == a_status and rec.ended_by == "b"

    # A acks its final response; the transaction absorbs it
    h.from_a(ack_non2xx(s.a_branch, final))
    assert h.take_a() == [] and h.take_b() == []
    h.advance(TIMER_B * 1000 + 1000)
    assert h.take_a() == [] and h.take_b() == []
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 6. B never answers -------------------------------------------------------------------------
def test_timer_b_gives_408(h: Harness) -> None:
    s = start_call(h)
    h.advance((TIMER_B - 0.1) * 1000)
    retrans = h.take_b()
    assert all(x.data == s.b_invite.data for x in retrans)
    assert [round(x.at, 3) for x in retrans] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubling (§17.1.1.2)
    assert h.take_a() == []

    h.advance(200)
    final = h.one(A)
    assert final.status == 408 and final.msg.cseq == (A_CSEQ, "INVITE")
    assert final.msg.to_tag
    assert h.take_b() == [], "no CANCEL without a provisional response"
    assert h.b2bua.calls == {}
    assert h.records[0].status == 408 and h.records[0].cause == "timeout"

    h.from_a(ack_non2xx(s.a_branch, final))
    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 7. ring timeout ----------------------------------------------------------------------------
def test_ring_timeout() -> None:
    h = Harness(ring_timeout=5.0)
    s = start_call(h)
    ring(h, s)
    h.advance(4900)
    assert h.take_a() == [] and h.take_b() == []

    h.advance(200)
    final = h.one(A)
    assert final.status == 480 and final.msg.to_tag == s.a_tag
    cancel = h.one(B)
    assert cancel.method == "CANCEL" and via_branch(cancel) == via_branch(s.b_invite)

    h.from_b(reply(cancel, 200, "OK", to_tag=B_TAG))
    h.from_b(reply(s.b_invite, 487, "Request Terminated", to_tag=B_TAG))
    ack = h.one(B)
    assert ack.method == "ACK" and via_branch(ack) == via_branch(s.b_invite)
    assert h.take_a() == []
    assert h.b2bua.calls == {}
    assert h.records[0].status == 480 and h.records[0].cause == "no_answer"

    h.from_a(ack_non2xx(s.a_branch, final))
    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 8. forking ---------------------------------------------------------------------------------
def test_second_fork_answering_is_acked_and_byed(h: Harness) -> None:
    s = start_call(h)
    ring(h, s, to_tag="X")
    answer(h, s, to_tag="X")
    h.from_b(reply(s.b_invite, 200, "OK", to_tag="Y", contact="<sip:bob-fork@127.0.0.1:5080>", body=SDP_B))
    to_b = h.take_b()
    assert [x.method for x in to_b] == ["ACK", "BYE"]
    ack_y, bye_y = to_b
    for m in (ack_y, bye_y):
        assert m.msg.to_tag == "Y"
        assert m.msg.call_id == s.b_invite.msg.call_id
        assert m.msg.from_tag == s.b_invite.msg.from_tag
        assert m.msg.uri == "sip:bob-fork@127.0.0.1:5080"
    assert ack_y.msg.cseq == (1, "ACK")
    assert bye_y.msg.cseq[1] == "BYE" and bye_y.msg.cseq[0] > 1
    assert h.take_a() == [], "the second answer must not reach A"
    h.from_b(reply(bye_y, 200, "OK"))

    # the call continues on X
    assert len(h.b2bua.calls) == 1
    h.from_a(ack_2xx(h, A_CSEQ, s.a_tag))
    ack_x = h.one(B)
    assert ack_x.method == "ACK" and ack_x.msg.to_tag == "X" and ack_x.msg.cseq == (1, "ACK")

    h.from_a(a_request(h, "INFO", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=b"Signal=5\r\nDuration=160\r\n",
                       ctype="application/dtmf-relay"))
    info = h.one(B)
    assert info.method == "INFO" and info.msg.to_tag == "X"
    h.from_b(reply(info, 200, "OK"))
    assert h.one(A).status == 200

    h.from_a(a_request(h, "BYE", cseq=A_CSEQ + 2, to_tag=s.a_tag))
    assert h.one(A).status == 200
    bye_x = h.one(B)
    assert bye_x.method == "BYE" and bye_x.msg.to_tag == "X"
    h.from_b(reply(bye_x, 200, "OK"))
    assert h.b2bua.calls == {} and h.b2bua._legs == {}
    assert h.records[0].ended_by == "a" and h.records[0].status == 200

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


def test_early_fork_then_other_fork_answers(h: Harness) -> None:
    """180 from fork X, 200 from fork Y: the call goes on with Y (§13.2.2.4)."""
    s = start_call(h)
    ring(h, s, to_tag="X")
    answer(h, s, to_tag="Y")
    assert h.take_b() == []
    h.from_a(ack_2xx(h, A_CSEQ, s.a_tag))
    ack = h.one(B)
    assert ack.msg.to_tag == "Y"
    hang_up_from_a(h, s)
    assert h.b2bua.calls == {} and h.b2bua._legs == {}


# -- 9. BYE from B ------------------------------------------------------------------------------
def test_bye_from_b(h: Harness) -> None:
    s = establish(h)
    h.from_b(b_request(h, s.b_invite, "BYE", cseq=1, to_tag=B_TAG))
    ok_b = h.one(B)
    assert ok_b.status == 200 and ok_b.msg.cseq == (1, "BYE")
    bye_a = h.one(A)
    assert bye_a.method == "BYE"
    assert bye_a.msg.call_id == A_CALL_ID
    assert bye_a.msg.from_tag == s.a_tag and bye_a.msg.to_tag == A_TAG
    assert bye_a.msg.uri == "sip:alice@127.0.0.1:5070"
    assert bye_a.msg.cseq[1] == "BYE"
    assert h.records == []

    h.from_a(reply(bye_a, 200, "OK"))
    assert h.b2bua.calls == {} and h.b2bua._legs == {}
    assert len(h.records) == 1
    assert h.records[0].ended_by == "b" and h.records[0].status == 200

    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 10. in-dialog relay ------------------------------------------------------------------------
def test_in_dialog_info_and_reinvite(h: Harness) -> None:
    s = establish(h)
    b_call_id = s.b_invite.msg.call_id

    dtmf = b"Signal=5\r\nDuration=160\r\n"
    h.from_a(a_request(h, "INFO", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=dtmf, ctype="application/dtmf-relay"))
    info = h.one(B)
    assert info.method == "INFO"
    assert info.msg.call_id == b_call_id and info.msg.to_tag == B_TAG
    assert info.msg.from_tag == s.b_invite.msg.from_tag
    assert info.msg.cseq == (2, "INFO")
    assert info.msg.body == dtmf and info.msg.content_type == "application/dtmf-relay"
    assert info.msg.uri == "sip:bob@127.0.0.1:5080"
    assert h.take_a() == []
    h.from_b(reply(info, 200, "OK"))
    ok = h.one(A)
    assert ok.status == 200 and ok.msg.cseq == (A_CSEQ + 1, "INFO") and ok.msg.to_tag == s.a_tag

    # re-INVITE (hold)
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ + 2, to_tag=s.a_tag, body=SDP_A_HOLD))
    to_a = h.take_a()
    assert all(x.status == 100 for x in to_a)
    reinv = h.one(B)
    assert reinv.method == "INVITE"
    assert reinv.msg.call_id == b_call_id and reinv.msg.to_tag == B_TAG
    assert reinv.msg.cseq == (3, "INVITE")
    assert reinv.msg.body == SDP_A_HOLD and b"a=sendonly" in reinv.msg.body
    assert Address.parse(reinv.msg.get("contact")).uri == OUR_CONTACT_URI
    h.from_b(reply(reinv, 200, "OK", contact=B_CONTACT, body=SDP_B_HELD))
    ok = h.one(A)
    assert ok.status == 200 and ok.msg.cseq == (A_CSEQ + 2, "INVITE")
    assert ok.msg.body == SDP_B_HELD and ok.msg.to_tag == s.a_tag
    assert Address.parse(ok.msg.get("contact")).uri == OUR_CONTACT_URI
    assert h.take_b() == [], "the re-INVITE's 2xx is ACKed end to end, not by the B2BUA on its own"

    h.from_a(ack_2xx(h, A_CSEQ + 2, s.a_tag))
    ack = h.one(B)
    assert ack.method == "ACK" and ack.msg.cseq == (3, "ACK")
    assert ack.msg.call_id == b_call_id and ack.msg.to_tag == B_TAG
    assert h.take_a() == []

    # the 2xx to A is no longer retransmitted once A's ACK arrived
    h.advance(2000)
    assert h.take_a() == [] and h.take_b() == []

    hang_up_from_a(h, s, cseq=A_CSEQ + 3)
    assert h.b2bua.calls == {}
    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


def test_in_dialog_info_from_b(h: Harness) -> None:
    s = establish(h)
    h.from_b(b_request(h, s.b_invite, "INFO", cseq=7, to_tag=B_TAG, body=b"Signal=1\r\nDuration=100\r\n",
                       ctype="application/dtmf-relay"))
    info = h.one(A)
    assert info.method == "INFO" and info.msg.call_id == A_CALL_ID
    assert info.msg.from_tag == s.a_tag and info.msg.to_tag == A_TAG
    assert info.msg.body == b"Signal=1\r\nDuration=100\r\n"
    h.from_a(reply(info, 200, "OK"))
    ok = h.one(B)
    assert ok.status == 200 and ok.msg.cseq == (7, "INFO")


# -- 11. requests outside any dialog -----------------------------------------------------------
def test_bye_with_unknown_to_tag_gets_481(h: Harness) -> None:
    h.from_a(a_request(h, "BYE", cseq=2, to_tag="nobody-knows-me", call_id="other@x"))
    resp = h.one(A)
    assert resp.status == 481 and resp.msg.cseq == (2, "BYE")
    assert h.take_b() == []


def test_options_gets_200_with_allow(h: Harness) -> None:
    h.from_a(a_request(h, "OPTIONS", cseq=1, call_id="opt@x"))
    resp = h.one(A)
    assert resp.status == 200
    allow = {m.strip() for m in resp.msg.get_all("allow")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= allow
    assert resp.msg.to_tag
    assert h.take_b() == []


def test_unknown_method_gets_501(h: Harness) -> None:
    h.from_a(a_request(h, "FROBNICATE", cseq=1, call_id="frob@x"))
    resp = h.one(A)
    assert resp.status == 501 and resp.msg.cseq == (1, "FROBNICATE")
    assert h.take_b() == []


def test_invite_when_overloaded_gets_503_retry_after(h: Harness) -> None:
    h.b2bua.overloaded = True
    h.from_a(a_request(h, "INVITE", cseq=1, body=SDP_A))
    resp = h.one(A)
    assert resp.status == 503
    assert resp.msg.get("retry-after") is not None and resp.msg.get("retry-after").split()[0].isdigit()
    assert h.take_b() == [] and h.b2bua.calls == {}


def test_invite_max_forwards_zero_gets_483(h: Harness) -> None:
    h.from_a(a_request(h, "INVITE", cseq=1, body=SDP_A, max_forwards=0))
    resp = h.one(A)
    assert resp.status == 483
    assert h.take_b() == [] and h.b2bua.calls == {}


def test_invite_require_unknown_gets_420(h: Harness) -> None:
    h.from_a(a_request(h, "INVITE", cseq=1, body=SDP_A, extra=("Require: foo",)))
    resp = h.one(A)
    assert resp.status == 420
    assert [v.strip() for v in resp.msg.get_all("unsupported")] == ["foo"]
    assert h.take_b() == [] and h.b2bua.calls == {}


def test_rejected_invite_leaves_no_state(h: Harness) -> None:
    branch = h.branch("a")
    h.from_a(a_request(h, "INVITE", cseq=1, body=SDP_A, extra=("Require: foo",), branch=branch))
    final = h.one(A)
    h.from_a(ack_non2xx(branch, final).replace(f"CSeq: {A_CSEQ} ACK".encode(), b"CSeq: 1 ACK"))
    assert h.take_a() == []
    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack.get_timer() is None


# -- 12. CSeq order inside a dialog --------------------------------------------------------------
def test_lower_cseq_in_dialog_gets_500(h: Harness) -> None:
    s = establish(h)
    h.from_a(a_request(h, "INFO", cseq=A_CSEQ - 1, to_tag=s.a_tag, body=b"Signal=1\r\n",
                       ctype="application/dtmf-relay"))
    resp = h.one(A)
    assert resp.status == 500 and resp.msg.cseq == (A_CSEQ - 1, "INFO")
    assert h.take_b() == [], "an out-of-order request must not be relayed"
    assert len(h.b2bua.calls) == 1

    # a well-ordered request still works afterwards
    h.from_a(a_request(h, "INFO", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=b"Signal=2\r\n",
                       ctype="application/dtmf-relay"))
    info = h.one(B)
    assert info.method == "INFO"


def test_lower_cseq_from_b_gets_500(h: Harness) -> None:
    s = establish(h)
    h.from_b(b_request(h, s.b_invite, "INFO", cseq=10, to_tag=B_TAG, body=b"Signal=1\r\n",
                       ctype="application/dtmf-relay"))
    info = h.one(A)
    h.from_a(reply(info, 200, "OK"))
    assert h.one(B).status == 200
    h.from_b(b_request(h, s.b_invite, "INFO", cseq=9, to_tag=B_TAG, body=b"Signal=2\r\n",
                       ctype="application/dtmf-relay"))
    resp = h.one(B)
    assert resp.status == 500 and resp.msg.cseq == (9, "INFO")
    assert h.take_a() == []


# -- 13. bounded state ----------------------------------------------------------------------------
def test_200_sequential_calls_leave_no_state(h: Harness) -> None:
    for n in range(200):
        call_id = f"seq-{n}@192.0.2.1"
        s = establish(h, call_id=call_id)
        hang_up_from_a(h, s, call_id=call_id)
        assert h.b2bua.calls == {} and h.b2bua._legs == {}
        h.advance(100)
    assert len(h.records) == 200
    assert all(r.status == 200 and r.ended_by == "a" for r in h.records)
    assert len({r.b_call_id for r in h.records}) == 200
    h.advance(TIMER_B * 1000 + 1000)
    assert h.stack.transaction_count == 0
    assert h.stack._pending_2xx == {}
    assert h.stack.get_timer() is None
    assert len(h.stack.timers) == 0
    h.nothing_unexpected()


# -- more RFC 3261 corners -----------------------------------------------------------------------
def test_invite_retransmission_from_a_gets_last_provisional(h: Harness) -> None:
    """§17.2.1: a retransmitted INVITE in Proceeding gets the latest provisional again."""
    branch = h.branch("a-inv")
    inv = a_request(h, "INVITE", cseq=A_CSEQ, branch=branch, body=SDP_A)
    h.from_a(inv)
    assert h.one(A).status == 100
    b_inv = h.one(B)
    h.from_a(inv)
    assert h.one(A).status == 100
    assert h.take_b() == []
    s = Setup(branch, b_inv)
    ring(h, s)
    h.from_a(inv)
    again = h.one(A)
    assert again.status == 180 and again.msg.to_tag == s.a_tag
    assert h.take_b() == []
    assert len(h.b2bua.calls) == 1


def test_183_with_sdp_reaches_a(h: Harness) -> None:
    s = start_call(h)
    h.from_b(reply(s.b_invite, 183, "Session Progress", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    prog = h.one(A)
    assert prog.status == 183 and prog.msg.body == SDP_B and prog.msg.content_type == "application/sdp"
    assert prog.msg.to_tag and prog.msg.to_tag != B_TAG


def test_late_offer_ack_carries_sdp_to_b(h: Harness) -> None:
    """INVITE without SDP: B offers in its 200, A answers in the ACK (§13.2.1); the ACK body reaches B."""
    branch = h.branch("a-inv")
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, branch=branch))
    assert h.one(A).status == 100
    b_inv = h.one(B)
    assert b_inv.msg.body == b""
    s = Setup(branch, b_inv)
    answer(h, s)
    h.from_a(a_request(h, "ACK", cseq=A_CSEQ, to_tag=s.a_tag, body=SDP_A))
    ack = h.one(B)
    assert ack.method == "ACK" and ack.msg.body == SDP_A and ack.msg.content_type == "application/sdp"


def test_bye_from_a_before_its_ack(h: Harness) -> None:
    """§15: A may BYE after the 2xx without ACKing; B must still get its ACK, then a BYE."""
    s = start_call(h)
    ring(h, s)
    answer(h, s)
    h.from_a(a_request(h, "BYE", cseq=A_CSEQ + 1, to_tag=s.a_tag))
    assert h.one(A).status == 200
    to_b = h.take_b()
    assert [x.method for x in to_b] == ["ACK", "BYE"]
    assert to_b[0].msg.cseq == (1, "ACK")
    h.from_b(reply(to_b[1], 200, "OK"))
    assert h.b2bua.calls == {}
    h.advance(5000)
    assert h.take_a() == [], "the 2xx to A must stop once the call is torn down"
    h.advance(TIMER_B * 1000)
    assert h.stack.transaction_count == 0 and h.stack.get_timer() is None


def test_record_route_from_b_builds_the_route_set(h: Harness) -> None:
    """§12.1.2: the UAC route set is the 2xx's Record-Route reversed; ACK and BYE carry it."""
    s = start_call(h)
    rr = "Record-Route: <sip:far@10.9.9.9;lr>, <sip:near@127.0.0.1:5080;lr>"
    h.from_b(reply(s.b_invite, 200, "OK", to_tag=B_TAG, contact="<sip:bob@10.1.1.1:5999>", body=SDP_B,
                   extra=(rr,)))
    ok = h.one(A)
    assert ok.status == 200
    assert "10.9.9.9" not in ok.data.decode() and "10.1.1.1" not in ok.data.decode()
    h.from_a(ack_2xx(h, A_CSEQ, ok.msg.to_tag))
    ack = h.one(B)
    assert ack.msg.uri == "sip:bob@10.1.1.1:5999"
    assert ack.msg.get_all("route") == ["<sip:near@127.0.0.1:5080;lr>", "<sip:far@10.9.9.9;lr>"]
    h.from_a(a_request(h, "BYE", cseq=A_CSEQ + 1, to_tag=ok.msg.to_tag))
    assert h.one(A).status == 200
    bye = h.one(B)
    assert bye.msg.get_all("route") == ["<sip:near@127.0.0.1:5080;lr>", "<sip:far@10.9.9.9;lr>"]


def test_record_route_from_a_is_echoed_and_used(h: Harness) -> None:
    """§12.1.1: the UAS copies Record-Route into its 2xx; its own requests carry the route set."""
    branch = h.branch("a-inv")
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, branch=branch, body=SDP_A,
                       extra=("Record-Route: <sip:edge@127.0.0.1:5070;lr>",)))
    assert h.one(A).status == 100
    s = Setup(branch, h.one(B))
    assert s.b_invite.msg.get("record-route") is None
    ok = answer(h, s)
    assert ok.msg.get_all("record-route") == ["<sip:edge@127.0.0.1:5070;lr>"]
    h.from_a(ack_2xx(h, A_CSEQ, s.a_tag))
    h.one(B)
    h.from_b(b_request(h, s.b_invite, "BYE", cseq=1, to_tag=B_TAG))
    assert h.one(B).status == 200
    bye = h.one(A)
    assert bye.msg.get_all("route") == ["<sip:edge@127.0.0.1:5070;lr>"]
    assert bye.msg.uri == "sip:alice@127.0.0.1:5070"


def test_relayed_info_timeout_gives_408_and_ends_call(h: Harness) -> None:
    """§12.2.1.2: a 408 to an in-dialog request ends the dialog."""
    s = establish(h)
    h.from_a(a_request(h, "INFO", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=b"Signal=1\r\n",
                       ctype="application/dtmf-relay"))
    info = h.one(B)
    h.advance((TIMER_B + 0.1) * 1000)
    retrans = h.take_b()
    assert retrans and all(x.data == info.data for x in retrans[:-1])
    bye_b = retrans[-1]
    assert bye_b.method == "BYE"
    to_a = h.take_a()
    assert [x.status or x.method for x in to_a] == [408, "BYE"]
    h.from_a(reply(to_a[1], 200, "OK"))
    h.from_b(reply(bye_b, 200, "OK"))
    assert h.b2bua.calls == {}


def test_out_of_dialog_cancel_gets_481(h: Harness) -> None:
    h.from_a(a_request(h, "CANCEL", cseq=1, call_id="nothing@x"))
    resp = h.one(A)
    assert resp.status == 481 and resp.msg.cseq == (1, "CANCEL")
    assert h.take_b() == []


def test_cancel_after_answer_has_no_effect(h: Harness) -> None:
    """§9.2: a CANCEL for an INVITE already answered gets 200 and changes nothing."""
    s = start_call(h)
    ring(h, s)
    answer(h, s)
    h.from_a(a_request(h, "CANCEL", cseq=A_CSEQ, branch=s.a_branch))
    assert [x.status for x in h.take_a()] == [200]
    assert h.take_b() == []
    h.from_a(ack_2xx(h, A_CSEQ, s.a_tag))
    assert h.one(B).method == "ACK"
    assert len(h.b2bua.calls) == 1
    hang_up_from_a(h, s)
    assert h.records[0].status == 200


def test_reinvite_from_b_is_relayed_and_acked(h: Harness) -> None:
    s = establish(h)
    h.from_b(b_request(h, s.b_invite, "INVITE", cseq=5, to_tag=B_TAG, body=SDP_B_HELD))
    reinv = h.one(A)
    assert reinv.method == "INVITE" and reinv.msg.call_id == A_CALL_ID
    assert reinv.msg.from_tag == s.a_tag and reinv.msg.to_tag == A_TAG
    assert reinv.msg.body == SDP_B_HELD
    h.from_a(reply(reinv, 200, "OK", contact=A_CONTACT, body=SDP_A))
    to_b = h.take_b()
    assert [x.status for x in to_b] == [100, 200]  # 100 Trying went out when the re-INVITE arrived
    ok = to_b[1]
    assert ok.status == 200 and ok.msg.cseq == (5, "INVITE") and ok.msg.body == SDP_A
    h.from_b(b_request(h, s.b_invite, "ACK", cseq=5, to_tag=B_TAG))
    ack = h.one(A)
    assert ack.method == "ACK" and ack.msg.cseq == (reinv.msg.cseq[0], "ACK")


def test_reinvite_2xx_retransmission_is_acked_again(h: Harness) -> None:
    s = establish(h)
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=SDP_A_HOLD))
    h.take_a()
    reinv = h.one(B)
    ok_b = reply(reinv, 200, "OK", contact=B_CONTACT, body=SDP_B_HELD)
    h.from_b(ok_b)
    assert h.one(A).status == 200
    h.from_a(ack_2xx(h, A_CSEQ + 1, s.a_tag))
    ack = h.one(B)
    assert ack.method == "ACK" and ack.msg.cseq == (reinv.msg.cseq[0], "ACK") == (2, "ACK")
    # the ACK was lost: B retransmits its 200 and must get the ACK again
    h.from_b(ok_b)
    again = h.one(B)
    assert again.method == "ACK" and again.msg.cseq == ack.msg.cseq and again.msg.to_tag == B_TAG


def test_reinvite_gets_100_trying(h: Harness) -> None:
    s = establish(h)
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=SDP_A_HOLD))
    assert h.one(B).method == "INVITE"
    h.advance(200)
    trying = h.take_a()
    assert [x.status for x in trying] == [100]


def test_no_answer_timeout_moves_to_the_next_target() -> None:
    h = Harness()
    h.route = lambda req, peer: Route(["sip:127.0.0.1:5080", "sip:127.0.0.1:5090"], name="two",
                                      no_answer_timeout=20.0)
    h.b2bua.router = h.route
    h.from_a(a_request(h, "INVITE", cseq=A_CSEQ, body=SDP_A))
    h.take_a()
    first = h.one(B)
    h.from_b(reply(first, 180, "Ringing", to_tag=B_TAG, contact=B_CONTACT))
    h.take_a()
    h.advance(20_100)
    assert [x.method for x in h.take_b()] == ["CANCEL"]
    second = h.one(Peer("udp", "127.0.0.1", 5090))
    assert second.method == "INVITE" and second.msg.call_id != first.msg.call_id
    # the first target answers anyway: ACKed and hung up, the caller's call goes on with the second
    h.from_b(reply(first, 200, "OK", to_tag=B_TAG, contact=B_CONTACT, body=SDP_B))
    assert [x.method for x in h.take_b()] == ["ACK", "BYE"]
    h.deliver(reply(second, 200, "OK", to_tag="t2", contact="<sip:carol@127.0.0.1:5090>", body=SDP_B),
              Peer("udp", "127.0.0.1", 5090))
    assert [x.status for x in h.take_a()] == [200]
