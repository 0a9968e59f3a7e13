"""Unit tests for b2bua.sip.message, b2bua.sip.grammar and b2bua.sip.uri (RFC 3261 §7, §19, §20, §25)."""

from __future__ import annotations

import pytest

from b2bua.sip.errors import ParseError, SipError, TooLarge
from b2bua.sip.grammar import (
    format_params,
    is_token,
    parse_params,
    quote,
    read_quoted,
    split_commas,
    unescape,
)
from b2bua.sip.message import (
    COMPACT,
    MAX_BODY,
    MAX_HEADERS,
    MAX_LINE,
    PartialRequest,
    Request,
    Response,
    StreamFramer,
    Via,
    parse_message,
    token_list,
    validate_request,
    validate_response,
)
from b2bua.sip.uri import Address, SipUri

CRLF = "\r\n"

BASE_HEADERS = [
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
]


def raw(*headers: str, start: str = "INVITE sip:bob@biloxi.example.com SIP/2.0", body: bytes = b"",
        length: bool = True) -> bytes:
    """Build a message; Content-Length is added (correct) unless ``length`` is False."""
    lines = [start, *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8") + body


def invite(*extra: str, body: bytes = b"", drop: tuple[str, ...] = ()) -> bytes:
    headers = [h for h in BASE_HEADERS if h.split(":", 1)[0].lower() not in drop]
    return raw(*headers, *extra, body=body)


def response(*extra: str, start: str = "SIP/2.0 200 OK", body: bytes = b"") -> bytes:
    headers = [
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
    ]
    return raw(*headers, *extra, start=start, body=body)


SDP = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


# -- parsing and serialization ------------------------------------------------------------


class TestRoundTrip:
    def test_request_round_trip(self):
        data = invite("Content-Type: application/sdp", "X-Custom: a, b ;c", body=SDP)
        first = parse_message(data)
        assert isinstance(first, Request)
        again = parse_message(first.serialize())
        assert again.method == first.method == "INVITE"
        assert again.uri == first.uri == "sip:bob@biloxi.example.com"
        assert again.headers == first.headers
        assert again.body == first.body == SDP
        assert first.serialize() == data  # canonical input is reproduced byte for byte

    def test_response_round_trip(self):
        first = parse_message(response("Content-Type: application/sdp", body=SDP))
        assert isinstance(first, Response)
        again = parse_message(first.serialize())
        assert (again.status, again.reason) == (200, "OK")
        assert again.headers == first.headers
        assert again.body == SDP

    def test_empty_reason_phrase_keeps_the_separator(self):
        resp = parse_message(response(start="SIP/2.0 100 "))
        assert resp.reason == ""
        assert resp.serialize().startswith(b"SIP/2.0 100 \r\n")
        assert parse_message(resp.serialize()).reason == ""

    def test_content_length_is_recomputed(self):
        msg = parse_message(invite("Content-Type: application/sdp", body=SDP))
        msg.body = b"v=0\r\n"
        out = msg.serialize()
        assert out.count(b"Content-Length") == 1
        assert b"Content-Length: 5\r\n\r\nv=0\r\n" in out
        assert parse_message(out).body == b"v=0\r\n"

    def test_compact_content_length_is_replaced_by_one_correct_header(self):
        data = raw(*BASE_HEADERS, "l: 0", length=False)
        msg = parse_message(data)
        msg.body = b"hello"
        out = msg.serialize()
        assert b"\r\nl:" not in out
        assert out.endswith(b"Content-Length: 5\r\n\r\nhello")

    def test_content_length_added_when_missing(self):
        msg = parse_message(raw(*BASE_HEADERS, body=b"", length=False))
        assert b"Content-Length: 0\r\n\r\n" in msg.serialize()

    def test_built_message_serializes(self):
        req = Request("OPTIONS", "sip:carol@chicago.example.com")
        req.add("via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx")
        req.add("call-id", "abc")
        req.add("cseq", "1 OPTIONS")
        req.add("www-authenticate", 'Digest realm="x"')
        out = req.serialize().decode()
        assert out.startswith("OPTIONS sip:carol@chicago.example.com SIP/2.0\r\nVia: ")
        assert "\r\nCall-ID: abc\r\n" in out and "\r\nCSeq: 1 OPTIONS\r\n" in out
        assert "\r\nWWW-Authenticate: " in out
        assert out.endswith("Content-Length: 0\r\n\r\n")


class TestHeaderNames:
    @pytest.mark.parametrize("compact,key", sorted(COMPACT.items()))
    def test_compact_forms_expand(self, compact, key):
        for name in (compact, compact.upper()):
            msg = parse_message(raw("X-Before: 1", f"{name}: 0", length=False))
            assert msg.headers == [("x-before", "X-Before", "1"), (key, name, "0")]
            assert msg.get(key) == "0"

    def test_compact_forms_are_usable(self):
        data = raw(
            "v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
            "t: sip:bob@biloxi.example.com",
            "f: sip:alice@atlanta.example.com;tag=88",
            "i: cid-1",
            "CSeq: 1 OPTIONS",
            "m: <sip:alice@192.0.2.1>",
            "k: 100rel, timer",
            "c: text/plain",
            "l: 2",
            start="OPTIONS sip:bob@biloxi.example.com SIP/2.0",
            body=b"hi",
            length=False,
        )
        msg = parse_message(data)
        validate_request(msg)
        assert msg.call_id == "cid-1"
        assert msg.from_tag == "88"
        assert msg.to.uri == "sip:bob@biloxi.example.com"
        assert msg.top_via.branch == "z9hG4bK776asdhds"
        assert msg.get_all("contact") == ["<sip:alice@192.0.2.1>"]
        assert token_list(msg, "supported") == ["100rel", "timer"]
        assert msg.content_type == "text/plain"
        assert msg.body == b"hi"

    def test_names_are_case_insensitive_but_written_as_received(self):
        data = raw(
            "VIA: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "max-FORWARDS: 70",
            "tO: <sip:b@example.com>",
            "FROM: <sip:a@example.com>;tag=1",
            "call-id: x@y",
            "cSeQ: 1 OPTIONS",
            "X-Vendor-Thing: On",
            start="OPTIONS sip:b@example.com SIP/2.0",
        )
        msg = parse_message(data)
        validate_request(msg)
        assert msg.call_id == "x@y"
        assert msg.cseq == (1, "OPTIONS")
        assert msg.get("max-forwards") == "70"
        assert msg.get("x-vendor-thing") == "On"
        assert [h[0] for h in msg.headers][:6] == ["via", "max-forwards", "to", "from", "call-id", "cseq"]
        out = msg.serialize()
        for name in (b"VIA: ", b"max-FORWARDS: ", b"tO: ", b"FROM: ", b"call-id: ", b"cSeQ: ", b"X-Vendor-Thing: On"):
            assert b"\r\n" + name in out

    def test_space_before_colon(self):
        msg = parse_message(invite("Subject   : hello"))
        assert msg.get("subject") == "hello"
        assert [h[1] for h in msg.headers if h[0] == "subject"] == ["Subject"]

    @pytest.mark.parametrize("line", ["No colon here", "Bad Name: x", "<x>: y", ": empty name"])
    def test_bad_header_lines(self, line):
        with pytest.raises(ParseError):
            parse_message(invite(line))

    def test_header_order_and_repeats_are_kept(self):
        msg = parse_message(invite("Route: <sip:p1.example.com;lr>", "X-A: 1", "Route: <sip:p2.example.com;lr>"))
        assert msg.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        assert msg.get("route") == "<sip:p1.example.com;lr>"

    def test_repeated_single_value_headers_are_rejected(self):
        with pytest.raises(ParseError):
            parse_message(invite("Call-ID: second"))
        with pytest.raises(ParseError):
            parse_message(invite("i: second"))  # compact spelling of the same header
        with pytest.raises(ParseError):
            parse_message(invite("Max-Forwards: 5"))


class TestFolding:
    def test_folded_values_are_unfolded(self):
        data = raw(
            *BASE_HEADERS,
            "Subject: first",
            " second\t",
            "\tthird",
            "X-Long: a,",
            "     b",
        )
        msg = parse_message(data)
        assert msg.get("subject") == "first second\t third"
        assert msg.get("x-long") == "a, b"

    def test_folded_via_and_cseq(self):
        data = raw(
            "Via: SIP/2.0/UDP",
            "  h1.example.com;branch=z9hG4bK1,",
            "  SIP/2.0/TCP h2.example.com:5070",
            "  ;branch=z9hG4bK2",
            "Max-Forwards: 70",
            "To: <sip:b@example.com>",
            "From: <sip:a@example.com>",
            "  ;tag=1",
            "Call-ID: x",
            "CSeq: 7",
            "\tOPTIONS",
            start="OPTIONS sip:b@example.com SIP/2.0",
        )
        msg = parse_message(data)
        validate_request(msg)
        assert [(v.transport, v.host, v.port, v.branch) for v in msg.vias] == [
            ("UDP", "h1.example.com", None, "z9hG4bK1"),
            ("TCP", "h2.example.com", 5070, "z9hG4bK2"),
        ]
        assert msg.cseq == (7, "OPTIONS")
        assert msg.from_tag == "1"


class TestLists:
    def test_split_commas_respects_quotes_and_angle_brackets(self):
        value = '"Doe, John" <sip:jd@example.com;x=1>, <sip:a@b.example.com?h=1,2>,sip:c@d.example.com'
        assert split_commas(value) == [
            '"Doe, John" <sip:jd@example.com;x=1>',
            "<sip:a@b.example.com?h=1,2>",
            "sip:c@d.example.com",
        ]

    def test_split_commas_escaped_quote_inside_quotes(self):
        value = r'"a \", b" <sip:x@example.com>, "c\\" <sip:y@example.com>'
        assert split_commas(value) == [r'"a \", b" <sip:x@example.com>', r'"c\\" <sip:y@example.com>']

    def test_split_commas_keeps_empty_elements(self):
        assert split_commas("a,,b") == ["a", "", "b"]
        assert split_commas(" single ") == ["single"]

    def test_list_headers_are_split_and_others_not(self):
        msg = parse_message(invite(
            'Contact: "Doe, John" <sip:jd@example.com>, <sip:k@example.com>',
            "Allow: INVITE, ACK,BYE",
            "Subject: hello, world",
            "Accept: application/sdp;level=1, text/plain",
        ))
        contacts = msg.get_all("contact")
        assert contacts[1:] == ['"Doe, John" <sip:jd@example.com>', "<sip:k@example.com>"]
        assert Address.parse(contacts[1]).display == "Doe, John"
        assert token_list(msg, "allow") == ["invite", "ack", "bye"]
        assert msg.get_all("subject") == ["hello, world"]
        assert msg.get_all("accept") == ["application/sdp;level=1", "text/plain"]

    def test_pop_first_value(self):
        msg = parse_message(invite("Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>"))
        assert msg.pop_first_value("route") == "<sip:p1.example.com;lr>"
        assert msg.get_all("route") == ["<sip:p2.example.com;lr>"]
        assert msg.pop_first_value("route") == "<sip:p2.example.com;lr>"
        assert not msg.has("route")
        assert msg.pop_first_value("route") is None


class TestQuotedStrings:
    def test_read_quoted_with_escapes(self):
        text = r'"say \"hi\" \\ now" <sip:x@example.com>'
        content, end = read_quoted(text, 0)
        assert content == 'say "hi" \\ now'
        assert text[end:] == " <sip:x@example.com>"

    def test_unterminated_quoted_string(self):
        with pytest.raises(ParseError):
            read_quoted('"abc', 0)
        with pytest.raises(ParseError):
            read_quoted('"abc\\"', 0)

    def test_quote_round_trip(self):
        for text in ['plain', 'with "quotes"', "back\\slash", ""]:
            q = quote(text)
            assert read_quoted(q, 0) == (text, len(q))

    def test_display_name_with_escaped_quotes(self):
        addr = Address.parse(r'"The \"Boss\" \\ Ltd" <sip:boss@example.com>;tag=9')
        assert addr.display == 'The "Boss" \\ Ltd'
        assert addr.tag == "9"
        assert Address.parse(str(addr)) == addr

    def test_quoted_parameter_value(self):
        params = parse_params(';q=0.5; +sip.instance = "<urn:uuid:f81d4fae>" ;flag')
        assert params == {"q": "0.5", "+sip.instance": '"<urn:uuid:f81d4fae>"', "flag": None}

    def test_semicolon_inside_quoted_parameter(self):
        assert parse_params(';a="x;y";b=1') == {"a": '"x;y"', "b": "1"}

    def test_quoted_parameter_with_escaped_quote_round_trips(self):
        addr = Address.parse(r'<sip:a@example.com>;p="x\"y"')
        assert Address.parse(str(addr)).params == addr.params

    def test_garbage_after_quoted_parameter_is_rejected(self):
        with pytest.raises(ParseError):
            parse_params(';a="foo"bar')


class TestParams:
    def test_parse_params_whitespace_and_case(self):
        assert parse_params(" ; Transport = TCP ;LR; Maddr=10.0.0.1 ") == {
            "transport": "TCP", "lr": None, "maddr": "10.0.0.1",
        }

    @pytest.mark.parametrize("text", [";;", ";a=1;;b", ";=x", ";a=", "junk;a=1", ";a b=1"])
    def test_bad_params(self, text):
        with pytest.raises(ParseError):
            parse_params(text)

    def test_format_params(self):
        assert format_params({"a": "1", "lr": None}) == ";a=1;lr"
        assert format_params({}) == ""

    def test_is_token(self):
        assert is_token("INVITE") and is_token("z9hG4bK-.!%*_+`'~")
        assert not is_token("") and not is_token("a b") and not is_token("a@b")

    def test_unescape(self):
        assert unescape("%61lice%20x") == "alice x"
        assert unescape("100%") == "100%" and unescape("%zz") == "%zz"
        assert unescape("%2541") == "%41"  # never recursive


# -- Via, CSeq, mandatory headers ----------------------------------------------------------


class TestVia:
    def test_basic(self):
        v = Via.parse("SIP/2.0/udp PC33.Atlanta.example.com:5066;branch=z9hG4bK776asdhds;ttl=1")
        assert v.transport == "UDP"
        assert v.host == "pc33.atlanta.example.com"
        assert v.port == 5066
        assert v.sent_by == ("pc33.atlanta.example.com", 5066)
        assert v.branch == "z9hG4bK776asdhds"
        assert v.params["ttl"] == "1"
        assert str(v) == "SIP/2.0/UDP pc33.atlanta.example.com:5066;branch=z9hG4bK776asdhds;ttl=1"

    def test_ipv6_with_rport_and_received(self):
        v = Via.parse("SIP/2.0/TCP [2001:DB8::1]:5060;rport;received=2001:db8::9;branch=z9hG4bK1")
        assert v.host == "[2001:db8::1]"
        assert v.port == 5060
        assert v.params["rport"] is None
        assert v.params["received"] == "2001:db8::9"
        assert Via.parse(str(v)) == v

    def test_ipv6_without_port_and_filled_rport(self):
        v = Via.parse("SIP/2.0/UDP [::1];branch=z9hG4bKa;rport=5070;received=192.0.2.4")
        assert (v.host, v.port) == ("[::1]", None)
        assert v.params["rport"] == "5070"
        assert v.params["received"] == "192.0.2.4"

    def test_lws_everywhere(self):
        v = Via.parse("SIP / 2.0 / UDP   host.example.com : 5060 ; branch = z9hG4bK1")
        assert (v.transport, v.host, v.port, v.branch) == ("UDP", "host.example.com", 5060, "z9hG4bK1")

    def test_no_branch(self):
        assert Via.parse("SIP/2.0/UDP 192.0.2.1").branch is None

    @pytest.mark.parametrize("value", [
        "SIP/2.0/UDP host.example.com:65536;branch=z9hG4bK1",
        "SIP/2.0/UDP host.example.com:123456",
        "SIP/2.0 host.example.com",
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host.example.com",
        "SIP/2.0/UDP host.example.com;branch=",
        "SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK1",
        "SIP/2.0/UDP host_name.example.com",
    ])
    def test_bad_via(self, value):
        with pytest.raises(ParseError):
            Via.parse(value)

    def test_multiple_vias_across_headers(self):
        msg = parse_message(raw(
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP [::1]:5062;branch=z9hG4bK2",
            "v: SIP/2.0/TLS c.example.com;branch=z9hG4bK3",
            *BASE_HEADERS[1:],
        ))
        assert [v.host for v in msg.vias] == ["a.example.com", "[::1]", "c.example.com"]
        assert msg.top_via.branch == "z9hG4bK1"

    def test_vias_cache_is_invalidated(self):
        msg = parse_message(invite())
        assert msg.top_via.host == "pc33.atlanta.example.com"
        msg.insert("via", "SIP/2.0/UDP b2bua.example.com;branch=z9hG4bKnew")
        assert msg.top_via.host == "b2bua.example.com"
        assert msg.pop_first_value("via").endswith("z9hG4bKnew")
        assert msg.top_via.host == "pc33.atlanta.example.com"


def with_cseq(value: str) -> bytes:
    """The base INVITE with its CSeq header value replaced by ``value`` (str: may hold non-ASCII)."""
    return invite(drop=("cseq",)).replace(b"Content-Length", f"CSeq: {value}\r\nContent-Length".encode())


class TestCSeq:
    @pytest.mark.parametrize("value,expected", [
        ("0 INVITE", (0, "INVITE")),
        ("1 INVITE", (1, "INVITE")),
        ("00042   INVITE", (42, "INVITE")),
        (f"{2**31 - 1} INVITE", (2**31 - 1, "INVITE")),
    ])
    def test_valid(self, value, expected):
        msg = parse_message(with_cseq(value))
        assert msg.cseq == expected

    @pytest.mark.parametrize("value", [
        f"{2**31} INVITE", "99999999999 INVITE", "-1 INVITE", "1", "INVITE", "1INVITE", "1 INV@TE", "1.5 INVITE",
    ])
    def test_invalid(self, value):
        msg = parse_message(with_cseq(value))
        with pytest.raises(ParseError):
            _ = msg.cseq
        with pytest.raises(ParseError):
            validate_request(msg)

    def test_method_must_match(self):
        msg = parse_message(invite(drop=("cseq",)).replace(b"Content-Length", b"CSeq: 1 invite\r\nContent-Length"))
        assert msg.cseq == (1, "invite")
        with pytest.raises(ParseError):
            validate_request(msg)  # method names are case-sensitive (§7.1)

    def test_non_ascii_digits_rejected(self):
        msg = parse_message(with_cseq("\u0661 INVITE"))
        with pytest.raises(ParseError):
            _ = msg.cseq


class TestValidateRequest:
    def test_complete_request_passes(self):
        validate_request(parse_message(invite()))

    @pytest.mark.parametrize("missing", ["via", "cseq", "call-id", "from", "to"])
    def test_missing_mandatory_header(self, missing):
        msg = parse_message(invite(drop=(missing,)))
        with pytest.raises(ParseError):
            validate_request(msg)

    def test_missing_max_forwards_is_tolerated(self):
        validate_request(parse_message(invite(drop=("max-forwards",))))  # RFC 4475 §3.4.1

    @pytest.mark.parametrize("value", ["256", "abc", "-1", "", "1 2"])
    def test_bad_max_forwards(self, value):
        msg = parse_message(invite(f"Max-Forwards: {value}", drop=("max-forwards",)))
        with pytest.raises(ParseError):
            validate_request(msg)

    def test_empty_call_id(self):
        msg = parse_message(invite("Call-ID:", drop=("call-id",)))
        with pytest.raises(ParseError):
            validate_request(msg)

    def test_bad_contact_and_route(self):
        with pytest.raises(ParseError):
            validate_request(parse_message(invite("Route: <sip:p1.example.com;lr")))
        with pytest.raises(ParseError):
            validate_request(parse_message(invite('Contact: "unterminated <sip:x@example.com>', drop=("contact",))))

    def test_contact_star(self):
        validate_request(parse_message(invite("Contact: *", drop=("contact",))))

    def test_headers_in_request_uri(self):
        data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP",
                                b"INVITE sip:bob@biloxi.example.com?Route=x SIP")
        with pytest.raises(ParseError):
            validate_request(parse_message(data))

    def test_non_ascii_digit_max_forwards_is_a_parse_error(self):
        msg = parse_message(invite("Max-Forwards: \u00b2", drop=("max-forwards",)))
        with pytest.raises(ParseError):
            validate_request(msg)


