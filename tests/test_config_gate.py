"""The config check as a safe gate: each mistake an operator made (issue #13) is a ``file:line: what is
wrong`` line or a warning, never a traceback, and nothing that passes the check fails when the process runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from harness import ROOT
from test_config import _problems, _write

from b2bua.config import load_config
from b2bua.routing.router import Router

SHIPPED = (ROOT / "config" / "routing.yaml").read_text()
PROCESS = (ROOT / "config" / "b2bua.yaml").read_text()


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _check_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "b2bua", "check-config", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_an_impossible_date_is_a_line_not_a_traceback(tmp_path: Path) -> None:
    routing = SHIPPED.replace("from_date: 2026-12-21", "from_date: 2026-02-30")
    path = _write(tmp_path, routing=routing)
    (problem,) = _problems(path)
    line = _line(routing, "2026-02-30")
    assert problem.startswith(f"{tmp_path / 'routing.yaml'}:{line}: schedules.1.overrides.0.from_date:")
    assert "day value is outside expected range" in problem and "'2026-02-30'" in problem
    res = _check_config(path)
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr and problem in res.stdout


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    routing = SHIPPED.replace('    lunch: "12:00-13:00"\n    holidays: true',
                              '    lunch: "12:00-13:00"\n    holidays: true\n    lunch: "12:30-13:30"', 1)
    path = _write(tmp_path, routing=routing)
    (problem,) = _problems(path)
    first = _line(routing, 'lunch: "12:00-13:00"')
    assert problem == f"{tmp_path / 'routing.yaml'}:{first + 2}: lunch: listed twice (first at line {first})"


def test_yaml_merge_keys_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, PROCESS + "\nbase: &base {level: info}\nlog2:\n  <<: *base\n")
    problems = _problems(path)
    assert f"{path}:{PROCESS.count(chr(10)) + 4}: YAML merge keys (<<) are not supported: write the keys out" \
        in problems


def test_a_time_is_never_read_as_a_base_60_number(tmp_path: Path) -> None:
    routing = SHIPPED.replace('lunch: "12:00-13:00"', "lunch: 12:00", 1)
    problems = _problems(_write(tmp_path, routing=routing))
    assert len(problems) == 1 and "'12:00'" in problems[0] and "720" not in problems[0]
    routing = SHIPPED.replace('lunch: "12:00-13:00"', "lunch: 12:00-13:00")  # unquoted: fine
    assert load_config(_write(tmp_path, routing=routing)).routing.schedules[0].lunch is not None


def test_the_same_number_twice_in_a_department_and_a_did_without_area_code(tmp_path: Path) -> None:
    routing = SHIPPED.replace('numbers: ["02-2133-2200"]', 'numbers: ["02-2133-2200", "+82221332200", "2133-7001"]')
    problems = _problems(_write(tmp_path, routing=routing))
    line = _line(routing, "2133-7001")
    where = f"{tmp_path / 'routing.yaml'}:{line}: departments.0.numbers"
    assert problems == [
        f"{where}.1: '+82221332200' is listed twice in this department (as '02-2133-2200')",
        f"{where}.2: '2133-7001' has no area code: a carrier sends it as E.164 (+82...), so write it with its "
        "area code (02-2133-7001)"]
    nationwide = SHIPPED.replace('numbers: ["02-2133-2200"]', 'numbers: ["02-2133-2200", "1588-1234"]')
    load_config(_write(tmp_path, routing=nationwide))  # 대표번호 need no area code


def test_one_address_range_in_two_trunks_is_refused_and_the_most_specific_range_decides(tmp_path: Path) -> None:
    twice = SHIPPED.replace("addresses: [198.51.100.20/32]", "addresses: [203.0.113.10/32]")
    (problem,) = _problems(_write(tmp_path, routing=twice))
    assert problem == (f"{tmp_path / 'routing.yaml'}:{_line(twice, 'name: carrier-b') + 2}: trunks.1.addresses.0: "
                       "203.0.113.10/32 is also an address range of trunk 'carrier-a': which trunk a call came from "
                       "would be a guess")
    inside = SHIPPED.replace("addresses: [198.51.100.20/32]", "addresses: [127.0.0.2/32]")
    config = load_config(_write(tmp_path, routing=inside))  # carrier-b inside lab's 127.0.0.0/8, listed earlier
    router = Router(config, registrar=None)  # type: ignore[arg-type]
    source = router.source_trunk("127.0.0.2")
    assert source is not None and source.name == "carrier-b"
    other = router.source_trunk("127.0.0.3")
    assert other is not None and other.name == "lab"


@pytest.mark.parametrize(("storage", "wanted"), [
    ("url: postgresql+nosuchdriver://u@h/db", "no database driver for 'postgresql+nosuchdriver'"),
    ("url: 'sqlite:/var/b2bua.sqlite3'", "not a database URL"),
    ("url: 'sqlite://'", "an SQLite URL needs a file"),
    ("url: mysql+mysqldb://u@h/db", "the driver of 'mysql+mysqldb' is not installed"),
])
def test_a_database_url_that_would_fail_at_run_fails_the_check(tmp_path: Path, storage: str, wanted: str) -> None:
    process = PROCESS.replace("url: sqlite:///../var/b2bua.sqlite3", storage)
    assert process != PROCESS
    (problem,) = _problems(_write(tmp_path, process))
    assert problem.startswith(f"{tmp_path / 'b2bua.yaml'}:{_line(process, storage.split(':')[0] + ':')}: "
                              "storage.url:") and wanted in problem, problem


def test_a_metrics_address_without_port_and_an_empty_port_range_fail_the_check(tmp_path: Path) -> None:
    process = PROCESS.replace("address: 127.0.0.1:9090", "address: localhost")
    (problem,) = _problems(_write(tmp_path, process))
    assert problem == (f"{tmp_path / 'b2bua.yaml'}:{_line(process, 'address: localhost')}: metrics.address: "
                       "Value error, 'localhost' is not HOST:PORT (e.g. 127.0.0.1:9090, [::1]:9090) (got 'localhost')")
    process = PROCESS.replace("port_min: 20000", "port_min: 31000")
    (problem,) = _problems(_write(tmp_path, process))
    assert "media:" in problem and "port_min 31000 .. port_max 30000 holds no RTP/RTCP port pair" in problem


def test_example_passwords_unverified_tls_and_a_calendar_that_runs_out_are_warnings(tmp_path: Path) -> None:
    routing = SHIPPED.replace("holiday_calendar: KR", "holiday_calendar: null").replace(
        "  - name: carrier-b\n", "  - name: carrier-b\n    transport: tls\n", 1)
    process = PROCESS.replace("verify_peer: true", "verify_peer: false")  # a lab's choice, warned about
    assert process != PROCESS
    path = _write(tmp_path, b2bua=process, routing=routing)
    config = load_config(path)
    where = tmp_path / "routing.yaml"
    assert f"{where}:{_line(routing, 'change-me')}: devices.0.password: the example password of the shipped " \
           "configuration: set each staff device's own" in config.warnings
    assert any(w.startswith(f"{where}:{_line(routing, 'transport: tls')}: trunks.1.transport: TLS to trunk "
                            "'carrier-b' without verifying its certificate") for w in config.warnings)
    this_year = date.today().year
    assert any(f"no public holidays known for {this_year}" in w for w in config.warnings), config.warnings
    res = _check_config(path)
    assert res.returncode == 0 and res.stdout.count("warning: ") == len(config.warnings) >= 3
