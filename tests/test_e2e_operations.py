"""Operations: hot reload across a live call, refused reloads, Prometheus metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import ROOT, SIPP, B2BUAProcess, free_port, sipp, sipp_background, write_config

pytestmark = pytest.mark.usefixtures("sipp_installed")


def _routes(port: int) -> dict:
    return {"routes": [{"name": f"to-{port}", "prefix": "", "targets": [f"sip:127.0.0.1:{port}"]}]}


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_reload_swaps_routing_for_new_calls_and_keeps_live_ones(tmp_path: Path) -> None:
    old_uas, new_uas = free_port(), free_port()
    metrics = free_port()
    cfg = write_config(tmp_path / "config", routing=_routes(old_uas))
    data = yaml.safe_load(cfg.read_text())
    data["metrics"] = {"address": f"127.0.0.1:{metrics}"}
    data.setdefault("media", {})["workers"] = 2  # (the default on two cores; a one-core machine would say 0)
    cfg.write_text(yaml.safe_dump(data))
    port = free_port()
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(old_uas)], tmp_path), \
         sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(new_uas)], tmp_path):
        proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
        try:
            # a long call on the old route, in flight across both reloads
            live = subprocess.Popen([SIPP, "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
                                     "-m", "1", "-d", "4000", "-nostdin"], cwd=tmp_path,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert _wait(lambda: f"to=sip:service@127.0.0.1:{port}" in proc.log())
            # 1. a broken routing file: refused with file:line, the running config stays
            routing = tmp_path / "config" / "routing.yaml"
            good = routing.read_text()
            routing.write_text(good.replace("targets:", "targetz:"))
            res = subprocess.run([sys.executable, "-m", "b2bua", "reload", "--config", str(cfg)], cwd=ROOT,
                                 capture_output=True, text=True)
            assert res.returncode == 1 and f"{routing}:" in res.stdout and "did you mean 'targets'" in res.stdout
            os.kill(proc.proc.pid, signal.SIGHUP)  # the process itself refuses it too
            assert _wait(lambda: "reload refused:" in proc.log())
            # 2. a valid change: new calls go to the new callee
            data = yaml.safe_load(good)
            data.update(_routes(new_uas))
            routing.write_text(yaml.safe_dump(data))
            res = subprocess.run([sys.executable, "-m", "b2bua", "reload", "--config", str(cfg)], cwd=ROOT,
                                 capture_output=True, text=True)
            assert res.returncode == 0, res.stdout + res.stderr
            assert _wait(lambda: "configuration reloaded" in proc.log())
            res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "2",
                        "-d", "100"], tmp_path)
            assert res.returncode == 0
            assert live.wait(20) == 0, "the call that started before the reloads was dropped"
            proc.settle()
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        finally:
            proc.stop()
    log = proc.log()
    assert log.count("end status=200 cause=normal") == 3
    assert f'b2bua_call_attempts_total{{route="to-{old_uas}"}} 1.0' in body
    assert f'b2bua_call_attempts_total{{route="to-{new_uas}"}} 2.0' in body
    assert 'b2bua_config_reloads_total{result="ok"} 1.0' in body
    assert 'b2bua_config_reloads_total{result="failed"} 1.0' in body
    assert f'b2bua_calls_ended_total{{cause="normal",route="to-{new_uas}"}} 2.0' in body
    assert "b2bua_call_setup_seconds_count 3.0" in body
    assert "b2bua_active_calls 0.0" in body
    assert 'b2bua_responses_sent_total{code="200"}' in body
    assert 'b2bua_trunk_call_attempts_total{trunk="lab"} 3.0' in body
    assert 'b2bua_rtp_packets_total{what="rtp_lost"} 0.0' in body
    assert 'b2bua_recordings_total{result="started"} 0.0' in body  # lab calls have no department
    assert 'b2bua_recording_files_total{result="failures"} 0.0' in body
    assert "b2bua_gc_full_passes_total 0.0" in body  # a quiet process's heap does not grow: no full pass
    assert "b2bua_gc_last_full_pause_seconds 0.0" in body
    assert 'b2bua_media_worker_sessions{worker="0"} 0.0' in body  # the three calls' sessions are gone
    assert 'b2bua_media_worker_sessions{worker="1"} 0.0' in body
    assert "b2bua_media_workers_gone 0.0" in body
