"""The registrar (RFC 3261 §10.3)."""

from __future__ import annotations

import pytest

from b2bua.sip.events import Peer
from b2bua.sip.message import Request, Response, parse_message
from b2bua.sip.registrar import Registrar
from b2bua.sip.uri import Address

PHONE = Peer("udp", "203.0.113.7", 40001)
LAPTOP = Peer("tcp", "198.51.100.2", 51000, conn=4)
T0 = 5000.0


def register(*contacts: str, expires: int | str | None = None, call_id: str = "reg-1", cseq: int = 1,
             to: str = "<sip:alice@Example.COM>") -> Request:
    lines = "".join(f"Contact: {c}\r\n" for c in contacts)
    if expires is not None:
        lines += f"Expires: {expires}\r\n"
    raw = (
        "REGISTER sip:example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@example.com>;tag=f00\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"{lines}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def listed(resp: Response) -> dict[str, dict[str, str | None]]:
    """The 200's Contact values as {uri: params}."""
    out = {}
    for value in resp.get_all("contact"):
        addr = Address.parse(value)
        out[addr.uri] = addr.params
    return out


@pytest.fixture
def reg() -> Registrar:
    return Registrar(min_expires=60, max_expires=3600, default_expires=1800, max_bindings_per_aor=3,
                     wall_clock=lambda: 0.0)


def test_add_binding(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:alice@192.0.2.10:5060>"), T0, PHONE)
    assert resp.status == 200
    assert listed(resp) == {"sip:alice@192.0.2.10:5060": {"expires": "1800"}}
    assert resp.get("date") == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert resp.to_tag and resp.call_id == "reg-1" and resp.cseq == (1, "REGISTER")
    assert resp.top_via.branch == "z9hG4bKreg1"
    [b] = reg.lookup("alice", T0)
    assert (b.aor, b.contact, b.expires_at, b.call_id, b.cseq, b.source, b.q) == (
        "alice@example.com", "sip:alice@192.0.2.10:5060", T0 + 1800, "reg-1", 1, PHONE, None)


def test_expires_param_beats_header(reg: Registrar) -> None:
    resp = reg.handle_register(
        register("<sip:a@192.0.2.1>;expires=120", "<sip:a@192.0.2.2>", expires=600), T0, PHONE)
    assert {u: p["expires"] for u, p in listed(resp).items()} == {
        "sip:a@192.0.2.1": "120", "sip:a@192.0.2.2": "600"}


def test_malformed_expires_uses_default(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.1>;expires=soon", expires="-5"), T0, PHONE)
    assert listed(resp)["sip:a@192.0.2.1"]["expires"] == "1800"


def test_refresh_updates_expiry_and_source(reg: Registrar) -> None:
    reg.handle_register(register("<sip:alice@192.0.2.10>", expires=300), T0, PHONE)
    resp = reg.handle_register(register("<sip:alice@192.0.2.10>", expires=900, cseq=2), T0 + 100, LAPTOP)
    assert listed(resp) == {"sip:alice@192.0.2.10": {"expires": "900"}}
    [b] = reg.lookup("alice", T0 + 100)
    assert (b.expires_at, b.cseq, b.source) == (T0 + 1000, 2, LAPTOP)


def test_refresh_matches_equivalent_uri(reg: Registrar) -> None:
    reg.handle_register(register("<sip:alice@HOST.example;transport=TCP>"), T0, PHONE)
    reg.handle_register(register("<sip:alice@host.example;transport=tcp>", cseq=2), T0, PHONE)
    assert len(reg.lookup("alice", T0)) == 1


def test_remaining_expires_listed(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", expires=600), T0, PHONE)
    resp = reg.handle_register(register("<sip:a@192.0.2.2>", expires=600, cseq=2), T0 + 100.5, PHONE)
    assert {u: p["expires"] for u, p in listed(resp).items()} == {
        "sip:a@192.0.2.2": "600", "sip:a@192.0.2.1": "500"}


def test_query_without_contact(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>"), T0, PHONE)
    resp = reg.handle_register(register(cseq=2), T0 + 10, PHONE)
    assert resp.status == 200
    assert listed(resp) == {"sip:a@192.0.2.1": {"expires": "1790"}}


def test_remove_one_binding(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>"), T0, PHONE)
    resp = reg.handle_register(register("<sip:a@192.0.2.1>;expires=0", cseq=2), T0, PHONE)
    assert list(listed(resp)) == ["sip:a@192.0.2.2"]
    assert [b.contact for b in reg.lookup("alice", T0)] == ["sip:a@192.0.2.2"]


def test_remove_unknown_binding_is_harmless(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.9>", expires=0), T0, PHONE)
    assert resp.status == 200 and not resp.has("contact")


def test_star_removes_all(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>"), T0, PHONE)
    reg.handle_register(register("<sip:a@192.0.2.3>", call_id="other"), T0, LAPTOP)
    reg.handle_register(register("<sip:x@192.0.2.4>", to="<sip:alice@other.example>"), T0, PHONE)
    resp = reg.handle_register(register("*", expires=0, cseq=2), T0, PHONE)
    assert resp.status == 200 and not resp.has("contact")
    # Only the AoR alice@example.com was cleared.
    assert [b.aor for b in reg.lookup("alice", T0)] == ["alice@other.example"]


@pytest.mark.parametrize("contacts, expires", [
    (("*",), 3600),
    (("*",), None),
    (("*", "<sip:a@192.0.2.1>"), 0),
    (("*, <sip:a@192.0.2.1>",), 0),
])
def test_bad_star(reg: Registrar, contacts: tuple[str, ...], expires: int | None) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>"), T0, PHONE)
    resp = reg.handle_register(register(*contacts, expires=expires, cseq=2), T0, PHONE)
    assert resp.status == 400
    assert len(reg.lookup("alice", T0)) == 1


def test_star_out_of_order(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", cseq=5), T0, PHONE)
    assert reg.handle_register(register("*", expires=0, cseq=5), T0, PHONE).status == 500
    assert len(reg.lookup("alice", T0)) == 1
    # A different Call-ID removes it whatever its CSeq (§10.3 step 6).
    assert reg.handle_register(register("*", expires=0, cseq=1, call_id="new"), T0, PHONE).status == 200
    assert reg.lookup("alice", T0) == []


def test_interval_too_brief(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.1>", expires=30), T0, PHONE)
    assert (resp.status, resp.get("min-expires")) == (423, "60")
    assert reg.lookup("alice", T0) == []
    resp = reg.handle_register(register("<sip:a@192.0.2.1>;expires=59", "<sip:a@192.0.2.2>"), T0, PHONE)
    assert resp.status == 423
    assert reg.handle_register(register("<sip:a@192.0.2.1>", expires=60), T0, PHONE).status == 200


def test_clamp_to_max(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.1>", expires=86400), T0, PHONE)
    assert listed(resp)["sip:a@192.0.2.1"]["expires"] == "3600"
    assert reg.lookup("alice", T0)[0].expires_at == T0 + 3600


def test_expiry_and_purge(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", expires=60), T0, PHONE)
    reg.handle_register(register("<sip:a@192.0.2.2>", expires=120, cseq=2), T0, PHONE)
    assert len(reg.lookup("alice", T0 + 59.9)) == 2
    assert [b.contact for b in reg.lookup("alice", T0 + 60)] == ["sip:a@192.0.2.2"]
    assert reg.purge(T0 + 60) == 1
    assert reg.purge(T0 + 200) == 1
    assert reg.lookup("alice", T0 + 200) == [] and reg.purge(T0 + 300) == 0


def test_expired_binding_not_listed(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", expires=60), T0, PHONE)
    resp = reg.handle_register(register("<sip:a@192.0.2.2>", cseq=2), T0 + 61, PHONE)
    assert list(listed(resp)) == ["sip:a@192.0.2.2"]


def test_lookup_newest_first(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", call_id="desk"), T0, PHONE)
    reg.handle_register(register("<sip:a@192.0.2.2>", call_id="soft"), T0 + 1, LAPTOP)
    assert [b.contact for b in reg.lookup("alice", T0 + 2)] == ["sip:a@192.0.2.2", "sip:a@192.0.2.1"]
    reg.handle_register(register("<sip:a@192.0.2.1>", call_id="desk", cseq=2), T0 + 3, PHONE)
    assert [b.contact for b in reg.lookup("alice", T0 + 4)] == ["sip:a@192.0.2.1", "sip:a@192.0.2.2"]
    assert reg.lookup("bob", T0) == []


def test_lookup_by_user_part(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", to="<sip:%61lice@EXAMPLE.com>"), T0, PHONE)
    reg.handle_register(register("<sip:a@192.0.2.2>", to="sip:alice@other.example", call_id="2"),
                        T0 + 1, PHONE)
    assert [b.aor for b in reg.lookup("alice", T0 + 1)] == ["alice@other.example", "alice@example.com"]


@pytest.mark.parametrize("cseq, call_id, status", [
    (4, "reg-1", 500),
    (5, "reg-1", 500),
    (6, "reg-1", 200),
    (1, "reg-2", 200),
])
def test_call_id_cseq_ordering(reg: Registrar, cseq: int, call_id: str, status: int) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", expires=600, cseq=5), T0, PHONE)
    resp = reg.handle_register(register("<sip:a@192.0.2.1>", expires=0, cseq=cseq, call_id=call_id),
                               T0, PHONE)
    assert resp.status == status
    assert len(reg.lookup("alice", T0)) == (1 if status == 500 else 0)


def test_failed_update_is_atomic(reg: Registrar) -> None:
    reg.handle_register(register("<sip:a@192.0.2.1>", cseq=5), T0, PHONE)
    resp = reg.handle_register(register("<sip:a@192.0.2.2>", "<sip:a@192.0.2.1>", cseq=5), T0, PHONE)
    assert resp.status == 500
    assert [b.contact for b in reg.lookup("alice", T0)] == ["sip:a@192.0.2.1"]


def test_same_contact_twice_in_one_request(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.1>;expires=100", "<sip:a@192.0.2.1>;expires=200"),
                               T0, PHONE)
    assert listed(resp) == {"sip:a@192.0.2.1": {"expires": "200"}}


def test_escaped_header_not_applied_rfc4475_regescrt(reg: Registrar) -> None:
    raw = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"To: sip:user@example.com\r\n"
        b"From: sip:user@example.com;tag=8\r\n"
        b"Max-Forwards: 70\r\n"
        b"Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\r\n"
        b"CSeq: 14398234 REGISTER\r\n"
        b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n"
        b"M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n"
        b"L:0\r\n\r\n"
    )
    resp = reg.handle_register(parse_message(raw), T0, PHONE)
    assert resp.status == 200
    assert not resp.has("route")
    # Retrieval keeps the escaped header (RFC 4475 §3.3.14)...
    assert list(listed(resp)) == ["sip:user@example.com?Route=%3Csip:sip.example.com%3E"]
    [b] = reg.lookup("user", T0)
    # ...but the target used to reach the device ignores it.
    assert b.target == "sip:user@example.com"


def test_q_value(reg: Registrar) -> None:
    resp = reg.handle_register(register("<sip:a@192.0.2.1>;q=0.5", "<sip:a@192.0.2.2>;q=1.0"), T0, PHONE)
    assert {u: p.get("q") for u, p in listed(resp).items()} == {
        "sip:a@192.0.2.1": "0.5", "sip:a@192.0.2.2": "1"}
    assert [b.q for b in reg.lookup("alice", T0)] == [0.5, 1.0]


@pytest.mark.parametrize("q", ["2", "0.1234", "abc", "1.5", "-0"])
def test_bad_q_value(reg: Registrar, q: str) -> None:
    assert reg.handle_register(register(f"<sip:a@192.0.2.1>;q={q}"), T0, PHONE).status == 400


def test_max_bindings_evicts_oldest(reg: Registrar) -> None:
    for i in range(4):
        reg.handle_register(register(f"<sip:a@192.0.2.{i}>", call_id=f"c{i}"), T0 + i, PHONE)
    assert [b.contact for b in reg.lookup("alice", T0 + 5)] == [
        "sip:a@192.0.2.3", "sip:a@192.0.2.2", "sip:a@192.0.2.1"]


def test_too_many_contacts_in_one_request(reg: Registrar) -> None:
    contacts = [f"<sip:a@192.0.2.{i}>" for i in range(4)]
    assert reg.handle_register(register(*contacts), T0, PHONE).status == 403
    assert reg.lookup("alice", T0) == []


@pytest.mark.parametrize("to, status", [
    ("<sip:example.com>", 404),
    ("<tel:+15551234>", 404),
    ("<sip:alice@bad host>", 400),
])
def test_bad_address_of_record(reg: Registrar, to: str, status: int) -> None:
    assert reg.handle_register(register("<sip:a@192.0.2.1>", to=to), T0, PHONE).status == status


def test_bad_contact(reg: Registrar) -> None:
    assert reg.handle_register(register("<sip:a@bad host>"), T0, PHONE).status == 400


def test_not_a_register(reg: Registrar) -> None:
    req = register()
    req.method = "INVITE"
    with pytest.raises(ValueError):
        reg.handle_register(req, T0, PHONE)


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        Registrar(min_expires=600, max_expires=60)