class TestValidateResponse:
    def test_ok(self):
        validate_response(parse_message(response()))

    @pytest.mark.parametrize("start", ["SIP/2.0 700 Weird", "SIP/2.0 099 Low", "SIP/2.0 20 OK", "SIP/2.0 2000 OK"])
    def test_bad_status(self, start):
        with pytest.raises(SipError):
            validate_response(parse_message(response(start=start)))


class TestStartLine:
    @pytest.mark.parametrize("start", [
        "INVITE  sip:bob@biloxi.example.com SIP/2.0",
        "INVITE sip:bob@biloxi.example.com SIP/2.0 ",
        "INVITE <sip:bob@biloxi.example.com> SIP/2.0",
        "INVITE sip:bob@biloxi.example.com",
        "INV@TE sip:bob@biloxi.example.com SIP/2.0",
    ])
    def test_bad_request_line(self, start):
        with pytest.raises(ParseError) as info:
            parse_message(raw(*BASE_HEADERS, start=start))
        assert info.value.status == 400
        assert isinstance(info.value, PartialRequest) and info.value.is_request
        assert any(h[0] == "via" for h in info.value.headers)

    def test_unknown_version_is_505(self):
        with pytest.raises(SipError) as info:
            parse_message(raw(*BASE_HEADERS, start="INVITE sip:bob@biloxi.example.com SIP/3.0"))
        assert info.value.status == 505

    @pytest.mark.parametrize("kind", ["request", "response", "via"])
    def test_sip_version_is_case_insensitive(self, kind):
        if kind == "request":
            msg = parse_message(raw(*BASE_HEADERS, start="INVITE sip:bob@biloxi.example.com sip/2.0"))
            validate_request(msg)
        elif kind == "response":
            msg = parse_message(response(start="sip/2.0 200 OK"))
            assert isinstance(msg, Response)
            validate_response(msg)
        else:
            assert Via.parse("sip/2.0/udp h.example.com;branch=z9hG4bK1").transport == "UDP"


