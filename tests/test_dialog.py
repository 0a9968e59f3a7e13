"""Unit tests for b2bua.sip.dialog (RFC 3261 §12)."""

from __future__ import annotations

import pytest

from b2bua.sip.dialog import Dialog, uri_to_peer
from b2bua.sip.errors import ParseError
from b2bua.sip.events import Peer
from b2bua.sip.message import Request, Response, parse_message, validate_request
from b2bua.sip.uri import Address, SipUri

CRLF = "\r\n"
CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"


def build(start: str, *headers: str) -> bytes:
    return (CRLF.join([start, *headers, "Content-Length: 0"]) + CRLF + CRLF).encode()


def invite(*extra: str, contact: str | None = "<sip:alice@pc33.atlanta.example.com>") -> Request:
    headers = [
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        f"Call-ID: {CALL_ID}",
        "CSeq: 314159 INVITE",
    ]
    if contact:
        headers.append(f"Contact: {contact}")
    msg = parse_message(build("INVITE sip:bob@biloxi.example.com SIP/2.0", *headers, *extra))
    validate_request(msg)
    return msg


def answer(status: int = 200, *extra: str, contact: str | None = "<sip:bob@192.0.2.4>") -> Response:
    headers = [
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        f"Call-ID: {CALL_ID}",
        "CSeq: 314159 INVITE",
    ]
    if contact:
        headers.append(f"Contact: {contact}")
    return parse_message(build(f"SIP/2.0 {status} Whatever", *headers, *extra))


RR = (
    "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    "Record-Route: <sip:p3.example.com;lr>",
)


def in_dialog(method: str, cseq: int, *extra: str, to_tag: str = "srv1") -> Request:
    """A request Alice sends to us (the UAS) inside the dialog."""
    msg = parse_message(build(
        f"{method} sip:b2bua@10.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnext",
        "Max-Forwards: 70",
        f"To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        f"Call-ID: {CALL_ID}",
        f"CSeq: {cseq} {method}",
        *extra,
    ))
    validate_request(msg)
    return msg


# -- creation ------------------------------------------------------------------------------


class TestFromUac:
    def test_fields(self):
        d = Dialog.from_uac(invite(*RR), answer(200, *RR))
        assert d.call_id == CALL_ID
        assert d.local_tag == "1928301774"
        assert d.remote_tag == "a6c85cf"
        assert d.key == (CALL_ID, "1928301774")
        assert Address.parse(d.local_uri) == Address("sip:alice@atlanta.example.com", "Alice")
        assert Address.parse(d.remote_uri) == Address("sip:bob@biloxi.example.com", "Bob")
        assert d.local_seq == 314159
        assert d.remote_seq is None
        assert d.remote_target == "sip:bob@192.0.2.4"
        assert d.local_contact == "<sip:alice@pc33.atlanta.example.com>"
        assert d.confirmed

    def test_route_set_is_record_route_reversed(self):
        d = Dialog.from_uac(invite(*RR), answer(200, *RR))
        assert d.route_set == ["<sip:p3.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]

    def test_no_record_route(self):
        assert Dialog.from_uac(invite(), answer()).route_set == []

    def test_early_dialog_from_1xx(self):
        d = Dialog.from_uac(invite(), answer(180))
        assert not d.confirmed
        assert d.remote_tag == "a6c85cf"

    def test_remote_target_from_contact_with_params(self):
        d = Dialog.from_uac(invite(), answer(contact='"Bob" <sip:bob@192.0.2.4:5070;transport=tcp>;expires=60'))
        assert d.remote_target == "sip:bob@192.0.2.4:5070;transport=tcp"

    def test_remote_tags_never_leak_into_uris(self):
        d = Dialog.from_uac(invite(), answer())
        assert Address.parse(d.local_uri).tag is None
        assert Address.parse(d.remote_uri).tag is None


class TestFromUas:
    def test_fields(self):
        req = invite(*RR)
        d = Dialog.from_uas(req, "srv1", "<sip:b2bua@10.0.0.1>")
        assert d.call_id == CALL_ID
        assert d.local_tag == "srv1"
        assert d.remote_tag == "1928301774"
        assert Address.parse(d.local_uri).uri == "sip:bob@biloxi.example.com"
        assert Address.parse(d.remote_uri).uri == "sip:alice@atlanta.example.com"
        assert d.remote_seq == 314159
        assert d.remote_target == "sip:alice@pc33.atlanta.example.com"
        assert d.local_contact == "<sip:b2bua@10.0.0.1>"
        assert not d.confirmed

    def test_route_set_is_record_route_in_order(self):
        d = Dialog.from_uas(invite(*RR), "srv1", "<sip:b2bua@10.0.0.1>")
        assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]

    def test_first_local_request_has_a_valid_cseq(self):
        d = Dialog.from_uas(invite(), "srv1", "<sip:b2bua@10.0.0.1>")
        req = d.create_request("BYE")
        assert 0 <= req.cseq[0] < 2**31


