"""Live call control and graceful shutdown, end to end: a real B2BUA process, SIPp callers and callees.

* ``b2bua calls`` (the control socket) and ``GET /api/calls`` (bearer token) list the calls in progress;
  ``POST /api/calls/{id}/hangup`` ends one (BYE on both legs with a Reason, CDR ``operator_hangup``);
* ``b2bua drain`` (and SIGTERM) refuses new calls and OPTIONS with 503 + Retry-After, ``/readyz`` turns
  503, the calls left get BYE with a Reason after ``shutdown.drain_s``, every CDR is written, exit 0;
* a second SIGTERM ends the drain at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import ROOT, SCENARIOS, SIPP, B2BUAProcess, free_port, options, sipp_background, write_config

from b2bua.storage.cdr import CdrStore

pytestmark = pytest.mark.usefixtures("sipp_installed")

TOKEN = "test-token-9f2c"


def _start(tmp: Path, uas_port: int, drain_s: float) -> tuple[B2BUAProcess, int, int]:
    cfg = write_config(tmp / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                            "targets": [f"sip:127.0.0.1:{uas_port}"]}]})
    data = yaml.safe_load(cfg.read_text())
    admin = free_port()
    data["metrics"] = {"address": f"127.0.0.1:{admin}"}
    data["admin"] = {"token": TOKEN, "socket": "../var/ctl.sock"}
    data["shutdown"] = {"drain_s": drain_s, "bye_grace_s": 2}
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    return B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp / "b2bua.log").start(), port, admin


def _callers(tmp: Path, port: int, calls: int) -> subprocess.Popen:
    """Callers that stay on the line until the B2BUA hangs up on them."""
    assert SIPP
    return subprocess.Popen([SIPP, "-sf", str(SCENARIOS / "uac_remote_bye.xml"), f"127.0.0.1:{port}",
                             "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls), "-l", str(calls),
                             "-r", "10", "-trace_msg", "-message_file", str(tmp / "uac_msg.log"), "-nostdin"],
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "b2bua", *args, "--config", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def _http(admin: int, method: str, path: str, token: str | None = TOKEN, body: dict | None = None
          ) -> tuple[int, dict | str]:
    req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read().decode(), err.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def _live(cfg: Path, n: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    calls: list[dict] = []
    while time.monotonic() < deadline:
        res = _cli(cfg, "calls", "--json")
        assert res.returncode == 0, res.stderr
        calls = [json.loads(line) for line in res.stdout.splitlines()]
        if len(calls) == n and all(c["state"] == "confirmed" for c in calls):
            return calls
        time.sleep(0.2)
    raise AssertionError(f"{len(calls)} calls up, {n} wanted: {calls}")


def _byes(log: Path) -> list[str]:
    """The BYE requests a SIPp message log shows received."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [block for block in text.split("----------------------------------------------- ")
            if "message received" in block and re.search(r"^\s*BYE sip:", block, re.M)]


def _cdr(tmp: Path) -> list[dict]:
    store = CdrStore(f"sqlite:///{tmp / 'var' / 'b2bua.sqlite3'}")
    try:
        return store.rows()
    finally:
        store.engine.dispose()