class TestLimits:
    def test_too_many_headers(self):
        extra = [f"X-H{i}: v" for i in range(MAX_HEADERS)]
        with pytest.raises(SipError) as info:
            parse_message(invite(*extra))
        assert info.value.status == 513

    def test_many_headers_within_limit(self):
        extra = [f"X-H{i}: v" for i in range(MAX_HEADERS - len(BASE_HEADERS) - 1)]
        msg = parse_message(invite(*extra))
        assert len(msg.headers) == MAX_HEADERS

    def test_line_too_long(self):
        with pytest.raises(SipError) as info:
            parse_message(invite("X-Long: " + "a" * MAX_LINE))
        assert info.value.status == 513

    def test_long_line_within_limit(self):
        value = "a" * (MAX_LINE - len("X-Long: "))
        assert parse_message(invite("X-Long: " + value)).get("x-long") == value

    def test_body_too_large(self):
        with pytest.raises(SipError) as info:
            parse_message(invite("Content-Type: text/plain", body=b"x" * (MAX_BODY + 1)))
        assert info.value.status == 513

    def test_datagram_too_large(self):
        with pytest.raises(SipError) as info:
            parse_message(invite() + b"x" * (2 * MAX_BODY + MAX_HEADERS * 256))
        assert info.value.status == 513


