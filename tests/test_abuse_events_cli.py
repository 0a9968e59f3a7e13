"""``b2bua abuse events`` and ``b2bua abuse label`` on a real database: what operators read and label."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from harness import ROOT, write_config
from sqlalchemy import create_engine

from b2bua.detection.events import AbuseEvent
from b2bua.storage.abuse import AbuseEvents


def _b2bua(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua", "abuse", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def test_events_are_listed_as_json_lines_and_labels_stick(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config")
    (tmp_path / "var").mkdir()
    store = AbuseEvents(create_engine(f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}"), tmp_path / "var" / "rec")
    for n, (category, action) in enumerate([("insult", "warned"), ("threat", "terminated")]):
        store.record(AbuseEvent(f"ev{n}", "c1", "x@y", "교통정책과", 3.0 + n, category, 0.9, f"말 {n}", "whisper-base",
                                "m1", action, None, np.zeros(800, np.int16).tobytes()))
    store.flush()
    store.close()
    listed = _b2bua("events", "--config", str(cfg))
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["event_id"], r["category"], r["action"], r["label"]) for r in rows] == [
        ("ev0", "insult", "warned", "unlabelled"), ("ev1", "threat", "terminated", "unlabelled")]
    assert rows[0]["transcript"] == "말 0" and rows[0]["clip_sha256"] and rows[0]["time"]
    done = _b2bua("label", "ev1", "--reject", "--by", "operator-kim", "--config", str(cfg))
    assert done.returncode == 0 and "rejected by operator-kim" in done.stdout
    assert _b2bua("label", "nope", "--confirm", "--config", str(cfg)).returncode == 1
    rows = [json.loads(line) for line in _b2bua("events", "--call", "c1", "--config", str(cfg)).stdout.splitlines()]
    assert [r["label"] for r in rows] == ["unlabelled", "rejected"] and rows[1]["labelled_by"] == "operator-kim"
    assert _b2bua("events", "--since", "2999-01-01", "--config", str(cfg)).stdout == ""
    assert _b2bua("label", "ev0", "--config", str(cfg)).returncode == 2  # --confirm or --reject is required
