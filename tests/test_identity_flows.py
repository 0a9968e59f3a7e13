"""Caller identity inside call control, sans-I/O on a fake clock (the harness of test_b2bua_flows):
the INVITE towards a carrier, and what later crosses to it or to a citizen."""

from __future__ import annotations

from flows import A_CSEQ, B_TAG, SDP_A, A, B, Harness, a_request, b_request, establish, reply, start_call

from b2bua.call.b2bua import Route
from b2bua.call.identity import Presentation
from b2bua.sip.events import Peer
from b2bua.sip.message import Request

PRESENTATION = Presentation(
    ("서울시 교통정책과", "+82221332200"),
    identities=(("p-asserted-identity", '"서울시 교통정책과" <sip:+82221332200@{host};user=phone>'),),
    privacy="none")


class ToCarrier(Harness):
    @staticmethod
    def route(req: Request, peer: Peer) -> Route:
        return Route(["sip:+821012345678@127.0.0.1:5080"], name="mobile", presentation=(PRESENTATION,))


class ToDepartment(Harness):
    @staticmethod
    def route(req: Request, peer: Peer) -> Route:
        return Route(["sip:2200@127.0.0.1:5080"], name="dept:교통정책과", department="교통정책과")


def test_invite_to_a_carrier_carries_the_department_only() -> None:
    h = ToCarrier()
    s = start_call(h)
    inv = s.b_invite.msg
    assert inv.get("from", "").startswith('"서울시 교통정책과" <sip:+82221332200@127.0.0.1;user=phone>;tag=')
    assert inv.get("to") == "<sip:+821012345678@127.0.0.1:5080>"
    assert inv.get("p-asserted-identity") == '"서울시 교통정책과" <sip:+82221332200@127.0.0.1;user=phone>'
    assert inv.get("privacy") == "none"
    # no media engine here: the SDP passes through, without its owner
    assert inv.body.startswith(b"v=0\r\no=- 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 192.0.2.1")
    assert b"alice" not in s.b_invite.data.lower()


def test_in_dialog_requests_and_answers_towards_the_carrier_say_nothing_of_the_caller() -> None:
    h = ToCarrier()
    s = establish(h)
    h.from_a(a_request(h, "INFO", cseq=A_CSEQ + 1, to_tag=s.a_tag, body=b"Signal=5\r\nDuration=160\r\n",
                       ctype="application/dtmf-relay",
                       extra=("Subject: call Alice on 010-9876-5432", 'Reason: Q.850;cause=16;text="Alice"')))
    info = h.one(B)
    assert info.method == "INFO" and info.msg.body == b"Signal=5\r\nDuration=160\r\n"
    assert not info.msg.has("subject") and not info.msg.has("reason") and b"Alice" not in info.data
    h.from_b(reply(info, 200, "OK"))
    assert h.one(A).status == 200
    # the carrier's re-INVITE offer, answered by A with its own SDP and a chatty reason phrase
    h.from_b(b_request(h, s.b_invite, "INVITE", cseq=7, to_tag=B_TAG, body=SDP_A.replace(b"alice", b"carrier")))
    reinvite = [m for m in h.take_a() if m.method == "INVITE"][0]
    h.take_b()
    h.from_a(reply(reinvite, 200, "OK Alice 010-9876-5432", contact="<sip:alice@127.0.0.1:5070>", body=SDP_A))
    ok = [m for m in h.take_b() if m.status == 200][0]
    assert ok.data.startswith(b"SIP/2.0 200 OK\r\n") and b"alice" not in ok.data.lower()
    assert ok.msg.body.startswith(b"v=0\r\no=- ")


def test_refusal_by_the_department_reaches_the_citizen_without_its_reason() -> None:
    h = ToDepartment()
    s = start_call(h)
    h.from_b(reply(s.b_invite, 480, "Lunch Break Until 13h", to_tag=B_TAG,
                   extra=('Reason: SIP;cause=480;text="lunch"',)))
    final = [m for m in h.take_a() if m.status == 480][0]
    assert final.data.startswith(b"SIP/2.0 480 Temporarily Unavailable\r\n")
    assert final.msg.get("reason") == "SIP;cause=480" and b"unch" not in final.data
