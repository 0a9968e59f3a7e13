"""What a reload applies to the running process and what it names as needing a restart
(b2bua/live_settings.py), and `b2bua reload` saying so through the control socket."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from harness import ROOT, B2BUAProcess, free_port, options, write_config

from b2bua.call.settings import B2BUAConfig
from b2bua.config import ProcessConfig
from b2bua.live_settings import apply, changed, restart_needed
from b2bua.sip.stack import StackConfig
from b2bua.transport.limits import StreamLimits


def test_live_keys_are_applied_and_the_others_named() -> None:
    old = ProcessConfig()
    new = ProcessConfig.model_validate({"logging": {"level": "debug"}, "sip": {"ring_timeout_s": 30,
                                        "timers": {"t1_ms": 250}, "listen": ["udp:127.0.0.1:5070"],
                                        "max_transactions": 500, "connections": {"max_per_source": 8}},
                                        "media": {"port_max": 29000}, "admin": {"show_numbers": True}})
    assert changed(old.model_dump(), new.model_dump()) == [
        "admin.show_numbers", "logging.level", "media.port_max", "sip.connections.max_per_source", "sip.listen",
        "sip.max_transactions", "sip.ring_timeout_s", "sip.timers.t1_ms"]
    assert restart_needed(old, new) == ["media.port_max", "sip.listen"]

    class Target:
        stack_config = StackConfig()
        b2bua_config = B2BUAConfig()
        lag = 0.0
        shown = False

        def set_overload_lag(self, seconds: float) -> None:
            self.lag = seconds

        def set_show_numbers(self, show: bool) -> None:
            self.shown = show

        def set_stream_limits(self, limits: StreamLimits) -> None:
            self.limits = limits

        def move_admin(self, address: str | None) -> None:
            raise AssertionError("the address did not change")

        def set_admin_users(self, users: list) -> None:
            self.users = users

    t = Target()
    apply(t, old, new)
    assert t.stack_config.timers.t1 == 0.25 and t.b2bua_config.ring_timeout == 30 and t.shown is True
    assert t.lag == pytest.approx(0.25)
    assert t.stack_config.max_transactions == 500 and t.limits.max_per_source == 8


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_b2bua_reload_says_what_was_applied_and_what_needs_a_restart(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config")
    data = yaml.safe_load(cfg.read_text())
    data["admin"] = {"socket": "../var/ctl.sock"}
    first, moved = free_port(), free_port()
    data["metrics"] = {"address": f"127.0.0.1:{first}"}
    cfg.write_text(yaml.safe_dump(data))
    proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{free_port()}"], tmp_path / "b2bua.log").start()
    try:
        assert _healthy(first)
        data["logging"]["level"] = "debug"
        data["media"]["port_max"] = 29000
        data["metrics"] = {"address": f"127.0.0.1:{moved}"}
        cfg.write_text(yaml.safe_dump(data))
        res = subprocess.run([sys.executable, "-m", "b2bua", "reload", "--config", str(cfg)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reloaded" in res.stdout and "media.port_max: changed, needs restart" in res.stdout
        assert "logging.level" not in res.stdout and "metrics.address" not in res.stdout
        deadline = time.monotonic() + 5
        while not _healthy(moved) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _healthy(moved) and not _healthy(first)  # the admin listener moved without a restart
        assert options(int(proc.listen[0].rsplit(":", 1)[1])).startswith("SIP/2.0 200")  # logged at debug
        data["sip"]["ring_timeout_s"] = "soon"  # a broken file: refused, with its line, the running one stays
        cfg.write_text(yaml.safe_dump(data))
        res = subprocess.run([sys.executable, "-m", "b2bua", "reload", "--config", str(cfg)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1 and f"{cfg}:" in res.stdout and "ring_timeout_s" in res.stdout
        assert proc.alive()
    finally:
        proc.stop()
    assert "needs restart" in proc.log() and "DEBUG" in proc.log()  # the new log level took effect