# -- requests within the dialog -----------------------------------------------------------


class TestCreateRequest:
    def test_uac_bye(self):
        d = Dialog.from_uac(invite(), answer())
        bye = d.create_request("BYE")
        assert bye.method == "BYE"
        assert bye.uri == "sip:bob@192.0.2.4"
        assert bye.cseq == (314160, "BYE")
        assert d.local_seq == 314160
        assert bye.call_id == CALL_ID
        assert bye.from_tag == "1928301774"
        assert bye.to_tag == "a6c85cf"
        assert bye.from_.uri == "sip:alice@atlanta.example.com"
        assert bye.to.uri == "sip:bob@biloxi.example.com"
        assert bye.get("max-forwards") == "70"
        assert not bye.has("route")
        assert not bye.has("contact")  # BYE is not a target refresh

    def test_cseq_increments_by_one_each_time(self):
        d = Dialog.from_uac(invite(), answer())
        assert [d.create_request(m).cseq for m in ("INFO", "INFO", "BYE")] == [
            (314160, "INFO"), (314161, "INFO"), (314162, "BYE"),
        ]

    def test_uas_side_tags_are_swapped(self):
        d = Dialog.from_uas(invite(), "srv1", "<sip:b2bua@10.0.0.1>")
        bye = d.create_request("BYE")
        assert bye.uri == "sip:alice@pc33.atlanta.example.com"
        assert bye.from_tag == "srv1"
        assert bye.to_tag == "1928301774"
        assert bye.from_.uri == "sip:bob@biloxi.example.com"
        assert bye.to.uri == "sip:alice@atlanta.example.com"

    @pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
    def test_target_refresh_requests_carry_contact(self, method):
        d = Dialog.from_uac(invite(), answer())
        assert d.create_request(method).get("contact") == "<sip:alice@pc33.atlanta.example.com>"

    def test_serializes_and_validates(self):
        d = Dialog.from_uac(invite(*RR), answer(200, *RR))
        req = d.create_request("INVITE")
        req.insert("via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKreinvite")
        again = parse_message(req.serialize())
        validate_request(again)
        assert again.cseq == (314160, "INVITE")
        assert again.get_all("route") == d.route_set

    def test_no_remote_tag(self):
        d = Dialog.from_uas(invite(), "srv1", "<sip:b2bua@10.0.0.1>")
        d.remote_tag = None  # RFC 2543 peer without a From tag
        assert d.create_request("BYE").to_tag is None


