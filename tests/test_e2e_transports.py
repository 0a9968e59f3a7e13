"""TLS in both directions, TCP keep-alives, transport failures and oversized datagrams,
against the real B2BUA process (Debian's SIPp is built without TLS, so the TLS peers here
are small Python SIP endpoints speaking over real TLS sockets)."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
from harness import B2BUAProcess, b2bua, free_port, make_cert, sipp, sipp_background, write_config

from b2bua.sip.message import Request, StreamFramer, parse_message


class StreamUac:
    """A minimal SIP caller over a stream socket (TLS or TCP)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.local = sock.getsockname()

    def send(self, text: str) -> None:
        body = b""
        self.sock.sendall(text.replace("\n", "\r\n").encode() + body)

    def recv(self, timeout: float = 5.0):
        self.sock.settimeout(timeout)
        while not self.pending:
            data = self.sock.recv(65535)
            if not data:
                raise ConnectionError("closed")
            self.pending.extend(self.framer.feed(data))
        return parse_message(self.pending.pop(0), stream=True)

    def recv_final(self):
        while True:
            msg = self.recv()
            if getattr(msg, "status", 0) >= 200:
                return msg

    def call(self, port: int, transport: str) -> None:
        lh, lp = self.local[:2]
        head = (f"Via: SIP/2.0/{transport} {lh}:{lp};branch=z9hG4bK-{{b}}\nFrom: <sip:caller@{lh}>;tag=c1\n"
                f"Call-ID: tls-call@test\nMax-Forwards: 70\n")
        self.send(f"INVITE sip:01012345678@127.0.0.1:{port};transport={transport.lower()} SIP/2.0\n"
                  + head.format(b="inv") + "To: <sip:01012345678@127.0.0.1>\nCSeq: 1 INVITE\n"
                  f"Contact: <sip:caller@{lh}:{lp};transport={transport.lower()}>\nContent-Length: 0\n\n")
        ok = self.recv_final()
        assert ok.status == 200, ok
        to = ok.get("to")
        contact = re.search(r"<([^>]+)>", ok.get("contact")).group(1)
        self.send(f"ACK {contact} SIP/2.0\n" + head.format(b="ack") + f"To: {to}\nCSeq: 1 ACK\nContent-Length: 0\n\n")
        self.send(f"BYE {contact} SIP/2.0\n" + head.format(b="bye") + f"To: {to}\nCSeq: 2 BYE\nContent-Length: 0\n\n")
        bye_ok = self.recv_final()
        assert bye_ok.status == 200 and bye_ok.cseq == (2, "BYE")


@pytest.mark.usefixtures("sipp_installed")
def test_tls_caller_to_udp_callee(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    uas_port = free_port()
    tls_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, transports=("udp",),
               sip={"tls": {"cert": str(cert), "key": str(key)}, "listen": []}) as (proc, port):
        proc.stop()
        # restart with a TLS listener as well (the harness picks one port for udp/tcp)
        from harness import B2BUAProcess
        proc = B2BUAProcess(proc.config, [f"udp:127.0.0.1:{port}", f"tls:127.0.0.1:{tls_port}"],
                            tmp_path / "b2bua-tls.log").start()
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                StreamUac(tls).call(tls_port, "TLS")
        finally:
            proc.stop()
    assert proc.log().count("end status=200 cause=normal by=a") == 1