class TestDatagramFraming:
    def test_bytes_past_content_length_are_ignored(self):
        msg = parse_message(invite("Content-Type: text/plain", body=b"abc") + b"garbage\r\n")
        assert msg.body == b"abc"

    def test_missing_content_length_means_to_the_end(self):
        msg = parse_message(raw(*BASE_HEADERS, "Content-Type: text/plain", body=b"hello\r\n", length=False))
        assert msg.body == b"hello\r\n"

    def test_content_length_larger_than_body(self):
        data = raw(*BASE_HEADERS, "Content-Length: 10", body=b"abc", length=False)
        with pytest.raises(ParseError):
            parse_message(data)

    @pytest.mark.parametrize("value", ["-1", "abc", "1 2", "1234567890", ""])
    def test_bad_content_length(self, value):
        with pytest.raises(ParseError):
            parse_message(raw(*BASE_HEADERS, f"Content-Length: {value}", length=False))

    def test_multiple_content_length(self):
        with pytest.raises(ParseError):
            parse_message(raw(*BASE_HEADERS, "Content-Length: 0", "l: 0", length=False))

    def test_missing_content_length_on_stream(self):
        with pytest.raises(ParseError):
            parse_message(raw(*BASE_HEADERS, length=False), stream=True)

    def test_no_end_of_headers_on_stream(self):
        with pytest.raises(ParseError):
            parse_message(invite()[:-2], stream=True)

    def test_non_ascii_digit_content_length_is_a_parse_error(self):
        with pytest.raises(ParseError):
            parse_message(raw(*BASE_HEADERS, "Content-Length: \u00b2", length=False))


