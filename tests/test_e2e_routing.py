"""Routing with real SIPp peers: DIDs to departments, source allow-lists, trunk limits, failover.

Carriers and the PBX are played by SIPp instances bound to their own loopback addresses
(127.0.0.2, 127.0.0.3, ...), so the B2BUA tells them apart by source address exactly as it
would tell real trunks apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import SCENARIOS, B2BUAProcess, free_port, sipp, sipp_background, write_config

pytestmark = pytest.mark.usefixtures("sipp_installed")

CARRIER = "127.0.0.2"
PBX = "127.0.0.3"
STRANGER = "127.0.0.9"


def _config(tmp: Path, pbx_port: int, gateways: list[tuple[str, int, str]] | None = None, **carrier: object) -> Path:
    trunks = [
        {"name": "carrier", "kind": "carrier", "addresses": [f"{CARRIER}/32"], "number_format": "e164",
         "gateways": [{"uri": f"sip:{CARRIER}:{free_port(CARRIER)}"}], **carrier},
        {"name": "pbx", "kind": "pbx", "addresses": [f"{PBX}/32"], "gateways": [{"uri": f"sip:{PBX}:{pbx_port}"}]},
    ]
    routes = [{"name": "lab", "prefix": "", "targets": [f"sip:{PBX}:{pbx_port}"]}]
    for i, (host, port, fmt) in enumerate(gateways or []):
        trunks.append({"name": f"out{i}", "kind": "carrier", "addresses": [f"127.0.1.{i + 1}/32"],
                       "number_format": fmt, "gateways": [{"uri": f"sip:{host}:{port}"}]})
    if gateways:
        routes.insert(0, {"name": "mobile", "prefix": "010", "trunks": [f"out{i}" for i in range(len(gateways))],
                          "failover_codes": [500, 503]})
    routing = {
        "trunks": trunks, "routes": routes,
        "schedules": [{"name": "always", "hours": {d: ["00:00-24:00"] for d in
                                                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
                       "lunch": None, "holidays": False}],
        "departments": [{"name": "교통정책과", "display_name": "서울시 교통정책과", "numbers": ["02-2133-2200"],
                         "trunk": "pbx", "extension": "2200", "schedule": "always"}],
        "unknown_number": {"status": 404},
    }
    return write_config(tmp / "config", routing=routing)


def _start(tmp: Path, cfg: Path) -> tuple[B2BUAProcess, int]:
    port = free_port()
    return B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp / "b2bua.log").start(), port


def _uac(tmp: Path, port: int, source: str, number: str, *, calls: int = 1, scenario: str | None = None,
         rate: int = 10) -> str:
    args = ["-sf", scenario] if scenario else ["-sn", "uac"]
    res = sipp([*args, f"127.0.0.1:{port}", "-i", source, "-p", str(free_port(source)), "-s", number,
                "-m", str(calls), "-r", str(rate), "-d", "100", "-trace_err"], tmp, timeout=60)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, out[-2500:] + "".join(p.read_text() for p in tmp.glob("*errors.log"))
    return out


def _expect(tmp: Path, code: int) -> str:
    path = tmp / f"uac_{code}.xml"
    path.write_text((SCENARIOS / "uac_expect_status.xml").read_text().replace('response="486"', f'response="{code}"'))
    return str(path)


def test_citizen_call_to_a_did_reaches_the_department_extension(tmp_path: Path) -> None:
    pbx_port = free_port(PBX)
    with sipp_background(["-sn", "uas", "-i", PBX, "-p", str(pbx_port), "-trace_msg", "-message_file",
                          str(tmp_path / "pbx.log")], tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, pbx_port))
        try:
            _uac(tmp_path, port, CARRIER, "+82221332200")  # the carrier writes E.164
            _uac(tmp_path, port, CARRIER, "0221332200")  # or national: the same department
            _uac(tmp_path, port, CARRIER, "+82221339999", scenario=_expect(tmp_path, 404))  # nobody's number
            proc.settle()
        finally:
            proc.stop()
    pbx = (tmp_path / "pbx.log").read_text()
    assert len(re.findall(rf"^INVITE sip:2200@{re.escape(PBX)}:{pbx_port} SIP/2.0", pbx, re.M)) == 2
    assert proc.log().count("end status=200") == 2


def test_unknown_source_is_refused_with_403(tmp_path: Path) -> None:
    pbx_port = free_port(PBX)
    proc, port = _start(tmp_path, _config(tmp_path, pbx_port))
    try:
        _uac(tmp_path, port, STRANGER, "0221332200", scenario=_expect(tmp_path, 403))
        assert proc.alive()
    finally:
        proc.stop()
    assert "start from=" not in proc.log()  # no call state was created for it


def test_trunk_cps_limit_gets_503_with_retry_after(tmp_path: Path) -> None:
    pbx_port = free_port(PBX)
    # the callee rejects what gets through (486), so every call is short
    with sipp_background(["-sf", str(SCENARIOS / "uas_reject.xml"), "-i", PBX, "-p", str(pbx_port)], tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, pbx_port, max_cps=2))
        try:
            res = sipp(["-sf", _expect(tmp_path, 486), f"127.0.0.1:{port}", "-i", CARRIER, "-p",
                        str(free_port(CARRIER)), "-s", "0221332200", "-m", "20", "-r", "50", "-trace_msg",
                        "-message_file", str(tmp_path / "carrier.log")], tmp_path, timeout=60)
        finally:
            proc.stop()
    log = (tmp_path / "carrier.log").read_text()
    limited = {m for m in re.findall(r"^SIP/2.0 503 Service Unavailable \(trunk limit\).*?^Call-ID: (\S+)", log,
                                     re.M | re.S)}  # distinct calls (the 503 is retransmitted until ACKed)
    assert 10 <= len(limited) <= 18, f"{len(limited)} of 20 calls limited"  # 2/s with a burst of 2 over 0.4 s
    assert re.search(r"^Retry-After: 2", log, re.M)
    assert res.returncode != 0  # the 503s are failures from the carrier's point of view


def test_outbound_failover_to_the_next_trunk_with_its_number_format(tmp_path: Path) -> None:
    """The first carrier answers 503: the call goes to the second, written the way it wants numbers."""
    first, second = free_port("127.0.1.1"), free_port("127.0.1.2")
    bad = tmp_path / "uas_503.xml"
    bad.write_text((SCENARIOS / "uas_reject.xml").read_text().replace("486 Busy Here", "503 Service Unavailable"))
    with sipp_background(["-sf", str(bad), "-i", "127.0.1.1", "-p", str(first), "-trace_msg", "-message_file",
                          str(tmp_path / "first.log")], tmp_path), \
         sipp_background(["-sn", "uas", "-i", "127.0.1.2", "-p", str(second), "-trace_msg", "-message_file",
                          str(tmp_path / "second.log")], tmp_path):
        pbx_port = free_port(PBX)
        proc, port = _start(tmp_path, _config(tmp_path, pbx_port, gateways=[("127.0.1.1", first, "e164"),
                                                                             ("127.0.1.2", second, "national")]))
        try:
            _uac(tmp_path, port, PBX, "010-1234-5678", calls=2)
            proc.settle()
        finally:
            proc.stop()
    assert re.search(r"^INVITE sip:\+821012345678@127\.0\.1\.1:", (tmp_path / "first.log").read_text(), re.M)
    assert re.search(r"^INVITE sip:01012345678@127\.0\.1\.2:", (tmp_path / "second.log").read_text(), re.M)
    assert proc.log().count("end status=200") == 2 and proc.log().count("failing over") == 2


def test_gateway_down_by_options_is_skipped(tmp_path: Path) -> None:
    """Nothing answers the first carrier's OPTIONS: after `threshold` misses it is marked down and
    calls go straight to the second carrier (no failover attempt); metrics show it."""
    import urllib.request

    import yaml

    dead, alive = free_port("127.0.1.1"), free_port("127.0.1.2")
    with sipp_background(["-sn", "uas", "-i", "127.0.1.2", "-p", str(alive)], tmp_path):
        pbx_port = free_port(PBX)
        cfg = _config(tmp_path, pbx_port, gateways=[("127.0.1.1", dead, "e164"), ("127.0.1.2", alive, "national")])
        process = yaml.safe_load(cfg.read_text())
        metrics = free_port()
        process["metrics"] = {"address": f"127.0.0.1:{metrics}"}
        process["sip"]["timers"] = {"t1_ms": 20, "t2_ms": 160, "t4_ms": 200}  # OPTIONS time out in 64*T1 = 1.28 s
        cfg.write_text(yaml.safe_dump(process))
        routing_path = cfg.parent / "routing.yaml"
        routing = yaml.safe_load(routing_path.read_text())
        for trunk in routing["trunks"]:
            if trunk["name"] == "out0":
                trunk["options_ping"] = {"interval_s": 0.3, "threshold": 2}
        routing_path.write_text(yaml.safe_dump(routing, allow_unicode=True))
        proc, port = _start(tmp_path, cfg)
        try:
            deadline = __import__("time").monotonic() + 10
            while "is down" not in proc.log() and __import__("time").monotonic() < deadline:
                __import__("time").sleep(0.1)
            assert f"gateway sip:127.0.1.1:{dead} is down" in proc.log()
            _uac(tmp_path, port, PBX, "01012345678", calls=2)
            proc.settle()
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        finally:
            proc.stop()
    assert proc.log().count("end status=200") == 2
    assert "failing over" not in proc.log()
    assert f'b2bua_gateway_up{{gateway="sip:127.0.1.1:{dead}"}} 0.0' in body


def test_trunk_codec_preference_orders_our_offer(tmp_path: Path) -> None:
    """The carrier trunk lists PCMA only: our offer to it carries PCMA alone, the PCMU caller is transcoded."""
    import yaml

    gw = free_port("127.0.1.1")
    with sipp_background(["-sn", "uas", "-i", "127.0.1.1", "-p", str(gw), "-trace_msg", "-message_file",
                          str(tmp_path / "carrier.log")], tmp_path):
        pbx_port = free_port(PBX)
        cfg = _config(tmp_path, pbx_port, gateways=[("127.0.1.1", gw, "national")])
        routing_path = cfg.parent / "routing.yaml"
        routing = yaml.safe_load(routing_path.read_text())
        for trunk in routing["trunks"]:
            if trunk["name"] == "out0":
                trunk["codecs"] = ["PCMA"]
        routing_path.write_text(yaml.safe_dump(routing, allow_unicode=True))
        proc, port = _start(tmp_path, cfg)
        try:
            _uac(tmp_path, port, PBX, "01012345678")
            proc.settle()
        finally:
            proc.stop()
    offer = (tmp_path / "carrier.log").read_text()
    assert re.search(r"^m=audio \d+ RTP/AVP 8 101\s*$", offer, re.M), offer[:1500]
