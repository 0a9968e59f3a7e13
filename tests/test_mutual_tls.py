"""Mutual TLS per trunk (issue #15): a trunk with ``mutual_tls`` is believed only over TLS with a client
certificate its CA signed (and, with ``tls_peer_names``, naming it); the B2BUA shows its own certificate to a
carrier that asks for one. Real TLS sockets against the real process; certificates made by openssl."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import B2BUAProcess, b2bua, free_port, make_cert, sipp, write_config
from sipmsg import status_of
from test_e2e_transports import TlsUas

SOURCE = "127.0.0.5"  # the carrier's SBC
NAME = "sbc.carrier.example"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "ca.key", tmp / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Carrier Test CA",
             "-keyout", str(key), "-out", str(cert))
    return cert, key


def _signed(tmp: Path, ca: tuple[Path, Path], name: str) -> tuple[Path, Path]:
    """A client certificate for ``name`` signed by ``ca``: (certificate, key)."""
    key, csr, cert, ext = (tmp / f"{name}.key", tmp / f"{name}.csr", tmp / f"{name}.crt", tmp / f"{name}.ext")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=clientAuth,serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return cert, key


def _options(transport: str, host: str, port: int, n: int) -> bytes:
    return (f"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {host}:{port};branch=z9hG4bKmtls{n}\r\n"
            f"From: <sip:sbc@{host}>;tag=m{n}\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: mtls-{n}@test\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def _over_tls(port: int, server_cert: Path, client: tuple[Path, Path] | None, source: str = SOURCE,
              n: int = 1) -> int | str:
    """An OPTIONS over TLS from ``source`` showing ``client``'s certificate: its status, or what went wrong."""
    ctx = ssl.create_default_context(cafile=str(server_cert))
    if client is not None:
        ctx.load_cert_chain(*client)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.bind((source, 0))
    raw.settimeout(5)
    raw.connect(("127.0.0.1", port))
    try:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            host, lport = tls.getsockname()[:2]
            tls.sendall(_options("TLS", host, lport, n))
            data = tls.recv(65535)
            return status_of(data) or "no answer" if data else "closed"
    except ssl.SSLError as exc:
        return f"handshake: {exc.reason}"
    except (ConnectionError, TimeoutError) as exc:
        return type(exc).__name__


def test_a_mutual_tls_trunk_is_believed_only_with_its_certificate(tmp_path: Path) -> None:
    server_cert, server_key = make_cert(tmp_path)
    ca = _ca(tmp_path)
    good = _signed(tmp_path, ca, NAME)
    misnamed = _signed(tmp_path, ca, "someone-else.example")
    (tmp_path / "stranger").mkdir()
    stranger_cert, stranger_key = make_cert(tmp_path / "stranger", NAME)  # the right name, not signed by the CA
    metrics, port, tls_port = free_port(), free_port(), free_port()
    cfg = write_config(tmp_path / "config", sip={"tls": {"cert": str(server_cert), "key": str(server_key),
                                                         "ca": str(ca[0])}, "listen": []})
    routing = yaml.safe_load((cfg.parent / "routing.yaml").read_text())
    for trunk in routing["trunks"]:
        if trunk["name"] == "lab":
            trunk["addresses"] = ["127.0.0.1/32"]
    routing["trunks"].append({"name": "secure-carrier", "kind": "carrier", "addresses": [f"{SOURCE}/32"],
                              "transport": "tls", "mutual_tls": True, "tls_peer_names": [NAME]})
    (cfg.parent / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    data = yaml.safe_load(cfg.read_text())
    data["metrics"] = {"address": f"127.0.0.1:{metrics}"}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}", f"tls:127.0.0.1:{tls_port}"], tmp_path / "b2bua.log").start()
    try:
        assert _over_tls(tls_port, server_cert, good, n=1) == 200
        assert _over_tls(tls_port, server_cert, None, n=2) == "closed"
        assert _over_tls(tls_port, server_cert, misnamed, n=3) == "closed"
        assert str(_over_tls(tls_port, server_cert, (stranger_cert, stranger_key), n=4)).startswith(
            ("handshake", "closed", "ConnectionResetError"))
        # any other address is not asked to prove anything (it faces the gate and digest as on UDP)
        assert _over_tls(tls_port, server_cert, None, source="127.0.0.6", n=5) == 200
        # the trunk's address over UDP: anyone can forge that
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((SOURCE, 0))
            udp.settimeout(5)
            udp.sendto(_options("UDP", SOURCE, udp.getsockname()[1], 6), ("127.0.0.1", port))
            assert status_of(udp.recv(65535)) == 403
        log = proc.log()
        assert "refusing a tls connection from 127.0.0.5: trunk secure-carrier needs a client certificate" in log
        assert "not one of its tls_peer_names" in log
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        assert 'b2bua_limit_hits_total{limit="tls_client_cert"} 2.0' in text
        assert 'b2bua_gate_total{what="refused:not_tls"} 1.0' in text
        # a reload that turns it off: certificates are no longer asked for, UDP is believed again
        routing["trunks"][-1]["mutual_tls"] = False
        (cfg.parent / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _over_tls(tls_port, server_cert, None, n=7) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _over_tls(tls_port, server_cert, None, n=8) == 200
    finally:
        proc.stop()


@pytest.mark.usefixtures("sipp_installed")
def test_the_b2bua_shows_its_certificate_to_a_carrier_that_asks(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    carrier_port = free_port()
    uas = TlsUas(cert, key, carrier_port)
    uas.ctx.verify_mode = ssl.CERT_REQUIRED  # the carrier's SBC wants our certificate ...
    uas.ctx.load_verify_locations(cert)  # ... signed by what it trusts (here: ours, self-signed)
    uas.start()
    with b2bua(tmp_path, uas_port=carrier_port, target_transport="tls", host="127.0.0.1",
               sip={"tls": {"ca": str(cert), "cert": str(cert), "key": str(key)}}) as (proc, port):
        res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1",
                    "-d", "100"], tmp_path)
        assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
    uas.join(5)
    assert uas.error is None and [r.method for r in uas.received] == ["INVITE", "ACK", "BYE"]
