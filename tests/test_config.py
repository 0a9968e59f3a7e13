"""Configuration loading: every problem is ``file:line: what is wrong``, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT

from b2bua.config import ConfigError, load_config


def _write(tmp: Path, b2bua: str | None = None, routing: str | None = None) -> Path:
    (tmp / "b2bua.yaml").write_text(b2bua if b2bua is not None else (ROOT / "config" / "b2bua.yaml").read_text())
    shipped = (ROOT / "config" / "routing.yaml").read_text()
    (tmp / "routing.yaml").write_text(routing if routing is not None else shipped)
    (tmp / "holidays.yaml").write_text((ROOT / "config" / "holidays.yaml").read_text())
    (tmp / "abuse_lexicon.yaml").write_bytes((ROOT / "config" / "abuse_lexicon.yaml").read_bytes())
    return tmp / "b2bua.yaml"


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


def test_shipped_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "b2bua.yaml")
    assert cfg.process.sip.listen == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    lab = [r for r in cfg.routing.routes if r.prefix == ""]
    assert lab and lab[0].targets == ["sip:127.0.0.1:5080"]
    assert {d.name for d in cfg.routing.departments} >= {"교통정책과", "주택정책과", "민원여권과", "총무과"}
    assert [t.kind for t in cfg.routing.trunks].count("carrier") == 2
    assert cfg.holidays.is_holiday(__import__("datetime").date(2026, 9, 25))


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  listen: [udp:127.0.0.1:5060\nlogging: {}\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:3: YAML syntax error")


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  listen: [udp:127.0.0.1:5060]\n  timers:\n    t1_msec: 500\n")
    (problem,) = _problems(path)
    assert problem == f"{path}:4: sip.timers.t1_msec: unknown key 't1_msec' (did you mean 't1_ms'?)"


def test_wrong_type_shows_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  ring_timeout_s: soon\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:2: sip.ring_timeout_s:") and "'soon'" in problem


def test_bad_listen_address(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  listen:\n    - sctp:127.0.0.1:5060\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: sip.listen:") and "udp|tcp|tls" in problem


def test_missing_routing_file(tmp_path: Path) -> None:
    (tmp_path / "b2bua.yaml").write_text("routing_file: nowhere.yaml\n")
    (problem,) = _problems(tmp_path / "b2bua.yaml")
    assert problem == f"{tmp_path / 'nowhere.yaml'}:1: file not found"


def test_problems_in_both_files_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "sip:\n  force_rport: maybe\n",
                  "routes:\n  - name: a\n    targets: [http://x]\n  - name: a\n    targets: [sip:127.0.0.1]\n"
                  "devices:\n  - username: u1\n")
    problems = _problems(path)
    assert any(p.startswith(f"{path}:2: sip.force_rport") for p in problems)
    routing = tmp_path / "routing.yaml"
    assert any(p.startswith(f"{routing}:3: routes.0.targets") and "not a sip" in p for p in problems)
    assert any(p.startswith(f"{routing}:7: devices.0: missing required key 'password'") for p in problems)


def test_duplicate_route_names(tmp_path: Path) -> None:
    path = _write(tmp_path, routing="routes:\n  - name: a\n    targets: [sip:127.0.0.1]\n"
                                    "  - name: a\n    targets: [sip:127.0.0.2]\n")
    problems = _problems(path)
    where = f"{tmp_path / 'routing.yaml'}:4"
    assert any(p.startswith(f"{where}: routes.1.name: duplicate route name 'a'") for p in problems)
    assert any(p.startswith(f"{tmp_path / 'routing.yaml'}:4: routes.1.prefix: prefix '' is already routed by route 'a'")
               for p in problems), problems


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "b2bua", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_config_cli(tmp_path: Path) -> None:
    ok = _cli("check-config")
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = _write(tmp_path, "sip:\n  timers:\n    t1_ms: -5\n")
    res = _cli("check-config", "--config", str(bad))
    assert res.returncode != 0
    assert res.stdout.startswith(f"{bad}:3: sip.timers.t1_ms:")
    assert "Traceback" not in res.stdout + res.stderr


def test_run_refuses_a_bad_config_without_traceback(tmp_path: Path) -> None:
    bad = _write(tmp_path, "sip: [1, 2\n")
    res = _cli("run", "--config", str(bad))
    assert res.returncode == 2
    assert res.stderr.startswith(f"{bad}:") and "Traceback" not in res.stderr


def test_dangling_references_suggest_the_right_name(tmp_path: Path) -> None:
    routing = (ROOT / "config" / "routing.yaml").read_text()
    routing = routing.replace("trunks: [carrier-a, carrier-b]", "trunks: [carrier-a, carier-b]")
    routing = routing.replace("    schedule: passport-office\n", "    schedule: pasport-office\n")
    path = _write(tmp_path, routing=routing)
    problems = _problems(path)
    rpath = tmp_path / "routing.yaml"
    line_trunk = routing.splitlines().index("    trunks: [carrier-a, carier-b]") + 1
    assert f"{rpath}:{line_trunk}: routes.0.trunks.1: no trunk named 'carier-b' (did you mean 'carrier-b'?)" in problems
    assert any("schedule: no schedule named 'pasport-office' (did you mean 'passport-office'?)" in p for p in problems)


def test_department_number_claimed_twice(tmp_path: Path) -> None:
    routing = (ROOT / "config" / "routing.yaml").read_text().replace('numbers: ["02-2133-5000"]',
                                                                      'numbers: ["+82 2 2133 2200"]')
    problems = _problems(_write(tmp_path, routing=routing))
    assert any("is also a number of department '교통정책과'" in p for p in problems), problems


def test_bad_schedule_hours(tmp_path: Path) -> None:
    routing = (ROOT / "config" / "routing.yaml").read_text().replace('thu: ["09:00-20:00"]', 'thu: ["09:00-25:00"]')
    (problem,) = _problems(_write(tmp_path, routing=routing))
    line = routing.splitlines().index('      thu: ["09:00-25:00"]') + 1
    assert problem.startswith(f"{tmp_path / 'routing.yaml'}:{line}: schedules.1.hours.thu.0:") and "25:00" in problem