class TestRouting:
    """§12.2.1.1: loose routing keeps the remote target, strict routing moves it into Route."""

    def test_loose_routing(self):
        d = Dialog.from_uac(invite(*RR), answer(200, *RR))
        bye = d.create_request("BYE")
        assert bye.uri == "sip:bob@192.0.2.4"
        assert bye.get_all("route") == ["<sip:p3.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        assert d.next_hop() == Peer("udp", "p3.example.com", 5060)

    def test_strict_routing(self):
        rr = ("Record-Route: <sip:p1.example.com;lr>, <sip:strict.example.com;transport=tcp>",)
        d = Dialog.from_uac(invite(*rr), answer(200, *rr))
        assert d.route_set == ["<sip:strict.example.com;transport=tcp>", "<sip:p1.example.com;lr>"]
        bye = d.create_request("BYE")
        assert bye.uri == "sip:strict.example.com;transport=tcp"
        assert bye.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:bob@192.0.2.4>"]
        assert d.next_hop() == Peer("tcp", "strict.example.com", 5060)

    def test_strict_routing_single_route(self):
        d = Dialog.from_uac(invite(), answer())
        d.route_set = ["<sip:strict.example.com>"]
        bye = d.create_request("BYE")
        assert bye.uri == "sip:strict.example.com"
        assert bye.get_all("route") == ["<sip:bob@192.0.2.4>"]

    def test_lr_detection_is_case_insensitive_and_accepts_a_value(self):
        d = Dialog.from_uac(invite(), answer())
        for route in ("<sip:p1.example.com;LR>", "<sip:p1.example.com;lr=on>", "<sip:p1.example.com;transport=tcp;lr>"):
            d.route_set = [route]
            req = d.create_request("INFO")
            assert req.uri == "sip:bob@192.0.2.4"
            assert req.get_all("route") == [route]

    def test_lr_prefix_parameter_is_not_lr(self):
        d = Dialog.from_uac(invite(), answer())
        d.route_set = ["<sip:strict.example.com;lrx=1>"]
        req = d.create_request("INFO")
        assert SipUri.parse(req.uri).host == "strict.example.com"

    def test_next_hop_without_routes(self):
        d = Dialog.from_uac(invite(), answer(contact="<sip:bob@[2001:db8::4]:5070;transport=tls>"))
        assert d.next_hop() == Peer("tls", "2001:db8::4", 5070)

    @pytest.mark.parametrize("uri,peer", [
        ("sip:a@example.com", Peer("udp", "example.com", 5060)),
        ("sips:a@example.com", Peer("tls", "example.com", 5061)),
        ("sip:a@example.com;transport=TCP", Peer("tcp", "example.com", 5060)),
        ("sip:a@example.com:5080;maddr=10.0.0.9", Peer("udp", "10.0.0.9", 5080)),
        ("sip:[::1]:5062", Peer("udp", "::1", 5062)),
    ])
    def test_uri_to_peer(self, uri, peer):
        assert uri_to_peer(uri) == peer

    def test_uri_to_peer_refuses_other_schemes(self):
        with pytest.raises(ParseError):
            uri_to_peer("tel:+1234")


class TestCreateAck:
    def test_ack_uses_invite_cseq(self):
        d = Dialog.from_uac(invite(*RR), answer(200, *RR))
        reinvite = d.create_request("INVITE")
        ack = d.create_ack(reinvite.cseq[0])
        assert ack.method == "ACK"
        assert ack.cseq == (314160, "ACK")
        assert d.local_seq == 314160  # the ACK does not consume a sequence number
        assert ack.uri == reinvite.uri
        assert ack.get_all("route") == reinvite.get_all("route")
        assert (ack.from_tag, ack.to_tag, ack.call_id) == ("1928301774", "a6c85cf", CALL_ID)
        assert d.create_request("BYE").cseq == (314161, "BYE")

    def test_ack_for_initial_invite(self):
        req = invite()
        d = Dialog.from_uac(req, answer())
        ack = d.create_ack(req.cseq[0])
        assert ack.cseq == (314159, "ACK")
        assert ack.uri == "sip:bob@192.0.2.4"


# -- requests received within the dialog -------------------------------------------------


class TestCheckRequest:
    def make(self) -> Dialog:
        return Dialog.from_uas(invite(), "srv1", "<sip:b2bua@10.0.0.1>")

    def test_higher_cseq_is_accepted_and_remembered(self):
        d = self.make()
        assert d.check_request(in_dialog("INFO", 314160)) is None
        assert d.remote_seq == 314160
        assert d.check_request(in_dialog("BYE", 314200)) is None  # gaps are fine
        assert d.remote_seq == 314200

    def test_lower_cseq_gets_500(self):
        d = self.make()
        assert d.check_request(in_dialog("INFO", 314158)) == 500
        assert d.remote_seq == 314159  # unchanged

    def test_ack_and_cancel_are_not_checked(self):
        d = self.make()
        assert d.check_request(in_dialog("ACK", 314159)) is None
        assert d.check_request(in_dialog("CANCEL", 314159)) is None
        assert d.remote_seq == 314159

    def test_first_request_from_the_uas_side_sets_remote_seq(self):
        d = Dialog.from_uac(invite(), answer())
        assert d.remote_seq is None
        bye = parse_message(build(
            "BYE sip:alice@pc33.atlanta.example.com SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKbye",
            "Max-Forwards: 70",
            "From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
            'To: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
            f"Call-ID: {CALL_ID}",
            "CSeq: 1 BYE",
        ))
        assert d.check_request(bye) is None
        assert d.remote_seq == 1

    @pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
    def test_target_refresh(self, method):
        d = self.make()
        req = in_dialog(method, 314160, "Contact: <sip:alice@192.0.2.77:5080;transport=tcp>")
        assert d.check_request(req) is None
        assert d.remote_target == "sip:alice@192.0.2.77:5080;transport=tcp"
        assert d.create_request("BYE").uri == "sip:alice@192.0.2.77:5080;transport=tcp"

    def test_reinvite_without_contact_keeps_target(self):
        d = self.make()
        assert d.check_request(in_dialog("INVITE", 314160)) is None
        assert d.remote_target == "sip:alice@pc33.atlanta.example.com"

    def test_non_refresh_request_does_not_change_target(self):
        d = self.make()
        assert d.check_request(in_dialog("INFO", 314160, "Contact: <sip:elsewhere@192.0.2.99>")) is None
        assert d.remote_target == "sip:alice@pc33.atlanta.example.com"

    def test_out_of_order_reinvite_does_not_refresh(self):
        d = self.make()
        stale = in_dialog("INVITE", 314100, "Contact: <sip:alice@192.0.2.66>")
        assert d.check_request(stale) == 500
        assert d.remote_target == "sip:alice@pc33.atlanta.example.com"

    def test_refresh_target_from_response(self):
        d = Dialog.from_uac(invite(), answer())
        d.refresh_target(answer(200, contact="<sip:bob@192.0.2.5>"))
        assert d.remote_target == "sip:bob@192.0.2.5"
