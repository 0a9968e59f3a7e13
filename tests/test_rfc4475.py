"""RFC 4475 torture messages through the parser, the validators and the UAS checks.

Every ``.dat`` file of the RFC 4475 archive is listed in ``CASES`` with the outcomes
that the folder's INDEX.md allows. A message is run the way the stack runs a UDP
datagram: ``parse_message`` (datagram mode), then ``validate_request`` /
``validate_response``, then for requests ``check_request(..., routed=True)``.

Outcomes:

* ``PASS``          -- parsed, validated and (requests) ``check_request`` returned None
* ``("raise", n)``  -- a :class:`SipError` with ``.status == n`` was raised (the caller answers n)
* ``("reject", n)`` -- ``check_request`` answered with status n
* ``DISCARD``       -- a response that raised :class:`SipError` (it is dropped, never answered)

Any other exception is a crash and fails the test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from b2bua.sip.auth import DigestChallenger
from b2bua.sip.errors import ParseError, SipError, VersionNotSupported
from b2bua.sip.grammar import unescape
from b2bua.sip.message import (
    PartialRequest,
    Request,
    Response,
    parse_message,
    token_list,
    validate_request,
    validate_response,
)
from b2bua.sip.stack import make_response
from b2bua.sip.uas import UasPolicy, check_request
from b2bua.sip.uri import Address, SipUri

#: the vectors are in the repository (tests/data/rfc4475, with their SOURCES.md); RFC4475_DIR points elsewhere
_DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "rfc4475"
DATA_DIR = Path(os.environ["RFC4475_DIR"]) if os.environ.get("RFC4475_DIR") else _DEFAULT_DIR

if not DATA_DIR.is_dir():
    raise RuntimeError(f"RFC 4475 test vectors not found: {DATA_DIR} is not a directory")

PASS = "pass"
DISCARD = "discard"


def raise_(status: int = 400) -> tuple[str, int]:
    return ("raise", status)


def reject(status: int) -> tuple[str, int]:
    return ("reject", status)


@dataclass
class Result:
    outcome: object
    message: Request | Response | None = None
    answer: Response | None = None
    error: SipError | None = None


def load(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def run(data: bytes, *, routed: bool = True) -> Result:
    """Process one datagram like the stack does; only SipError may escape the parser."""
    msg: Request | Response | None = None
    try:
        msg = parse_message(data)
        if isinstance(msg, Request):
            validate_request(msg)
        else:
            validate_response(msg)
    except SipError as err:
        if msg is not None and isinstance(msg, Response):
            return Result(DISCARD, msg, error=err)
        if isinstance(err, PartialRequest) and not err.is_request:
            return Result(DISCARD, None, error=err)
        if msg is None and data.startswith(b"SIP/"):
            return Result(DISCARD, None, error=err)
        return Result(raise_(err.status), msg, error=err)
    if isinstance(msg, Response):
        return Result(PASS, msg)
    answer = check_request(msg, UasPolicy(), routed=routed, to_tag="x")
    if answer is None:
        return Result(PASS, msg)
    return Result(reject(answer.status), msg, answer=answer)


# -- detail checks, one per interesting file -------------------------------------------


def _wsinv(r: Result) -> None:
    m = r.message
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    # three Via values: one folded "Via  :" header and a compact "v:" with two values
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.cseq == (9, "INVITE")
    assert int(m.get("max-forwards")) == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.to.uri == "sip:vivekg@chair-dnrc.example.com"
    assert m.to_tag == "1918181833n"
    assert m.from_.uri == "sip:jdrosen@example.com"
    assert m.from_.display == 'J Rosenberg \\"'
    assert m.from_tag == "98asjd8"
    contacts = [Address.parse(c) for c in m.get_all("contact")]
    assert len(contacts) == 1
    c = contacts[0]
    assert c.display == 'Quoted string ""'
    assert c.uri == "sip:jdrosen@example.com"
    assert c.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.get("subject") == ""  # "s :" with an empty value
    assert m.get("newfangledheader") == "newfangled value continued newfangled value"
    assert m.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    names = {h[0]: h[1] for h in m.headers}
    assert names["newfangledheader"] == "NewFangledHeader"
    assert names["unknownheaderwithunusualvalue"] == "UnknownHeaderWithUnusualValue"
    assert names["max-forwards"] == "MaX-fOrWaRdS"
    assert m.get_all("route") == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    route = SipUri.parse(Address.parse(m.get("route")).uri)
    assert route.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert m.content_type == "application/sdp"
    assert len(m.body) == 150
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"a=rtpmap:31 LPC\r\n")


def _intmeth(r: Result) -> None:
    m = r.message
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq == (139122385, m.method)
    uri = SipUri.parse(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    ext = [h for h in m.headers if h[1].startswith("extensionHeader")]
    assert ext == [("extensionheader-!.%*+_`'~", "extensionHeader-!.%*+_`'~", "\ufeff大停電")]
    # unknown method: 501 with Allow (§8.2.1)
    assert r.answer.get("allow")


def _esc01(r: Result) -> None:
    m = r.message
    ruri = SipUri.parse(m.uri)
    assert ruri.host == "example.net"
    assert unescape(ruri.user) == "sips:user@example.com"
    assert m.to.parsed_uri().equivalent(SipUri.parse("sip:user@example.com"))
    assert not m.to.parsed_uri().equivalent(SipUri.parse("sip:User@example.com"))
    assert m.from_.parsed_uri().equivalent(SipUri.parse("sip:I%20have%20spaces@example.net"))
    assert unescape(m.from_.parsed_uri().user) == "I have spaces"
    contact = Address.parse(m.get("contact")).parsed_uri()
    # RFC 4475 §3.1.1.3: the name parameter is "value%41" after (non-recursive) unescaping
    assert contact.equivalent(SipUri.parse("sip:caller@host5.example.net;lr;name=value%2541"))
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"  # compact "C:"
    assert len(m.body) == 150


def _escnull(r: Result) -> None:
    m = r.message
    assert m.method == "REGISTER"
    assert unescape(m.to.parsed_uri().user) == "null-\x00-null"
    users = [unescape(Address.parse(c).parsed_uri().user) for c in m.get_all("contact")]
    assert users == ["\x00", "\x00\x00"]


def _esc02(r: Result) -> None:
    m = r.message
    assert m.method == "RE%47IST%45R"  # not REGISTER: methods are not unescaped
    assert m.to.display == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    # "C%6Fntact" is an unknown header, not a Contact
    assert [Address.parse(c).uri for c in m.get_all("contact")] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert m.get("c%6fntact") == "<sip:alias2@host2.example.com>"
    assert r.answer.get("allow")


def _lwsdisp(r: Result) -> None:
    assert r.message.from_.display == "caller"
    assert r.message.from_.uri == "sip:caller@example.com"


def _longreq(r: Result) -> None:
    m = r.message
    long = "long" * 20
    assert m.to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    to_uri = m.to.parsed_uri()
    assert to_uri.port == 6000
    assert to_uri.params["unknownparam1"] == f"very{long}value"
    assert to_uri.params["longparam" + "name" * 25] == "shortvalue"
    assert f"very{'long' * 25}parametername" + "withnovalue" in to_uri.params
    caller = "amazinglylongcallername" * 5
    assert m.from_.parsed_uri().user == caller
    assert len(m.from_tag) == 155
    assert m.from_tag.startswith("1298298298") and m.from_tag.endswith("2982424")
    assert m.from_.params["unknownheaderparam" + "name" * 20] == "unknowheaderparam" + "value" * 15
    assert "unknownvaluelessparam" + "nameparam" * 9 + "name" in m.from_.params
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    name = "Unknown-" + "Long" * 20 + "-Name"
    hdr = [h for h in m.headers if h[1] == name]
    assert hdr and hdr[0][2] == (
        f"unknown-{long}-value; unknown-{long}-parameter-name = unknown-{long}-parameter-value"
    )
    assert len(m.vias) == 34
    assert [v.host for v in m.vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert m.vias[-1].params["received"] == "192.0.2.5"
    assert m.vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert Address.parse(m.get("contact")).parsed_uri().user == caller
    assert len(m.body) == 150


def _dblreq(r: Result) -> None:
    m = r.message
    assert m.method == "REGISTER"
    assert m.body == b""  # Content-Length: 0; the INVITE that follows is ignored
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.cseq == (8, "REGISTER")
    assert len(m.vias) == 1
    assert b"INVITE" not in m.serialize()


def _semiuri(r: Result) -> None:
    m = r.message
    uri = SipUri.parse(m.uri)
    assert uri.user == "user;par=u%40example.net"
    assert unescape(uri.user) == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}
    assert m.get_all("accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed",
        "multipart/signed", "message/sip", "message/sipfrag",
    ]


def _transports(r: Result) -> None:
    vias = r.message.vias
    assert [v.transport for v in vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [v.host for v in vias] == [f"t{n}.example.com" for n in range(1, 6)]


def _mpart01(r: Result) -> None:
    m = r.message
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553
    if r.answer is not None:
        assert r.answer.get("accept")


def _unreason(r: Result) -> None:
    m = r.message
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def _noreason(r: Result) -> None:
    assert r.message.status == 100
    assert r.message.reason == ""


def _badbranch(r: Result) -> None:
    assert r.message.top_via.branch == "z9hG4bK"


def _unksm2(r: Result) -> None:
    m = r.message
    assert m.to.uri == "isbn:2983792873"
    assert m.from_.uri == "http://www.example.com"
    assert Address.parse(m.get("contact")).uri == "name:John_Smith"
    assert SipUri.parse(m.to.uri).opaque == "2983792873"


def _bext01(r: Result) -> None:
    a = r.answer
    assert a.status == 420
    unsupported = token_list(a, "unsupported")
    for tag in ("nothingSupportsThis", "nothingSupportsThisEither"):
        assert tag.lower() in unsupported  # option tags are tokens: case-insensitive (§7.3.1)
    assert a.to_tag == "x"
    assert a.cseq == (8, "OPTIONS")


def _invut(r: Result) -> None:
    assert r.answer.status == 415
    assert r.answer.get("accept") == "application/sdp"


def _regaut01(r: Result) -> None:
    m = r.message
    assert m.get("authorization") == "NoOneKnowsThisScheme opaque-data=here"
    challenger = DigestChallenger("example.com", lambda user: "secret")
    result = challenger.verify(m, 1000.0)
    assert not result.ok  # unknown scheme: no Digest credentials, so the registrar challenges
    assert challenger.challenge(1000.0)


def _bcast(r: Result) -> None:
    if r.message is not None:
        assert [v.host for v in r.message.vias] == ["192.0.2.198", "255.255.255.255"]


def _cparam01(r: Result) -> None:
    c = Address.parse(r.message.get("contact"))
    assert c.uri == "sip:+19725552222@gw1.example.net"
    assert c.params == {"unknownparam": None}  # addr-spec: the parameter belongs to the header


def _cparam02(r: Result) -> None:
    c = Address.parse(r.message.get("contact"))
    assert c.params == {}
    assert c.parsed_uri().params == {"unknownparam": None}  # inside <>: a URI parameter


def _regescrt(r: Result) -> None:
    if r.message is not None and r.outcome == PASS:
        c = Address.parse(r.message.get("contact")).parsed_uri()
        assert c.headers == "Route=%3Csip:sip.example.com%3E"


def _inv2543(r: Result) -> None:
    if r.outcome == PASS:
        m = r.message
        assert m.top_via.branch is None
        assert m.from_tag is None
        assert m.get("max-forwards") is None
        assert m.body.startswith(b"v=0\r\n")


def _badvers(r: Result) -> None:
    assert r.error.status == 505
    assert r.error.reason == VersionNotSupported.reason


def _rejected_with_to_tag(r: Result) -> None:
    assert r.answer.to_tag == "x"
    assert r.answer.call_id == r.message.call_id


@dataclass
class Case:
    file: str
    kind: str  # "request" or "response"
    allowed: frozenset
    check: Callable[[Result], None] | None = None
    marks: tuple = ()

    def param(self):
        return pytest.param(self, id=self.file, marks=list(self.marks))


def case(file: str, kind: str, *allowed, check=None, marks=()) -> Case:
    return Case(file, kind, frozenset(allowed), check, tuple(marks))


REQ, RESP = "request", "response"

CASES = [
    # 3.1.1 valid messages
    case("wsinv.dat", REQ, PASS, check=_wsinv),
    case("intmeth.dat", REQ, reject(501), check=_intmeth),
    case("esc01.dat", REQ, PASS, check=_esc01),
    case("escnull.dat", REQ, PASS, check=_escnull),
    case("esc02.dat", REQ, reject(501), check=_esc02),
    case("lwsdisp.dat", REQ, PASS, check=_lwsdisp),
    case("longreq.dat", REQ, PASS, check=_longreq),
    case("dblreq.dat", REQ, PASS, check=_dblreq),
    case("semiuri.dat", REQ, PASS, check=_semiuri),
    case("transports.dat", REQ, PASS, check=_transports),
    case("mpart01.dat", REQ, PASS, reject(415), check=_mpart01),
    case("unreason.dat", RESP, PASS, check=_unreason),
    case("noreason.dat", RESP, PASS, check=_noreason),
    # 3.1.2 invalid messages
    case("badinv01.dat", REQ, raise_(400)),
    case("clerr.dat", REQ, raise_(400)),
    case("ncl.dat", REQ, raise_(400)),
    case("scalar02.dat", REQ, raise_(400)),
    case("scalarlg.dat", RESP, DISCARD),
    case("quotbal.dat", REQ, raise_(400)),
    case("ltgtruri.dat", REQ, raise_(400)),
    case("lwsruri.dat", REQ, raise_(400)),
    case("lwsstart.dat", REQ, raise_(400)),
    case("trws.dat", REQ, raise_(400), PASS),
    case("escruri.dat", REQ, raise_(400), PASS),
    case("baddate.dat", REQ, raise_(400), PASS),
    case("regbadct.dat", REQ, raise_(400)),
    case("badaspec.dat", REQ, raise_(400), PASS),
    case("baddn.dat", REQ, raise_(400), PASS),
    case("badvers.dat", REQ, raise_(505), check=_badvers),
    case("mismatch01.dat", REQ, raise_(400)),
    case("mismatch02.dat", REQ, raise_(400)),
    case("bigcode.dat", RESP, DISCARD),
    # 3.2 transaction layer
    case("badbranch.dat", REQ, PASS, check=_badbranch),
    # 3.3 application layer
    case("insuf.dat", REQ, raise_(400)),
    case("unkscm.dat", REQ, reject(416), check=_rejected_with_to_tag),
    case("novelsc.dat", REQ, reject(416), check=_rejected_with_to_tag),
    case("unksm2.dat", REQ, PASS, check=_unksm2),
    case("bext01.dat", REQ, reject(420), check=_bext01),
    case("invut.dat", REQ, reject(415), check=_invut),
    case("regaut01.dat", REQ, PASS, check=_regaut01),
    case("multi01.dat", REQ, raise_(400)),
    case("mcl01.dat", REQ, raise_(400)),
    case("bcast.dat", RESP, PASS, DISCARD, check=_bcast),
    case("zeromf.dat", REQ, reject(483), check=_rejected_with_to_tag),
    case("cparam01.dat", REQ, PASS, check=_cparam01),
    case("cparam02.dat", REQ, PASS, check=_cparam02),
    case("regescrt.dat", REQ, raise_(400), PASS, check=_regescrt),
    case("sdp01.dat", REQ, reject(406), check=_rejected_with_to_tag),
    # 3.4 backward compatibility
    case("inv2543.dat", REQ, PASS, raise_(400), check=_inv2543),
    # not a numbered section
    case("test.dat", REQ, raise_(400)),
]

INDEX_ROW = re.compile(r"^\|\s*([\w.-]+\.dat)\s*\|", re.M)


def test_table_covers_every_file() -> None:
    listed = [c.file for c in CASES]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    present = sorted(p.name for p in DATA_DIR.glob("*.dat"))
    assert sorted(listed) == present, (
        f"missing from CASES: {sorted(set(present) - set(listed))}; "
        f"not in the folder: {sorted(set(listed) - set(present))}"
    )


def test_table_matches_index_md() -> None:
    index = DATA_DIR / "INDEX.md"
    assert index.exists(), f"{index}: the vectors' index is missing"
    rows = INDEX_ROW.findall(index.read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(c.file for c in CASES)


@pytest.mark.parametrize("tc", [c.param() for c in CASES])
def test_torture_message(tc: Case) -> None:
    data = load(tc.file)
    result = run(data)
    assert result.outcome in tc.allowed, (
        f"{tc.file}: got {result.outcome!r} ({result.error!r}), INDEX.md allows {sorted(map(str, tc.allowed))}"
    )
    if result.message is not None:
        expected_type = Request if tc.kind == REQ else Response
        assert isinstance(result.message, expected_type)
    if isinstance(result.outcome, tuple) and result.outcome[0] == "raise":
        status = result.outcome[1]
        assert isinstance(result.error, ParseError if status == 400 else SipError)
        assert result.error.status == status
    if tc.check is not None:
        tc.check(result)


@pytest.mark.parametrize("tc", [c.param() for c in CASES if c.kind == REQ])
def test_failed_requests_can_still_be_answered(tc: Case) -> None:
    """A request that fails after its headers were split can be answered (§8.2.6.2)."""
    result = run(load(tc.file))
    if not isinstance(result.error, PartialRequest):
        return
    resp = make_response(None, result.error.status, headers=result.error.headers, to_tag="x")
    assert resp.status == result.error.status
    assert resp.get_all("via")  # copied so the answer can be routed back


@pytest.mark.parametrize("tc", [c.param() for c in CASES if PASS in c.allowed])
def test_valid_messages_round_trip(tc: Case) -> None:
    """serialize() of a parsed message parses back to the same headers and body."""
    try:
        first = parse_message(load(tc.file))
        if isinstance(first, Request):
            validate_request(first)
    except SipError:
        return  # a permitted 400 (the row also allows PASS): nothing to round-trip
    again = parse_message(first.serialize())
    strip = lambda m: [h for h in m.headers if h[0] != "content-length"]  # noqa: E731
    assert strip(again) == strip(first)
    assert again.body == first.body
    assert int(again.get("content-length")) == len(first.body)
    if isinstance(first, Request):
        assert (again.method, again.uri) == (first.method, first.uri)
    else:
        assert (again.status, again.reason) == (first.status, first.reason)


def test_zeromf_options_max_forwards_zero() -> None:
    """RFC 4475 §3.3.11: never forward with Max-Forwards 0, but the endpoint may answer OPTIONS."""
    data = load("zeromf.dat")
    local = run(data, routed=False)
    assert local.outcome == PASS
    assert local.message.method == "OPTIONS"
    assert local.message.get("max-forwards") == "0"
    routed = run(data, routed=True)
    assert routed.outcome == reject(483)
    assert routed.answer.reason == "Too Many Hops"


def test_zeromf_as_invite_is_refused_when_routed() -> None:
    data = load("zeromf.dat").replace(b"OPTIONS", b"INVITE")
    assert run(data, routed=True).outcome == reject(483)
    assert run(data, routed=False).outcome == PASS


def test_bext01_proxy_require_alone_is_rejected_like_require() -> None:
    """The element checks Proxy-Require too (it routes requests on, §16.3 step 5)."""
    data = load("bext01.dat").replace(
        b"Require: nothingSupportsThis, nothingSupportsThisEither\r\n", b""
    )
    result = run(data)
    assert result.outcome == reject(420)
    assert token_list(result.answer, "unsupported") == [
        "noproxiessupportthis", "nordoanyproxiessupportthis",
    ]


def test_bext01_ack_is_not_refused_for_require() -> None:
    data = load("bext01.dat").replace(b"OPTIONS", b"ACK")
    ack = parse_message(data)
    validate_request(ack)
    assert check_request(ack, UasPolicy(allow=("ACK",)), routed=True, to_tag="x") is None


def test_esc01_escaped_parameter_is_not_unescaped_twice() -> None:
    m = parse_message(load("esc01.dat"))
    contact = Address.parse(m.get("contact")).parsed_uri()
    assert not contact.equivalent(SipUri.parse("sip:caller@host5.example.net;lr;name=valueA"))


def test_every_file_processes_without_crashing() -> None:
    """No torture message may raise anything but SipError (INDEX.md: never crash)."""
    for path in sorted(DATA_DIR.glob("*.dat")):
        for routed in (True, False):
            run(path.read_bytes(), routed=routed)
