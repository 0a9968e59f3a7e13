"""Caller identity (b2bua/call/identity.py) and its configuration, on the shipped routing file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from harness import ROOT

from b2bua.call.b2bua import Route
from b2bua.call.identity import (
    NumberPlan,
    Presentation,
    extensions_overlap,
    outbound,
    parse_extension_range,
    scrub_sdp,
)
from b2bua.config import ConfigError, Trunk, load_config
from b2bua.routing.router import Router
from b2bua.sip.events import Peer
from b2bua.sip.message import Request, parse_message
from b2bua.sip.registrar import Registrar

PBX = Peer("udp", "192.0.2.3", 5060)  # the city-pbx trunk of config/routing.yaml
CARRIER_A = Peer("udp", "203.0.113.10", 5060)
STRANGER = Peer("udp", "198.18.0.7", 5060)


def _invite(to: str, from_: str, *extra: str, body: str = "") -> Request:
    head = (f"INVITE sip:{to}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bK1\r\n"
            f"From: {from_};tag=1\r\nTo: <sip:{to}@192.0.2.1>\r\nCall-ID: id@t\r\nCSeq: 1 INVITE\r\n"
            + "".join(f"{h}\r\n" for h in extra))
    if body:
        head += "Content-Type: application/sdp\r\n"
    return parse_message((head + f"Content-Length: {len(body.encode())}\r\n\r\n{body}").encode())


def _router() -> Router:
    return Router(load_config(ROOT / "config" / "b2bua.yaml"), Registrar())


def _applied(pres: Presentation, uri: str = "sip:+821012345678@203.0.113.10:5060", body: str = "") -> Request:
    """What call control sends: its own From/To, then the presentation applied."""
    req = Request("INVITE", uri)
    req.add("from", '"Kim Minsu" <sip:2201@192.0.2.1>;tag=ours')
    req.add("to", '"Citizen" <sip:01012345678@203.0.113.10>')
    if body:
        req.set_body(body.encode(), "application/sdp")
    pres.apply(req, "192.0.2.1")
    return req


# -- the number plan ------------------------------------------------------------------------------
def test_number_plan_most_specific_entry_wins() -> None:
    cfg = load_config(ROOT / "config" / "b2bua.yaml")
    plan = NumberPlan.build(cfg.routing.departments)
    assert plan.lookup("2201") == plan.lookup("2299") == plan.lookup("2200") == "교통정책과"
    assert plan.lookup("5123") == plan.lookup("5") == "총무과"  # the prefix 5*
    assert plan.lookup("8450") == "민원여권과"
    assert plan.lookup("2300") is None and plan.lookup("22011") is None and plan.lookup("") is None
    mixed = NumberPlan([(parse_extension_range("2*"), "wide"), (parse_extension_range("2200-2209"), "range"),
                        (parse_extension_range("2205"), "exact")])
    assert (mixed.lookup("2205"), mixed.lookup("2201"), mixed.lookup("2301")) == ("exact", "range", "wide")


@pytest.mark.parametrize("a,b,overlap", [
    ("2200-2299", "2250", True), ("2200-2299", "2300-2399", False), ("22*", "2250-2260", True),
    ("22*", "2*", True), ("22*", "23*", False), ("2200-2299", "22000-22999", False), ("5*", "4000-4999", False),
    ("5*", "4000-5000", True),
])
def test_extension_overlaps(a: str, b: str, overlap: bool) -> None:
    ra, rb = parse_extension_range(a), parse_extension_range(b)
    assert extensions_overlap(ra, rb) is overlap and extensions_overlap(rb, ra) is overlap


def _routing_problems(tmp: Path, change) -> list[str]:
    (tmp / "b2bua.yaml").write_text((ROOT / "config" / "b2bua.yaml").read_text())
    (tmp / "holidays.yaml").write_text((ROOT / "config" / "holidays.yaml").read_text())
    (tmp / "abuse_lexicon.yaml").write_bytes((ROOT / "config" / "abuse_lexicon.yaml").read_bytes())
    data = yaml.safe_load((ROOT / "config" / "routing.yaml").read_text())
    change(data)
    (tmp / "routing.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_config(tmp / "b2bua.yaml")
    return err.value.problems


def test_config_refuses_an_extension_claimed_twice(tmp_path: Path) -> None:
    def change(d: dict) -> None:
        d["departments"][3]["extensions"] = ["2250-2260"]
    problems = _routing_problems(tmp_path, change)
    assert len(problems) == 1 and "departments.3.extensions.0: '2250-2260' overlaps '2201-2299'" in problems[0]
    assert problems[0].startswith(f"{tmp_path / 'routing.yaml'}:")


@pytest.mark.parametrize("change,needle", [
    (lambda d: d["departments"][0].update(extensions=["2299-2201"]), "runs backwards"),
    (lambda d: d["departments"][0].update(extensions=["22x"]), "is not an extension"),
    (lambda d: d["trunks"][0].update(forward_headers=["P-Asserted-Identity"]), "never forwarded"),
    (lambda d: d["trunks"][0].update(identity_headers=["pai", "diversion"]), "identity_headers"),
    (lambda d: d["departments"][0]["policy"]["caller_id"].update(public_number="not a number"), "public_number"),
    (lambda d: d["departments"][0]["policy"]["caller_id"].update(logo_url="ftp://x/logo.png"), "http(s) URL"),
    (lambda d: d.update(messenger={"url": "https://hook.example/n"}), "needs a secret"),
    (lambda d: d["devices"][0]["caller_id"].update(privacy="hidden"), "devices.0.caller_id.privacy"),
])
def test_config_refuses_bad_caller_id_settings(tmp_path: Path, change, needle: str) -> None:
    problems = _routing_problems(tmp_path, change)
    assert any(needle in p and "routing.yaml:" in p for p in problems), problems


# -- outbound presentation ----------------------------------------------------------------------------
def test_pbx_call_to_a_carrier_presents_the_department_per_trunk() -> None:
    """The mobile route tries carrier-a (E.164, PAI, branding) then carrier-b (national, PAI + RPID,
    no Call-Info): each target carries its own trunk's presentation."""
    route = _router()(_invite("010-1234-5678", '"Kim Minsu" <sip:2201@192.0.2.3>'), PBX, 0.0)
    assert isinstance(route, Route) and route.name == "mobile" and len(route.presentation) == len(route.targets)
    by_host = {t.split("@")[1].split(":")[0]: p for t, p in zip(route.targets, route.presentation, strict=True)}
    a = _applied(by_host["203.0.113.10"])
    assert a.get("from") == '"서울시 교통정책과" <sip:+82221332200@192.0.2.1;user=phone>;tag=ours'
    assert a.get("to") == "<sip:+821012345678@203.0.113.10:5060>"
    assert a.get_all("p-asserted-identity") == ['"서울시 교통정책과" <sip:+82221332200@192.0.2.1;user=phone>']
    assert a.get("privacy") == "none" and not a.has("remote-party-id")
    assert a.get("call-info") == ("<https://www.seoul.go.kr/brand/traffic-policy.png>;purpose=icon, "
                                  "<https://www.seoul.go.kr/brand/traffic-policy.json>;purpose=jcard;"
                                  'call-reason="서울시 교통정책과 민원 회신 전화"')
    b = _applied(by_host["198.51.100.20"], "sip:01012345678@198.51.100.20:5060")
    assert b.get("from") == '"서울시 교통정책과" <sip:0221332200@192.0.2.1>;tag=ours'
    assert b.get("remote-party-id") == ('"서울시 교통정책과" <sip:0221332200@192.0.2.1>;party=calling;screen=yes;'
                                        "privacy=off")
    assert not b.has("call-info")
    notice = by_host["203.0.113.10"].notice
    assert notice is not None and (notice.department, notice.public_number, notice.called) == (
        "교통정책과", "+82221332200", "01012345678")


