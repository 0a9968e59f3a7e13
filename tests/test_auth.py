"""Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)."""

from __future__ import annotations

import pytest

from b2bua.sip.auth import (
    AuthResult,
    DigestChallenger,
    answer_challenge,
    digest_response,
    parse_auth_header,
)
from b2bua.sip.errors import ParseError
from b2bua.sip.message import Request, Response, parse_message

REALM = "b2bua.example.com"
USERS = {"alice": "s3cret", "bob": "hunter2"}
T0 = 1000.0


def make_request(method: str = "REGISTER", uri: str = "sip:b2bua.example.com",
                 extra: str = "") -> Request:
    raw = (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKauth1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@b2bua.example.com>;tag=a1\r\n"
        "To: <sip:alice@b2bua.example.com>\r\n"
        "Call-ID: auth-test-1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def challenge_response(req: Request, values: list[str], status: int = 401) -> Response:
    resp = Response(status, "Unauthorized" if status == 401 else "Proxy Authentication Required")
    key = "www-authenticate" if status == 401 else "proxy-authenticate"
    for v in values:
        resp.add(key, v)
    return resp


def challenger(**kw) -> DigestChallenger:
    kw.setdefault("secret", b"k" * 32)
    return DigestChallenger(REALM, USERS.get, **kw)


def authorized(ch: DigestChallenger, req: Request, now: float = T0, *, user: str = "alice",
               password: str | None = None, nc: int = 1, status: int = 401) -> Request:
    """Challenge at ``now``, answer it and put the credentials in ``req``."""
    resp = challenge_response(req, ch.challenge(now), status)
    answer = answer_challenge(req, resp, user, USERS[user] if password is None else password, nc=nc)
    assert answer is not None
    req.add(*answer)
    return req


# -- known vectors -------------------------------------------------------------------------

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


@pytest.mark.parametrize("algorithm, expected", [
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
])
def test_rfc7616_section_3_9_1(algorithm: str, expected: str) -> None:
    got = digest_response(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
                          "/dir/index.html", RFC7616_NONCE, qop="auth", nc="00000001",
                          cnonce=RFC7616_CNONCE)
    assert got == expected


def test_rfc2617_section_3_5() -> None:
    got = digest_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                          "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth",
                          nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_form_without_qop() -> None:
    got = digest_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                          "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093")
    assert got == "670fd8c2df070c60b045671b8b24ff02"


def test_answer_rfc7616_challenge_picks_sha256() -> None:
    """The RFC 7616 §3.9.1 challenge pair: MD5 listed first, SHA-256 still wins."""
    req = Request("GET", "/dir/index.html")
    resp = challenge_response(req, [
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"',
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"',
    ])
    key, value = answer_challenge(req, resp, "Mufasa", "Circle of Life", cnonce=RFC7616_CNONCE)
    assert key == "authorization"
    [(scheme, params)] = parse_auth_header(value)
    assert scheme == "Digest"
    assert params == {
        "username": "Mufasa", "realm": "http-auth@example.org", "nonce": RFC7616_NONCE,
        "uri": "/dir/index.html", "algorithm": "SHA-256", "cnonce": RFC7616_CNONCE, "qop": "auth",
        "nc": "00000001", "opaque": RFC7616_OPAQUE,
        "response": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    }


# -- header parsing --------------------------------------------------------------------------

def test_parse_quoted_commas_and_escapes() -> None:
    [(scheme, params)] = parse_auth_header(
        'Digest realm="a\\"b, c", qop="auth,auth-int" ,nonce=abc, algorithm=MD5-sess')
    assert scheme == "Digest"
    assert params == {"realm": 'a"b, c', "qop": "auth,auth-int", "nonce": "abc",
                      "algorithm": "MD5-sess"}


def test_parse_several_challenges_in_one_value() -> None:
    got = parse_auth_header('Digest realm="x", nonce="1", Other foo=bar, Digest realm="y", nonce="2"')
    assert [s for s, _ in got] == ["Digest", "Other", "Digest"]
    assert got[2][1] == {"realm": "y", "nonce": "2"}