# -- stream framing ------------------------------------------------------------------------


class TestStreamFramer:
    def test_one_message(self):
        data = invite("Content-Type: application/sdp", body=SDP)
        f = StreamFramer()
        assert f.feed(data) == [data]
        assert parse_message(data, stream=True).body == SDP

    def test_split_across_feeds_byte_by_byte(self):
        data = invite("Content-Type: application/sdp", body=SDP)
        f = StreamFramer()
        out = []
        for i in range(len(data)):
            out += f.feed(data[i : i + 1])
            if i < len(data) - 1:
                assert out == []
        assert out == [data]

    def test_body_arrives_later(self):
        data = invite("Content-Type: application/sdp", body=SDP)
        cut = data.index(b"\r\n\r\n") + 4 + 10
        f = StreamFramer()
        assert f.feed(data[:cut]) == []
        assert f.feed(data[cut:]) == [data]

    def test_two_messages_in_one_feed(self):
        a = invite("Content-Type: application/sdp", body=SDP)
        b = response()
        f = StreamFramer()
        assert f.feed(a + b + a[:20]) == [a, b]
        assert f.feed(a[20:]) == [a]

    def test_compact_content_length(self):
        data = raw(*BASE_HEADERS, "c: text/plain", "l: 3", body=b"abc", length=False)
        assert StreamFramer().feed(data + data) == [data, data]

    def test_keepalive_pings_are_counted(self):
        data = invite()
        f = StreamFramer()
        assert f.feed(b"\r\n\r\n") == []
        assert f.pings == 1
        assert f.feed(b"\r\n\r\n" + data + b"\r\n\r\n\r\n\r\n") == [data]
        assert f.pings == 4

    def test_single_crlf_is_ignored_not_counted(self):
        data = invite()
        f = StreamFramer()
        assert f.feed(b"\r\n" + data) == [data]
        assert f.pings == 0

    def test_ping_split_across_reads(self):
        f = StreamFramer()
        f.feed(b"\r\n")
        f.feed(b"\r\n")
        assert f.pings == 1

    def test_missing_content_length(self):
        with pytest.raises(ParseError):
            StreamFramer().feed(raw(*BASE_HEADERS, length=False))

    @pytest.mark.parametrize("value", ["-5", "x", "12345678901"])
    def test_bad_content_length(self, value):
        with pytest.raises(ParseError):
            StreamFramer().feed(raw(*BASE_HEADERS, f"Content-Length: {value}", length=False))

    def test_oversized_header_section(self):
        f = StreamFramer(max_message=1000)
        with pytest.raises(TooLarge):
            f.feed(b"INVITE sip:x@example.com SIP/2.0\r\nX: " + b"a" * 2000)

    def test_oversized_message(self):
        f = StreamFramer(max_message=1000)
        with pytest.raises(TooLarge):
            f.feed(raw(*BASE_HEADERS, "Content-Length: 5000", length=False))