def test_extension_found_through_pai_and_department_defaults() -> None:
    """A PBX that writes the extension only in P-Asserted-Identity; 총무과's caller ID has no
    logo, so no Call-Info."""
    route = _router()(_invite("01012345678", "<sip:anonymous@192.0.2.3>", "P-Asserted-Identity: <sip:5123@192.0.2.3>"),
                      PBX, 0.0)
    assert isinstance(route, Route)
    req = _applied(route.presentation[0])
    assert req.get("from", "").startswith('"서울시 총무과" <sip:')
    assert not req.has("call-info")


def test_staff_device_uses_its_own_caller_id_override() -> None:
    router = _router()
    route = router(_invite("01012345678", '"Staff" <sip:staff1001@198.18.0.7>'), STRANGER, 0.0)
    assert isinstance(route, Route) and route.source is None
    req = _applied(route.presentation[0])
    assert req.get("from") == '"서울시 교통정책과 민원팀" <sip:+82221332200@192.0.2.1;user=phone>;tag=ours'


def test_unknown_caller_is_anonymous_and_calls_to_the_lab_are_untouched() -> None:
    router = _router()
    route = router(_invite("01012345678", "<sip:9999@192.0.2.3>"), PBX, 0.0)
    assert isinstance(route, Route)
    req = _applied(route.presentation[0])
    assert req.get("from") == '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=ours'
    assert req.get("privacy") == "id" and not req.has("p-asserted-identity")
    assert route.presentation[0].notice is None
    lab = router(_invite("3000", "<sip:2201@192.0.2.3>"), PBX, 0.0)  # the lab route: no carrier
    assert isinstance(lab, Route) and lab.presentation == ()


def test_privacy_id_hides_from_but_asserts_the_number() -> None:
    cfg = load_config(ROOT / "config" / "b2bua.yaml")
    trunk = cfg.routing.trunks[0]
    cid = cfg.routing.departments[0].policy.caller_id.model_copy(update={"privacy": "id"})
    req = _applied(outbound(cid, trunk, _invite("010", "<sip:2201@pbx>"), department="교통정책과"))
    assert req.get("from", "").startswith('"Anonymous" <sip:anonymous@anonymous.invalid>')
    assert req.get("privacy") == "id" and "+82221332200" in req.get("p-asserted-identity", "")