def test_tls_listener_refuses_old_protocols_and_weak_suites(tmp_path: Path) -> None:
    """TLS 1.2 with a CBC suite (which Python's own default server accepts) is refused; 1.2 with ECDHE and
    AES-GCM, and 1.3, are taken."""
    cert, key = make_cert(tmp_path)
    tls_port = free_port()
    cfg = write_config(tmp_path / "config", sip={"tls": {"cert": str(cert), "key": str(key)}, "listen": []})
    proc = B2BUAProcess(cfg, [f"tls:127.0.0.1:{tls_port}"], tmp_path / "b2bua.log").start()

    def handshake(ciphers: str | None, maximum: ssl.TLSVersion) -> str | None:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.maximum_version = maximum
        if ciphers:
            ctx.set_ciphers(ciphers)
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=5),
                                 server_hostname="localhost") as tls:
                return tls.version()
        except ssl.SSLError:
            return None

    try:
        weak = "ECDHE-RSA-AES128-SHA256"
        plain = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # what the default would have accepted
        assert weak in [c["name"] for c in plain.get_ciphers()]
        assert handshake(weak, ssl.TLSVersion.TLSv1_2) is None
        assert handshake("ECDHE-RSA-AES128-GCM-SHA256", ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert handshake(None, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    finally:
        proc.stop()


class TlsUas(threading.Thread):
    """A carrier SBC over TLS that answers one INVITE and the BYE that follows."""

    def __init__(self, cert: Path, key: Path, port: int):
        super().__init__(daemon=True)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.srv = socket.create_server(("127.0.0.1", port))
        self.port = port
        self.srv.settimeout(10)
        self.received: list[Request] = []
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            conn, _ = self.srv.accept()
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                framer = StreamFramer()
                tls.settimeout(10)
                while True:
                    data = tls.recv(65535)
                    if not data:
                        return
                    for raw in framer.feed(data):
                        msg = parse_message(raw, stream=True)
                        if not isinstance(msg, Request):
                            continue
                        self.received.append(msg)
                        if msg.method in ("INVITE", "BYE"):
                            resp = ["SIP/2.0 200 OK"] + [f"{h[1]}: {h[2]}" for h in msg.headers
                                                         if h[0] in ("via", "from", "call-id", "cseq")]
                            resp.append(f"To: {msg.get('to')}" + (";tag=uas1" if msg.method == "INVITE" else ""))
                            resp.append(f"Contact: <sip:uas@127.0.0.1:{self.port};transport=tls>")
                            resp.append("Content-Length: 0\r\n\r\n")
                            tls.sendall("\r\n".join(resp).encode())
                        if msg.method == "BYE":
                            return
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.srv.close()


@pytest.mark.usefixtures("sipp_installed")
@pytest.mark.parametrize("trusted", [True, False])
def test_udp_caller_to_tls_carrier_with_certificate_check(tmp_path: Path, trusted: bool) -> None:
    cert, key = make_cert(tmp_path)
    other_ca, _ = make_cert(tmp_path, "not-the-carrier")
    carrier_port = free_port()
    uas = TlsUas(cert, key, carrier_port)
    uas.start()
    tls = {"ca": str(cert if trusted else other_ca), "verify_peer": True}
    with b2bua(tmp_path, uas_port=carrier_port, target_transport="tls", host="127.0.0.1",
               sip={"tls": tls}) as (proc, port):
        expect = "200" if trusted else "502"
        scenario = tmp_path / "uac.xml"
        from harness import SCENARIOS
        scenario.write_text((SCENARIOS / "uac_expect_status.xml").read_text()
                            .replace('response="486"', f'response="{expect}"'))
        if trusted:
            res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1",
                        "-d", "100"], tmp_path)
        else:
            res = sipp(["-sf", str(scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
                        "-m", "1"], tmp_path)
        assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
    uas.join(5)
    if trusted:
        assert uas.error is None
        assert [r.method for r in uas.received] == ["INVITE", "ACK", "BYE"]
        assert uas.received[0].top_via.transport == "TLS"
    else:
        assert not uas.received  # the handshake failed: nothing was sent to an unverified peer
        assert "status=502 cause=transport_error" in proc.log()


def test_tcp_keepalive_ping_gets_pong(tmp_path: Path) -> None:
    """RFC 5626 §4.4.1: a double-CRLF ping on a stream is answered with a single CRLF."""
    with b2bua(tmp_path, uas_port=free_port()) as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\r\n\r\n")
            assert s.recv(16) == b"\r\n"
            s.sendall(b"\r\n")  # a ping split across two segments
            s.sendall(b"\r\n")
            assert s.recv(16) == b"\r\n"


def test_oversized_header_line_gets_513(tmp_path: Path) -> None:
    with b2bua(tmp_path, uas_port=free_port(), transports=("udp",)) as (proc, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        lp = sock.getsockname()[1]
        long_line = "x" * 9000  # over the 8 KiB header-line bound
        msg = (f"MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKbig\r\n"
               f"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: big@test\r\n"
               f"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nX-Padding: {long_line}\r\n"
               f"Content-Length: 0\r\n\r\n")
        sock.sendto(msg.encode(), ("127.0.0.1", port))
        sock.settimeout(3)
        data, _ = sock.recvfrom(65535)
        assert data.startswith(b"SIP/2.0 513 "), data[:100]
        assert proc.alive()
