"""Packaging: the wheel carries everything the process needs at run time, and the systemd unit and the
container file agree with it and with the drain (packaging/)."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from harness import ROOT

from b2bua.config import ShutdownConfig

PACKAGING = ROOT / "packaging"


@pytest.mark.slow
def test_the_wheel_has_the_code_prompts_abuse_data_and_the_command(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("b2bua-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("b2bua/cli.py", "b2bua/admin.py", "b2bua/call/b2bua.py", "media/engine.py", "media/api.py"):
        assert needed in names, needed
    assert any(n.startswith("media/prompts/") and n.endswith(".wav") for n in names)
    assert any(n.startswith("b2bua/abuse/data/") for n in names)
    assert not any(n.startswith(("tests/", "config/", "scripts/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "b2bua = b2bua.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)  # systemd repeats some keys
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(PACKAGING / "b2bua.service")
    return unit


def test_the_systemd_unit_runs_the_checked_config_sandboxed_and_lets_the_drain_finish() -> None:
    unit = _unit()
    service = unit["Service"]
    config = "/srv/b2bua/config/b2bua.yaml"
    assert service["ExecStart"] == f"/srv/b2bua/venv/bin/b2bua run --config {config}"
    assert service["ExecStartPre"] == f"/srv/b2bua/venv/bin/b2bua check-config --config {config}"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID" and service["KillSignal"] == "SIGTERM"
    drain = ShutdownConfig()
    assert int(service["TimeoutStopSec"]) > drain.drain_s + drain.bye_grace_s  # systemd never cuts the drain
    assert service["ReadWritePaths"] == "/srv/b2bua/var" and service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""
    assert service["User"] == "b2bua" and service["Restart"] == "on-failure"
    # the shipped config's relative paths land in the writable folder
    shipped = (ROOT / "config" / "b2bua.yaml").read_text()
    assert "../var/" in shipped


def test_the_container_installs_the_wheel_with_the_same_layout() -> None:
    text = (PACKAGING / "Containerfile").read_text()
    steps = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    kinds = [s[0] for s in steps]
    assert kinds.count("FROM") == 2 and "USER" in kinds and "HEALTHCHECK" in kinds
    assert "pip wheel" in text and "/srv/b2bua/venv/bin/pip install --no-cache-dir /wheels/*.whl" in text
    assert 'ENTRYPOINT ["/srv/b2bua/venv/bin/b2bua"]' in text
    assert 'CMD ["run", "--config", "/srv/b2bua/config/b2bua.yaml"]' in text
    assert "COPY config /srv/b2bua/config" in text and 'VOLUME ["/srv/b2bua/var"]' in text
    assert "STOPSIGNAL SIGTERM" in text and "/healthz" in text


def test_systemd_accepts_every_directive_of_the_unit() -> None:
    """``systemd-analyze verify``: no unknown key, bad value or section (only the missing binary of this
    machine, where the unit is not installed, is expected)."""
    import shutil

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    res = subprocess.run([analyze, "verify", str(PACKAGING / "b2bua.service")], capture_output=True, text=True,
                         timeout=60)
    complaints = [line for line in (res.stdout + res.stderr).splitlines()
                  if line.strip() and "/srv/b2bua/venv/bin/b2bua is not executable" not in line]
    assert complaints == [], complaints