# -- URIs ----------------------------------------------------------------------------------


class TestSipUri:
    def test_full_sip_uri(self):
        u = SipUri.parse(
            "sip:alice:secretword@Atlanta.COM:5070;transport=TCP;lr;maddr=10.0.0.1?subject=x&priority=urgent"
        )
        assert u.scheme == "sip"
        assert u.user == "alice"
        assert u.password == "secretword"
        assert u.host == "atlanta.com"
        assert u.port == 5070
        assert u.params == {"transport": "TCP", "lr": None, "maddr": "10.0.0.1"}
        assert u.headers == "subject=x&priority=urgent"
        assert u.transport == "tcp"
        assert SipUri.parse(str(u)) == u

    def test_minimal(self):
        u = SipUri.parse("sip:example.com")
        assert (u.user, u.password, u.host, u.port, u.params, u.headers) == (None, None, "example.com", None, {}, None)
        assert u.transport == "udp"
        assert str(u) == "sip:example.com"

    def test_sips_and_scheme_case(self):
        u = SipUri.parse("SIPS:Bob@Biloxi.example.com")
        assert u.scheme == "sips"
        assert u.user == "Bob"  # userinfo is case-sensitive, kept as is
        assert u.transport == "tls"

    def test_tel(self):
        u = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com;ext=12")
        assert u.scheme == "tel"
        assert u.user == "+1-201-555-0123"
        assert u.params == {"phone-context": "example.com", "ext": "12"}
        assert str(u) == "tel:+1-201-555-0123;phone-context=example.com;ext=12"
        assert SipUri.parse("tel:911").user == "911"

    def test_user_phone(self):
        u = SipUri.parse("sip:+12125551212@server.phone2net.com;user=phone")
        assert u.user == "+12125551212" and u.params == {"user": "phone"}

    @pytest.mark.parametrize("text,host,port", [
        ("sip:alice@[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:alice@[2001:DB8::10]:5070;transport=tcp", "[2001:db8::10]", 5070),
        ("sip:[::1]:5061", "[::1]", 5061),
        ("sip:[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None),
        ("sip:alice@192.0.2.4:0", "192.0.2.4", 0),
        ("sip:alice@host.example.com:65535", "host.example.com", 65535),
    ])
    def test_hosts_and_ports(self, text, host, port):
        u = SipUri.parse(text)
        assert (u.host, u.port) == (host, port)

    @pytest.mark.parametrize("text", [
        "sip:alice@host:65536",
        "sip:alice@host:123456",
        "sip:alice@host:",
        "sip:alice@host:abc",
        "sip:alice@host:-1",
        "sip:alice@host:50 60",
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8::1]5060",
        "sip:alice@[2001:db8::1]:99999",
        "sip:alice@",
        "sip:@host.example.com",
        "sip:alice@ho_st.example.com",
        "sip:alice@host example.com",
        "sip:",
        "alice@example.com",
        "1sip:alice@example.com",
        ":alice@example.com",
    ])
    def test_bad_uris(self, text):
        with pytest.raises(ParseError):
            SipUri.parse(text)

    def test_percent_escapes_are_kept_raw(self):
        u = SipUri.parse("sip:%61lice%20x@atlanta.com;p=a%3Bb")
        assert u.user == "%61lice%20x"
        assert unescape(u.user) == "alice x"
        assert u.params == {"p": "a%3Bb"}
        assert str(u) == "sip:%61lice%20x@atlanta.com;p=a%3Bb"

    def test_user_part_with_semicolon_and_escaped_at(self):
        u = SipUri.parse("sip:user;par=u%40example.net@example.com")
        assert u.user == "user;par=u%40example.net"
        assert u.host == "example.com"
        assert u.params == {}

    def test_unknown_scheme_is_opaque(self):
        u = SipUri.parse("urn:service:sos")
        assert (u.scheme, u.opaque) == ("urn", "service:sos")
        assert str(u) == "urn:service:sos"
        assert SipUri.parse("soap.beep://192.0.2.103:3002").scheme == "soap.beep"