def test_operators_list_and_hang_up_calls_then_a_drain_ends_the_rest_and_exits(tmp_path: Path) -> None:
    uas_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-trace_msg", "-message_file",
                          str(tmp_path / "uas_msg.log")], tmp_path):
        proc, port, admin = _start(tmp_path, uas_port, drain_s=3)
        cfg = proc.config
        try:
            callers = _callers(tmp_path, port, 2)
            calls = _live(cfg, 2)
            assert {c["route"] for c in calls} == {"lab"} and all(c["b_call_id"] for c in calls)
            table = _cli(cfg, "calls")
            assert table.returncode == 0 and "2 call(s)" in table.stdout and calls[0]["id"] in table.stdout
            # the HTTP API: a token is required, then the same list
            status, body = _http(admin, "GET", "/api/calls", token=None)
            assert status == 401, body
            status, body = _http(admin, "GET", "/api/calls", token="wrong")
            assert status == 401, body
            status, body = _http(admin, "GET", "/api/calls")
            assert status == 200 and isinstance(body, dict)
            assert sorted(c["id"] for c in body["calls"]) == sorted(c["id"] for c in calls)
            assert body["draining"] is False
            assert _http(admin, "GET", "/readyz", token=None)[0] == 200
            # one call hung up by the operator
            gone = calls[0]["id"]
            status, body = _http(admin, "POST", f"/api/calls/{gone}/hangup")
            assert status == 200, body
            assert _http(admin, "POST", "/api/calls/nope/hangup")[0] == 404
            assert [c["id"] for c in _live(cfg, 1)] == [calls[1]["id"]]
            # the drain: refused from now on, the last call ended after drain_s, the process exits 0
            res = _cli(cfg, "drain")
            assert res.returncode == 0, res.stderr
            deadline = time.monotonic() + 5
            while _http(admin, "GET", "/readyz", token=None)[0] != 503 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _http(admin, "GET", "/readyz", token=None)[0] == 503
            assert _http(admin, "GET", "/healthz", token=None)[0] == 200
            answer = options(port)
            assert answer.startswith("SIP/2.0 503") and re.search(r"^Retry-After: \d+", answer, re.M), answer
            refused = subprocess.run([SIPP, "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p",
                                      str(free_port()), "-m", "1", "-trace_msg", "-message_file",
                                      str(tmp_path / "refused_msg.log"), "-nostdin"], cwd=tmp_path,
                                     capture_output=True, timeout=30)
            assert refused.returncode != 0
            text = (tmp_path / "refused_msg.log").read_text(errors="replace")
            assert "SIP/2.0 503" in text and re.search(r"^\s*Retry-After: \d+", text, re.M)
            assert proc.proc is not None
            assert proc.proc.wait(20) == 0, proc.log()[-3000:]
            callers.wait(20)
        finally:
            proc.stop()
    byes = _byes(tmp_path / "uac_msg.log")
    assert len(byes) == 2
    assert any('text="Call ended by the operator"' in b for b in byes)
    assert any('text="Service restarting"' in b for b in byes)
    assert len(_byes(tmp_path / "uas_msg.log")) == 2  # the callees were hung up too
    rows = _cdr(tmp_path)
    assert sorted(r["end_cause"] for r in rows if r["status"] == 200) == ["operator_hangup", "shutdown"], rows
    assert [r["status"] for r in rows if r["status"] != 200] == []  # the refused call never became a call
    assert "drain" in proc.log() and "Traceback" not in proc.log()


def test_a_second_sigterm_ends_the_drain_at_once(tmp_path: Path) -> None:
    uas_port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path):
        proc, port, _ = _start(tmp_path, uas_port, drain_s=600)
        try:
            callers = _callers(tmp_path, port, 1)
            _live(proc.config, 1)
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGTERM)
            time.sleep(0.5)
            assert proc.alive()  # draining: the call may go on
            started = time.monotonic()
            os.kill(proc.proc.pid, signal.SIGTERM)
            assert proc.proc.wait(20) == 0, proc.log()[-3000:]
            assert time.monotonic() - started < 15  # not the 600 s drain
            callers.wait(20)
        finally:
            proc.stop()
    (bye,) = _byes(tmp_path / "uac_msg.log")
    assert 'text="Service restarting"' in bye
    assert [r["end_cause"] for r in _cdr(tmp_path)] == ["shutdown"]


def test_the_api_is_closed_on_tcp_without_a_token(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config")
    data = yaml.safe_load(cfg.read_text())
    admin = free_port()
    data["metrics"] = {"address": f"127.0.0.1:{admin}"}
    data["admin"] = {"token": None, "token_env": "B2BUA_TEST_NO_SUCH_TOKEN", "socket": None}
    cfg.write_text(yaml.safe_dump(data))
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        status, body = _http(admin, "GET", "/api/calls", token="anything")
        assert status == 403 and "admin.token" in str(body)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
        assert "b2bua_active_calls 0.0" in metrics and "process_resident_memory_bytes" in metrics
        res = _cli(cfg, "calls")  # no socket configured: said so, not a traceback
        assert res.returncode == 2 and "admin.socket is off" in res.stderr
    finally:
        proc.stop()
