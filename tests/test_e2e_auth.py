"""Digest auth and registration against real SIPp peers (RFC 3261 §22, §10; RFC 8760)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from harness import SCENARIOS, b2bua, free_port, sipp, sipp_background

pytestmark = pytest.mark.usefixtures("sipp_installed")

DEVICE = {"username": "staff1001", "password": "s3cret-1001"}
MD5_ONLY = {"digest_algorithms": ["MD5"], "devices": [DEVICE]}


def _register(port: int, local_port: int, tmp: Path, password: str) -> int:
    res = sipp(["-sf", str(SCENARIOS / "uac_register_auth.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                "-p", str(local_port), "-m", "1", "-s", DEVICE["username"], "-au", DEVICE["username"],
                "-ap", password, "-trace_err", "-timeout", "10", "-timeout_error", "-trace_msg", "-message_file",
                str(tmp / "register_msg.log")], tmp, timeout=30)
    return res.returncode


def _received_statuses(log: Path) -> list[int]:
    """The status codes of the responses a SIPp message log shows received, in order."""
    text = log.read_text(errors="replace")
    return [int(code) for block in text.split("----------------------------------------------- ")
            if "message received" in block for code in re.findall(r"^\s*SIP/2.0 (\d{3}) ", block, re.M)[:1]]


def test_device_registers_then_receives_a_call(tmp_path: Path) -> None:
    device_port = free_port()
    with b2bua(tmp_path, uas_port=free_port(), routing=MD5_ONLY) as (proc, port):
        assert _register(port, device_port, tmp_path, DEVICE["password"]) == 0, proc.log()[-2000:]
        # the device now answers calls on the port it registered from
        with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(device_port)], tmp_path):
            res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
                        "-s", DEVICE["username"], "-m", "2", "-r", "10", "-d", "100"], tmp_path)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
            proc.settle()  # the device answers the last BYE before it goes away
    assert proc.log().count("end status=200") == 2


def test_wrong_password_is_refused(tmp_path: Path) -> None:
    with b2bua(tmp_path, uas_port=free_port(), routing=MD5_ONLY) as (proc, port):
        assert _register(port, free_port(), tmp_path, "wrong") != 0
        assert proc.alive()
    statuses = _received_statuses(tmp_path / "register_msg.log")
    # challenged, then the answer computed with the wrong password is refused again (not a timeout)
    assert statuses[0] == 401 and len(statuses) >= 2 and statuses[-1] in (401, 403), statuses
    assert 200 not in statuses


def _raw_invite(port: int, from_user: str) -> bytes:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    lp = sock.getsockname()[1]
    msg = (f"INVITE sip:01012345678@127.0.0.1:{port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-auth1\r\n"
           f"From: <sip:{from_user}@127.0.0.1>;tag=a1\r\nTo: <sip:01012345678@127.0.0.1>\r\n"
           f"Call-ID: auth1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:{from_user}@127.0.0.1:{lp}>\r\n"
           f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    sock.sendto(msg.encode(), ("127.0.0.1", port))
    sock.settimeout(3)
    data, _ = sock.recvfrom(65535)
    sock.close()
    return data


def test_device_invite_without_credentials_is_challenged(tmp_path: Path) -> None:
    with b2bua(tmp_path, uas_port=free_port(), routing={"devices": [DEVICE]}) as (proc, port):
        data = _raw_invite(port, DEVICE["username"]).decode()
    assert data.startswith("SIP/2.0 407 ")
    challenges = re.findall(r"^Proxy-Authenticate: (.*)$", data, re.M)
    # RFC 8760 §2.4: SHA-256 offered first, MD5 kept for older devices
    assert "algorithm=SHA-256" in challenges[0] and "algorithm=MD5" in challenges[1]
    assert re.search(r"^To: .*;tag=", data, re.M)


def test_device_invite_with_credentials_completes(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text(f"SEQUENTIAL\n{DEVICE['username']};\n")
    uas_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, routing=MD5_ONLY) as (proc, port):
        res = sipp(["-sf", str(SCENARIOS / "uac_invite_auth.xml"), f"127.0.0.1:{port}", "-i", "127.0.0.1",
                    "-p", str(free_port()), "-inf", str(users), "-au", DEVICE["username"], "-ap", DEVICE["password"],
                    "-s", "01012345678", "-auth_uri", f"01012345678@127.0.0.1:{port}",
                    "-m", "2", "-r", "10", "-trace_err"], tmp_path)
        assert res.returncode == 0, res.stdout.decode(errors="replace")[-3000:]
    assert proc.log().count("end status=200") == 2


@pytest.mark.parametrize("password,ok", [("carrier-pw", True), ("bad-pw", False)])
def test_carrier_challenge_answered_with_route_credentials(tmp_path: Path, password: str, ok: bool) -> None:
    creds = tmp_path / "carrier.csv"
    creds.write_text("SEQUENTIAL\ntrunk-user;carrier-pw\n")
    uas_port = free_port()
    route = {"routes": [{"name": "carrier", "prefix": "", "targets": [f"sip:127.0.0.1:{uas_port}"],
                         "credentials": {"username": "trunk-user", "password": password}}]}
    with sipp_background(["-sf", str(SCENARIOS / "uas_challenge.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                          "-inf", str(creds)], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, routing=route) as (proc, port):
        res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "2",
                    "-r", "10", "-d", "100", "-timeout", "10", "-timeout_error"], tmp_path, timeout=30)
    if ok:
        assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:]
        assert proc.log().count("end status=200") == 2
    else:
        assert res.returncode != 0
        assert proc.log().count("status=403 cause=rejected") == 2