# RFC 3261 §19.1.4, the examples at the end of the section.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]

NOT_EQUIVALENT = [
    pytest.param("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", id="user-case"),
    pytest.param("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", id="port"),
    pytest.param("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", id="transport"),
    pytest.param("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp", id="port-transport"),
    pytest.param("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting", id="header"),
    pytest.param("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4", id="host-vs-address"),
]


class TestEquivalence:
    @pytest.mark.parametrize("a,b", EQUIVALENT)
    def test_equal(self, a, b):
        ua, ub = SipUri.parse(a), SipUri.parse(b)
        assert ua.equivalent(ub) and ub.equivalent(ua)

    @pytest.mark.parametrize("a,b", NOT_EQUIVALENT)
    def test_not_equal(self, a, b):
        ua, ub = SipUri.parse(a), SipUri.parse(b)
        assert not ua.equivalent(ub) and not ub.equivalent(ua)

    @pytest.mark.parametrize("a,b", [
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:a@h;maddr=10.0.0.1", "sip:a@h"),
        ("sip:a@h;ttl=1", "sip:a@h"),
        ("sip:a@h;method=INVITE", "sip:a@h"),
        ("sip:a@h;user=phone", "sip:a@h"),
        ("sip:a@h;maddr=10.0.0.1", "sip:a@h;maddr=10.0.0.2"),
        ("sip:%61@h", "sip:A@h"),
        ("sip:a@h", "tel:+1234"),
        ("sip:a@h", "sip:h"),
    ])
    def test_more_not_equal(self, a, b):
        assert not SipUri.parse(a).equivalent(SipUri.parse(b))
        assert not SipUri.parse(b).equivalent(SipUri.parse(a))

    @pytest.mark.parametrize("a,b", [
        ("sip:a@h;maddr=%31%30.0.0.1", "sip:a@H;MADDR=10.0.0.1"),
        ("sip:a@[2001:DB8::1]:5060", "sip:a@[2001:db8::1]:5060"),
        ("sip:a@h;lr", "sip:a@h"),
        ("urn:x:y", "urn:x:y"),
    ])
    def test_more_equal(self, a, b):
        assert SipUri.parse(a).equivalent(SipUri.parse(b))

    def test_password_is_compared(self):
        assert not SipUri.parse("sip:alice:one@atlanta.com").equivalent(SipUri.parse("sip:alice:two@atlanta.com"))


# -- name-addr / addr-spec ----------------------------------------------------------------