@pytest.mark.parametrize("bad", ['Digest realm="x', 'realm="x"', 'Digest realm="x" nonce="y"',
                                 'Digest realm="x", realm="y"'])
def test_parse_rejects_bad_syntax(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_auth_header(bad)


# -- challenges ------------------------------------------------------------------------------

def test_challenge_sha256_first_and_stale_flag() -> None:
    ch = challenger(algorithms=("MD5", "SHA-256"))
    values = ch.challenge(T0, stale=True)
    parsed = [parse_auth_header(v)[0][1] for v in values]
    assert [p["algorithm"] for p in parsed] == ["SHA-256", "MD5"]
    assert all(p["realm"] == REALM and p["qop"] == "auth" and p["stale"] == "true" for p in parsed)
    assert parsed[0]["nonce"] == parsed[1]["nonce"]
    assert "stale" not in parse_auth_header(ch.challenge(T0)[0])[0][1]


def test_nonces_differ() -> None:
    ch = challenger()
    assert ch.make_nonce(T0) != ch.make_nonce(T0)


def test_unsupported_algorithm_config() -> None:
    with pytest.raises(ValueError):
        challenger(algorithms=("SHA-1",))


# -- verification ------------------------------------------------------------------------------

def test_round_trip_sha256() -> None:
    ch = challenger()
    req = authorized(ch, make_request())
    assert "algorithm=SHA-256" in req.get("authorization")
    assert ch.verify(req, T0 + 1) == AuthResult(True, "alice", False, "ok")


def test_round_trip_md5_only() -> None:
    ch = challenger(algorithms=("MD5",))
    req = authorized(ch, make_request("INVITE", "sip:bob@b2bua.example.com"))
    assert "algorithm=MD5" in req.get("authorization")
    assert ch.verify(req, T0).ok


@pytest.mark.parametrize("algorithm", ["SHA-256-sess", "MD5-sess"])
def test_round_trip_sess(algorithm: str) -> None:
    ch = challenger(algorithms=(algorithm,))
    req = authorized(ch, make_request())
    assert f"algorithm={algorithm}" in req.get("authorization")
    assert ch.verify(req, T0).ok


def test_round_trip_proxy_407() -> None:
    ch = challenger()
    req = authorized(ch, make_request("INVITE", "sip:bob@b2bua.example.com"), status=407)
    assert req.get("authorization") is None
    assert not ch.verify(req, T0).ok
    assert ch.verify(req, T0, header="proxy-authorization").ok


def test_wrong_password() -> None:
    ch = challenger()
    req = authorized(ch, make_request(), password="guess")
    res = ch.verify(req, T0)
    assert (res.ok, res.stale, res.reason) == (False, False, "wrong response")
    assert res.username == "alice"


def test_unknown_user() -> None:
    ch = DigestChallenger(REALM, lambda u: None, secret=b"x")
    req = authorized(ch, make_request())
    assert ch.verify(req, T0).reason == "unknown user"


def test_replayed_nonce_count() -> None:
    ch = challenger()
    nonce = ch.make_nonce(T0)
    resp = challenge_response(make_request(), [
        f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256, qop="auth"'])

    def attempt(nc: int) -> AuthResult:
        req = make_request()
        req.add(*answer_challenge(req, resp, "alice", "s3cret", nc=nc))
        return ch.verify(req, T0 + 1)

    assert attempt(1).ok
    assert attempt(1).reason == "replayed nonce count"
    assert attempt(3).ok
    assert attempt(2).reason == "replayed nonce count"
    assert not attempt(2).stale


def test_same_request_replayed() -> None:
    ch = challenger()
    req = authorized(ch, make_request())
    assert ch.verify(req, T0).ok
    assert not ch.verify(req, T0 + 2).ok


def test_expired_nonce_is_stale() -> None:
    ch = challenger(nonce_ttl=300.0)
    req = authorized(ch, make_request())
    res = ch.verify(req, T0 + 301)
    assert (res.ok, res.stale, res.reason) == (False, True, "stale nonce")
    # The caller re-challenges with stale=true; the new nonce works.
    retry = authorized(ch, make_request(), T0 + 301)
    assert ch.verify(retry, T0 + 302).ok


def test_expired_nonce_with_wrong_password_is_not_stale() -> None:
    ch = challenger()
    req = authorized(ch, make_request(), password="guess")
    res = ch.verify(req, T0 + 1000)
    assert (res.ok, res.stale) == (False, False)


def test_nonce_from_the_future_is_stale() -> None:
    ch = challenger()
    req = authorized(ch, make_request(), T0 + 500)
    assert ch.verify(req, T0).stale


def test_nonce_of_another_secret_is_stale_but_not_ok() -> None:
    """After a restart with a new secret, a right digest gets stale=true (RFC 7616 §3.3)."""
    req = authorized(challenger(secret=b"old"), make_request())
    res = challenger(secret=b"new").verify(req, T0)
    assert (res.ok, res.stale, res.reason) == (False, True, "unknown nonce")


def test_tampered_nonce_timestamp() -> None:
    ch = challenger()
    nonce = ch.make_nonce(T0 - 10_000)
    forged = format(int(T0 * 1000), "016x") + nonce[16:]
    resp = challenge_response(make_request(), [f'Digest realm="{REALM}", nonce="{forged}", qop="auth"'])
    req = make_request()
    req.add(*answer_challenge(req, resp, "alice", "s3cret"))
    res = ch.verify(req, T0)
    assert not res.ok and res.reason == "unknown nonce"


def test_wrong_realm() -> None:
    ch = challenger()
    other = DigestChallenger("elsewhere.example", USERS.get, secret=b"k" * 32)
    req = authorized(other, make_request())
    res = ch.verify(req, T0)
    assert (res.ok, res.reason) == (False, "wrong realm")


def test_credentials_for_our_realm_among_others() -> None:
    ch = challenger()
    req = authorized(DigestChallenger("elsewhere.example", USERS.get), make_request())
    authorized(ch, req)
    assert ch.verify(req, T0).ok


def test_wrong_uri() -> None:
    ch = challenger()
    req = authorized(ch, make_request("INVITE", "sip:bob@b2bua.example.com"))
    req.uri = "sip:carol@b2bua.example.com"
    assert ch.verify(req, T0).reason == "uri does not match the Request-URI"


def test_equivalent_uri_accepted() -> None:
    ch = challenger()
    req = authorized(ch, make_request("INVITE", "sip:bob@B2BUA.example.com;transport=UDP"))
    req.uri = "sip:bob@b2bua.example.com;transport=udp"
    assert ch.verify(req, T0).ok


def test_method_is_part_of_the_digest() -> None:
    ch = challenger()
    req = authorized(ch, make_request("INVITE", "sip:bob@b2bua.example.com"))
    req.method = "BYE"
    assert ch.verify(req, T0).reason == "wrong response"


def test_unknown_scheme_rfc4475_regaut01() -> None:
    raw = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"To: sip:j.user@example.com\r\n"
        b"From: sip:j.user@example.com;tag=87321hj23128\r\n"
        b"Max-Forwards: 8\r\n"
        b"Call-ID: regaut01.0ha0isndaksdj\r\n"
        b"CSeq: 9338 REGISTER\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKbeefbeefbeef\r\n"
        b"Authorization: NoOneKnowsThisScheme opaque-data=here\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    req = parse_message(raw)
    res = challenger().verify(req, T0)
    assert (res.ok, res.stale, res.username) == (False, False, None)


def test_no_credentials() -> None:
    assert not challenger().verify(make_request(), T0).ok


def test_garbage_credentials() -> None:
    req = make_request(extra='Authorization: Digest username="alice, realm=\r\n')
    assert not challenger().verify(req, T0).ok


def test_qop_required_unless_rfc2069_allowed() -> None:
    for allow, ok in ((False, False), (True, True)):
        ch = challenger(allow_rfc2069=allow)
        nonce = ch.make_nonce(T0)
        req = make_request()
        resp = challenge_response(req, [f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5'])
        key, value = answer_challenge(req, resp, "alice", "s3cret")
        assert "qop" not in parse_auth_header(value)[0][1]
        req.add(key, value)
        res = ch.verify(req, T0)
        assert res.ok is ok
        if not ok:
            assert res.reason == "qop=auth required"


def test_auth_int_rejected() -> None:
    ch = challenger()
    req = authorized(ch, make_request())
    req.set("authorization", req.get("authorization").replace("qop=auth", "qop=auth-int"))
    assert ch.verify(req, T0).reason == "unsupported qop"


@pytest.mark.parametrize("nc", ["+0000001", "0000_001", "1", "000000001", "0000000g"])
def test_bad_nonce_count(nc: str) -> None:
    ch = challenger()
    req = authorized(ch, make_request())
    req.set("authorization", req.get("authorization").replace("nc=00000001", f"nc={nc}"))
    assert ch.verify(req, T0).reason == "bad nc or cnonce"


def test_disallowed_algorithm() -> None:
    req = authorized(challenger(algorithms=("MD5",)), make_request())
    assert challenger(algorithms=("SHA-256",)).verify(req, T0).reason == "unsupported algorithm"


def test_nonce_table_is_bounded() -> None:
    ch = challenger()
    ch.max_nonces = 3
    reqs = [authorized(ch, make_request(), T0 + i) for i in range(4)]
    assert all(ch.verify(r, T0 + 10).ok for r in reqs)
    assert len(ch._nc) == 3 and ch.evictions == 1  # counted: b2bua_limit_hits_total{limit="nonces"}
    # The evicted (oldest) nonce is now stale rather than open to replay.
    again = make_request()
    header = reqs[0].get("authorization").replace("nc=00000001", "nc=00000002")
    nonce = parse_auth_header(header)[0][1]["nonce"]
    resp = challenge_response(again, [f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256, qop="auth"'])
    again.add(*answer_challenge(again, resp, "alice", "s3cret", nc=2))
    assert ch.verify(again, T0 + 11).stale


def test_purge_forgets_expired_nonces() -> None:
    ch = challenger(nonce_ttl=60.0)
    assert ch.verify(authorized(ch, make_request(), T0), T0).ok
    assert len(ch._nc) == 1
    ch.purge(T0 + 61)
    assert ch._nc == {}


# -- UAC side ----------------------------------------------------------------------------------

def test_answer_ignores_non_challenges() -> None:
    req = make_request()
    assert answer_challenge(req, Response(200, "OK"), "alice", "s3cret") is None
    assert answer_challenge(req, Response(401, "Unauthorized"), "alice", "s3cret") is None


def test_answer_skips_unusable_challenges() -> None:
    req = make_request()
    resp = challenge_response(req, [
        'Basic realm="x"',
        'Digest realm="x", nonce="n1", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="x", nonce="n2", algorithm=MD5, qop="auth-int"',
        'Digest realm="x", algorithm=MD5, qop="auth"',
    ])
    assert answer_challenge(req, resp, "alice", "s3cret") is None
    resp.add("www-authenticate", 'Digest realm="x", nonce="n3", qop="auth-int,auth"')
    key, value = answer_challenge(req, resp, "alice", "s3cret", nc=0x1F, cnonce="abc")
    params = parse_auth_header(value)[0][1]
    assert (key, params["nonce"], params["algorithm"], params["nc"], params["cnonce"]) == (
        "authorization", "n3", "MD5", "0000001f", "abc")


def test_answer_quotes_username() -> None:
    ch = DigestChallenger(REALM, {'we"ird\\': "pw"}.get, secret=b"k")
    req = make_request()
    key, value = answer_challenge(req, challenge_response(req, ch.challenge(T0)), 'we"ird\\', "pw")
    req.add(key, value)
    assert ch.verify(req, T0) == AuthResult(True, 'we"ird\\', False, "ok")
