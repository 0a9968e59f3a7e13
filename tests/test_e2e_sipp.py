"""End to end: SIPp UAC -> B2BUA process -> SIPp UAS on loopback, real sockets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import SCENARIOS, b2bua, free_port, sipp, sipp_background

pytestmark = pytest.mark.usefixtures("sipp_installed")


def _uac(port: int, tmp: Path, *extra: str, scenario: str = "uac", calls: int = 20, rate: int = 20,
         transport: str = "u1", host: str = "127.0.0.1") -> None:
    args = ["-sn", scenario] if not scenario.endswith(".xml") else ["-sf", scenario]
    h = f"[{host}]" if ":" in host else host
    res = sipp([*args, f"{h}:{port}", "-i", host, "-p", str(free_port(host)), "-t", transport,
                "-m", str(calls), "-r", str(rate), "-d", "200", "-trace_err", *extra], tmp)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, f"sipp uac failed ({res.returncode}):\n{out[-3000:]}\n{_errors(tmp)}"
    m = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    assert m and int(m[-1]) == calls, out[-2000:]


def _errors(tmp: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp.glob("*errors.log"))


def _uas_messages(tmp: Path) -> str:
    logs = list(tmp.glob("uas*_messages.log")) + list(tmp.glob("*uas*messages.log"))
    assert logs, list(tmp.iterdir())
    return "\n".join(p.read_text(errors="replace") for p in set(logs))


@pytest.mark.parametrize("a_transport,b_transport", [("udp", "udp"), ("tcp", "udp"), ("udp", "tcp"), ("tcp", "tcp")])
def test_calls_complete_over_udp_and_tcp(tmp_path: Path, a_transport: str, b_transport: str) -> None:
    uas_port = free_port()
    t = {"udp": "u1", "tcp": "t1"}
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-t", t[b_transport],
                          "-trace_msg"], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, target_transport=b_transport) as (proc, port):
        _uac(port, tmp_path, transport=t[a_transport], calls=20)
        assert proc.alive()
    log = proc.log()
    assert log.count(" end status=200 cause=normal") == 20, log[-3000:]


def test_ipv6_calls_complete(tmp_path: Path) -> None:
    uas_port = free_port("::1")
    with sipp_background(["-sn", "uas", "-i", "::1", "-p", str(uas_port)], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, transports=("udp",), host="::1") as (proc, port):
        _uac(port, tmp_path, calls=5, host="::1")
    assert proc.log().count(" end status=200") == 5


def test_topology_hidden_from_callee(tmp_path: Path) -> None:
    """Nothing of the caller's Via, Contact, Call-ID, tags or port reaches the callee (RFC 7092 §4)."""
    uas_port = free_port()
    uac_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-trace_msg",
                          "-message_file", str(tmp_path / "uas_messages.log")], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port) as (proc, port):
        res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(uac_port), "-m", "3",
                    "-r", "10", "-d", "100", "-trace_msg", "-message_file", str(tmp_path / "uac_messages.log")],
                   tmp_path)
        assert res.returncode == 0
    uas = (tmp_path / "uas_messages.log").read_text(errors="replace")
    uac = (tmp_path / "uac_messages.log").read_text(errors="replace")
    call_ids = set(re.findall(r"^Call-ID: (\S+)", uac, re.M))
    tags = set(re.findall(r"tag=([^;>\s]+)", uac))
    assert call_ids and tags
    received = [m for m in re.split(r"-{10,}", uas) if "received" in m.lower()[:200]]
    assert any("INVITE sip:" in m for m in received), uas[:2000]
    for cid in call_ids:
        assert cid not in uas, f"caller Call-ID {cid} leaked to the callee"
    caller_tags = {t for t in tags if "SIPpTag00" in t}
    for tag in caller_tags:
        assert tag not in uas, f"caller tag {tag} leaked"
    assert f":{uac_port}" not in uas, "caller's port leaked (Via/Contact)"
    # each Via the callee saw is ours
    for via in re.findall(r"^Via: (.*)$", uas, re.M):
        assert f"127.0.0.1:{port}" in via, via


def test_callee_hangs_up(tmp_path: Path) -> None:
    uas_port = free_port()
    with sipp_background(["-sf", str(SCENARIOS / "uas_answer_bye.xml"), "-i", "127.0.0.1", "-p", str(uas_port)],
                         tmp_path), b2bua(tmp_path, uas_port=uas_port) as (proc, port):
        _uac(port, tmp_path, scenario=str(SCENARIOS / "uac_remote_bye.xml"), calls=5, rate=10)
    assert proc.log().count("cause=normal by=b") == 5


def test_cancel_while_ringing(tmp_path: Path) -> None:
    uas_port = free_port()
    with sipp_background(["-sf", str(SCENARIOS / "uas_ring_cancel.xml"), "-i", "127.0.0.1", "-p", str(uas_port)],
                         tmp_path), b2bua(tmp_path, uas_port=uas_port) as (proc, port):
        _uac(port, tmp_path, scenario=str(SCENARIOS / "uac_cancel.xml"), calls=5, rate=10)
    assert proc.log().count("status=487 cause=cancelled by=a") == 5


@pytest.mark.parametrize("callee,caller", [(486, 486), (404, 404), (603, 603), (503, 500), (407, 403), (302, 480)])
def test_final_responses_mapped(tmp_path: Path, callee: int, caller: int) -> None:
    """Rejections reach the caller through the mapping table (503 must not become our 503)."""
    uas_port = free_port()
    uas = tmp_path / "uas.xml"
    reasons = {486: "Busy Here", 404: "Not Found", 603: "Decline", 503: "Service Unavailable",
               407: "Proxy Authentication Required", 302: "Moved Temporarily"}
    uas.write_text((SCENARIOS / "uas_reject.xml").read_text().replace("486 Busy Here", f"{callee} {reasons[callee]}"))
    uac = tmp_path / "uac.xml"
    uac.write_text((SCENARIOS / "uac_expect_status.xml").read_text().replace('response="486"', f'response="{caller}"'))
    with sipp_background(["-sf", str(uas), "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port) as (proc, port):
        _uac(port, tmp_path, scenario=str(uac), calls=3, rate=10)
    assert proc.log().count(f"status={caller} cause=rejected") == 3


def test_unreachable_callee_times_out_with_408(tmp_path: Path) -> None:
    """Timer B on the outbound leg (T1 shortened) becomes 408 for the caller."""
    uac = tmp_path / "uac.xml"
    uac.write_text((SCENARIOS / "uac_expect_status.xml").read_text().replace('response="486"', 'response="408"'))
    timers = {"t1_ms": 20, "t2_ms": 160, "t4_ms": 200}
    with b2bua(tmp_path, uas_port=free_port(), sip={"timers": timers}) as (proc, port):
        _uac(port, tmp_path, scenario=str(uac), calls=2, rate=10)
    assert proc.log().count("status=408 cause=timeout") == 2


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_in_dialog_requests_relayed(tmp_path: Path, transport: str) -> None:
    """INFO with its body, a hold re-INVITE, UPDATE and BYE cross to the other dialog."""
    uas_port = free_port()
    with sipp_background(["-sf", str(SCENARIOS / "uas_indialog.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                          "-t", transport], tmp_path), \
         b2bua(tmp_path, uas_port=uas_port, target_transport="udp" if transport == "u1" else "tcp") as (proc, port):
        _uac(port, tmp_path, scenario=str(SCENARIOS / "uac_indialog.xml"), calls=3, rate=10, transport=transport)
    assert proc.log().count("status=200 cause=normal by=a") == 3