class TestAddress:
    def test_name_addr_with_quoted_display(self):
        a = Address.parse('"Alice Liddell" <sip:alice@atlanta.com;transport=tcp>;tag=1928301774;x=y')
        assert a.display == "Alice Liddell"
        assert a.uri == "sip:alice@atlanta.com;transport=tcp"
        assert a.params == {"tag": "1928301774", "x": "y"}
        assert a.tag == "1928301774"
        assert a.parsed_uri().params == {"transport": "tcp"}
        assert str(a) == '"Alice Liddell" <sip:alice@atlanta.com;transport=tcp>;tag=1928301774;x=y'

    @pytest.mark.parametrize("text,display", [
        ("Bob <sip:bob@biloxi.com>", "Bob"),
        ("A. G. Bell <sip:agb@bell-telephone.com>", "A. G. Bell"),
        ("caller<sip:caller@example.com>", "caller"),
        ('""<sip:x@example.com>', ""),
        ("<sip:x@example.com>", None),
    ])
    def test_display_names(self, text, display):
        assert Address.parse(text).display == display

    def test_addr_spec_params_belong_to_the_header(self):
        a = Address.parse("sip:alice@atlanta.com;tag=88;transport=tcp")
        assert a.display is None
        assert a.uri == "sip:alice@atlanta.com"
        assert a.params == {"tag": "88", "transport": "tcp"}
        assert str(a) == "<sip:alice@atlanta.com>;tag=88;transport=tcp"

    def test_name_addr_params_inside_brackets_belong_to_the_uri(self):
        a = Address.parse("<sip:alice@atlanta.com;tag=88>")
        assert a.tag is None
        assert a.parsed_uri().params == {"tag": "88"}

    def test_lws_around_params(self):
        a = Address.parse("  <sip:a@example.com> ; tag = abc ;  expires=60 ")
        assert a.params == {"tag": "abc", "expires": "60"}

    def test_other_schemes(self):
        assert Address.parse("tel:+1234;tag=5").params == {"tag": "5"}
        assert Address.parse("<urn:service:sos>").uri == "urn:service:sos"

    def test_str_round_trip(self):
        for text in ['"A \\"q\\"" <sip:a@example.com>;tag=1', "Bob <sip:b@example.com>", "sip:c@example.com;tag=2"]:
            a = Address.parse(text)
            assert Address.parse(str(a)) == a

    @pytest.mark.parametrize("text", [
        "",
        "   ",
        '"Alice <sip:alice@atlanta.com>',
        '"Alice" sip:alice@atlanta.com',
        "<sip:alice@atlanta.com",
        "< sip:alice@atlanta.com >",
        "<>",
        "Bell, Alexander <sip:a.g.bell@example.com>",
        "sip:alice@atlanta.com?Route=x",
        "sip:alice@atlanta.com, sip:bob@biloxi.com",
        "Alice sip:alice@atlanta.com",
        "<alice>",
        "<sip:a@example.com>;;tag=1",
        "<sip:a@example.com>junk",
    ])
    def test_invalid(self, text):
        with pytest.raises(ParseError):
            Address.parse(text)

    def test_from_to_views(self):
        msg = parse_message(invite())
        assert msg.from_.display == "Alice"
        assert msg.from_tag == "1928301774"
        assert msg.to.display == "Bob"
        assert msg.to_tag is None
        msg.set("to", "Bob <sip:bob@biloxi.example.com>;tag=zz")
        assert msg.to_tag == "zz"  # cache invalidated by set()


def test_header_names_an_outsider_makes_up_never_grow_the_name_memo() -> None:
    from b2bua.sip import message

    base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n" \
           "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
    for i in range(3 * message._NAMES_MAX):
        msg = parse_message(f"{base}X-Made-Up-{i} : v{i}\r\nContent-Length: 0\r\n\r\n".encode())
        assert msg.get(f"x-made-up-{i}") == f"v{i}"  # still parsed right on the slow path
    assert len(message._NAMES) <= message._NAMES_MAX
    # a name seen with and without space before the colon, remembered or not, is one header
    msg = parse_message(f"{base}Subject : one\r\ns: two\r\nContent-Length: 0\r\n\r\n".encode())
    assert msg.get_all("subject") == ["one", "two"]
    with pytest.raises(ParseError):
        parse_message(f"{base}Bad Name: x\r\nContent-Length: 0\r\n\r\n".encode())
    with pytest.raises(ParseError):  # a bad name is never remembered as good
        parse_message(f"{base}Bad Name: x\r\nContent-Length: 0\r\n\r\n".encode())


def test_parameter_names_an_outsider_makes_up_never_grow_the_parameter_memo() -> None:
    from b2bua.sip import grammar
    from b2bua.sip.grammar import parse_params

    for i in range(3 * grammar._PARAM_NAMES_MAX):
        assert parse_params(f";Made-Up-{i}=v{i};TAG=t") == {f"made-up-{i}": f"v{i}", "tag": "t"}
    assert len(grammar._PARAM_NAMES) <= grammar._PARAM_NAMES_MAX
    assert parse_params("; Branch = z9 ;lr") == {"branch": "z9", "lr": None}  # spaces: the slow path, same
    for _ in range(2):  # a bad name is never remembered as good
        with pytest.raises(ParseError):
            parse_params(";bad name=x")
        with pytest.raises(ParseError):
            parse_params(";tag=")
