"""The reference peers the benchmarks compare against run from a fresh clone: calls through Kamailio's stateful
proxy (``cps.py --systems kamailio``) and RTP through rtpengine set up over its ng protocol
(``media.py --systems rtpengine``). Correctness only (every call completed, no packet lost); the figures
themselves are for ``scripts/bench`` runs, never for pass/fail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT

pytestmark = pytest.mark.slow


def test_cps_places_every_call_through_kamailio() -> None:
    assert shutil.which("kamailio") or Path("/usr/sbin/kamailio").exists(), \
        "kamailio is not installed: apt install kamailio (./scripts/test.sh installs it)"
    res = subprocess.run([sys.executable, "scripts/bench/cps.py", "--systems", "kamailio", "--rates", "10",
                          "--duration", "3", "--no-sippy", "--json", "-", "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = json.loads(res.stdout)["results"]
    assert row["error"] is None, row
    assert (row["attempted"], row["uac_ok"], row["uas_ok"], row["failed"]) == (30, 30, 30, 0), row
    assert row["cpu_ms_per_call"] > 0  # Kamailio's processes were found and measured


def test_media_relays_every_packet_through_rtpengine() -> None:
    assert shutil.which("rtpengine"), "rtpengine is not installed: apt install rtpengine-daemon " \
                                      "(./scripts/test.sh installs it)"
    res = subprocess.run([sys.executable, "scripts/bench/media.py", "--systems", "rtpengine", "--calls", "4",
                          "--seconds", "3"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("rtpengine ")]
    assert len(rows) == 1, res.stdout
    # code phases workers calls flood pkts/s cpu% us/pkt gen% echo% loss% others flooded drops p50 p99 RSS/call
    row = rows[0]
    # packets went through rtpengine and back from SIPp's echo (how many a second is the generator's pace on
    # this host, not judged here)
    assert float(row[5]) > 0, res.stdout
    assert float(row[10]) == 0.0 and row[13] == "0/0/0", res.stdout  # nothing lost, no socket overflowed