def test_allow_listed_headers_are_forwarded_unless_they_name_the_caller() -> None:
    trunk = Trunk(name="c", kind="carrier", addresses=["203.0.113.0/24"], forward_headers=["X-Case-Id", "X-Note"])
    a_req = _invite("01012345678", '"Kim" <sip:2201@pbx>', "P-Asserted-Identity: <sip:+821098765432@pbx>",
                    "X-Case-Id: CASE-7", "X-Note: call me back on 010.9876.5432", "X-Other: 1")
    pres = outbound(None, trunk, a_req)
    assert pres.forwarded == (("X-Case-Id", "CASE-7"),)
    a_req = _invite("01012345678", '"Kim" <sip:2201@pbx>', "X-Note: ext%202201")
    assert outbound(None, trunk, a_req).forwarded == ()


def test_sdp_passed_through_loses_its_owner_fields() -> None:
    sdp = ("v=0\r\no=01098765432 1 2 IN IP4 10.1.2.3\r\ns=Kim 010-9876-5432\r\ni=staff\r\nu=http://x/kim\r\n"
           "e=kim@city\r\np=+82 10 9876 5432\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
           "i=mobile\r\na=rtpmap:0 PCMU/8000\r\n")
    out = scrub_sdp(sdp.encode(), "192.0.2.1").decode()
    assert out == ("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n"
                   "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    assert scrub_sdp(b"\xff\xfe") == b"\xff\xfe"  # not text: left alone (media anchoring rebuilds SDP anyway)


def test_citizen_call_keeps_the_number_in_national_form_unless_private() -> None:
    router = _router()
    inv = _invite("+82221332200", '"Hong" <sip:+821055556666@203.0.113.10>',
                  'P-Asserted-Identity: "Hong" <sip:+821055556666@203.0.113.10;user=phone>')
    route = router(inv, CARRIER_A, 0.0)
    assert isinstance(route, Route) and route.department == "교통정책과"
    req = _applied(route.presentation[0], "sip:2200@192.0.2.5:5060")
    assert req.get("from") == '"Hong" <sip:01055556666@192.0.2.1>;tag=ours'
    assert req.get("p-asserted-identity") == '"Hong" <sip:01055556666@192.0.2.1>'
    assert req.get("to") == '"Citizen" <sip:01012345678@203.0.113.10>'  # the dialled DID stays
    private = _invite("+82221332200", '"Anonymous" <sip:anonymous@anonymous.invalid>',
                      "P-Asserted-Identity: <sip:+821055556666@203.0.113.10>", "Privacy: id")
    route = router(private, CARRIER_A, 1.0)
    assert isinstance(route, Route)
    req = _applied(route.presentation[0], "sip:2200@192.0.2.5:5060")
    assert "anonymous" in req.get("from", "") and not req.has("p-asserted-identity")


def test_device_without_department_presents_its_own_caller_id_and_sends_no_notice() -> None:
    from b2bua.call.identity import effective_caller_id
    from b2bua.config import Device

    device = Device(username="u", password="p", caller_id={"public_number": "02-2133-9999", "display_name": "서울시"})
    cid = effective_caller_id(None, device)
    assert cid is not None and cid.privacy == "none"
    trunk = load_config(ROOT / "config" / "b2bua.yaml").routing.trunks[0]
    pres = outbound(cid, trunk, _invite("01012345678", "<sip:u@198.18.0.7>"))
    assert _applied(pres).get("from") == '"서울시" <sip:+82221339999@192.0.2.1;user=phone>;tag=ours'
    assert pres.notice is None


def test_a_target_that_is_no_trunks_gateway_is_outside_and_never_sees_the_staff_member(tmp_path: Path) -> None:
    """Fail closed: a route straight to an address (no carrier trunk known for it) presents the department,
    or nobody; only the PBX's own gateways and registered staff devices are inside."""
    for name in ("b2bua.yaml", "holidays.yaml", "abuse_lexicon.yaml"):
        (tmp_path / name).write_bytes((ROOT / "config" / name).read_bytes())
    data = yaml.safe_load((ROOT / "config" / "routing.yaml").read_text())
    data["routes"].insert(0, {"name": "direct", "prefix": "09", "targets": ["sip:198.51.100.99:5060"]})
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    router = Router(load_config(tmp_path / "b2bua.yaml"), Registrar())
    route = router(_invite("0901234567", '"Kim Staff" <sip:2201@192.0.2.3>'), PBX, 0.0)
    assert isinstance(route, Route) and route.targets == ["sip:198.51.100.99:5060"]
    req = _applied(route.presentation[0], route.targets[0])
    assert req.get("from") == '"서울시 교통정책과" <sip:0221332200@192.0.2.1>;tag=ours'
    assert "0221332200" in req.get("p-asserted-identity", "") and not req.has("call-info")
    assert "Kim" not in str(req) and "2201" not in str(req)
    unknown = router(_invite("0901234567", '"Lee" <sip:9999@192.0.2.3>'), PBX, 1.0)
    assert isinstance(unknown, Route)
    req = _applied(unknown.presentation[0], unknown.targets[0])
    assert req.get("from") == '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=ours' and "Lee" not in str(req)
