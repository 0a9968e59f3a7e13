"""The router on the shipped configuration, with a fake clock for registrations."""

from __future__ import annotations

from harness import ROOT

from b2bua.call.b2bua import Route
from b2bua.config import load_config
from b2bua.routing.router import Router
from b2bua.sip.events import Peer
from b2bua.sip.message import parse_message
from b2bua.sip.registrar import Registrar

LAB = Peer("udp", "127.0.0.1", 5070)


def _invite(user: str):
    return parse_message((f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
                          "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: r@t\r\n"
                          "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


def test_registered_device_is_routed_only_while_its_binding_lives() -> None:
    registrar = Registrar(min_expires=60)
    router = Router(load_config(ROOT / "config" / "b2bua.yaml"), registrar)
    register = parse_message(b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKr\r\n"
                             b"From: <sip:staff1001@127.0.0.1>;tag=r\r\nTo: <sip:staff1001@127.0.0.1>\r\n"
                             b"Call-ID: reg@t\r\nCSeq: 1 REGISTER\r\nContact: <sip:staff1001@127.0.0.1:5090>\r\n"
                             b"Expires: 120\r\nContent-Length: 0\r\n\r\n")
    assert registrar.handle_register(register, 1000.0, Peer("udp", "127.0.0.1", 5090)).status == 200
    live = router(_invite("staff1001"), LAB, 1100.0)
    assert isinstance(live, Route) and live.name == "device:staff1001"
    expired = router(_invite("staff1001"), LAB, 1121.0)
    assert isinstance(expired, Route) and expired.name == "lab"  # the binding ran out: the prefix route
