"""The recordings index: rows with SHA-256, post-call conversion, and repair after a crash."""

from __future__ import annotations

import wave
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from rtp_peer import read_recording
from sqlalchemy import create_engine

from b2bua.call.protection import RecordingStarted
from b2bua.routing.schedule import SEOUL
from b2bua.storage.recordings import RecordingIndex, sha256_file
from media import g711
from media.archive import convert
from media.recorder import ALAW, HEADER, repair, wav_header


def _tones(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 700 * t)], 1) * 8000).astype("<i2")


def _wav(path: Path, seconds: float = 2.0) -> np.ndarray:
    """A recording as the writer makes it: stereo A-law codes; returns the codes (frames, 2)."""
    codes = g711.encode(_tones(seconds), 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_header(codes.nbytes, ALAW) + codes.tobytes())
    return codes


def _pcm_wav(path: Path, seconds: float) -> np.ndarray:
    """A 16-bit PCM recording, as versions before G.711 files wrote them."""
    x = _tones(seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(x.tobytes())
    return x


def _index(tmp: Path, **kw) -> RecordingIndex:
    return RecordingIndex(create_engine(f"sqlite:///{tmp / 'db.sqlite3'}"), tmp / "rec", **kw)


def _start(index: RecordingIndex, path: str, reason: str = "full") -> None:
    index.started(RecordingStarted("c1", "교통정책과", "inbound", reason, path, 1000.0))


def test_row_completed_with_size_duration_and_hash_of_the_final_file(tmp_path: Path) -> None:
    index = _index(tmp_path)
    path = index.path_for("c1", 1)
    assert path.endswith("c1-1.wav") and str(tmp_path / "rec") in path
    _start(index, path, "on_demand")
    _wav(Path(path))
    index.stopped(path, 1002.5)
    index.finished(path, 2.0, Path(path).stat().st_size, None).result()
    [row] = index.rows()
    assert row["status"] == "complete" and row["reason"] == "on_demand" and row["format"] == "wav"
    assert (row["start"], row["end"], row["duration"]) == (1000.0, 1002.5, 2.0)
    assert row["size"] == Path(path).stat().st_size and row["sha256"] == sha256_file(Path(path))
    index.close()


def test_a_disk_error_marks_the_row_failed(tmp_path: Path) -> None:
    index = _index(tmp_path)
    path = index.path_for("c1", 1)
    _start(index, path)
    index.finished(path, 0.0, 0, "[Errno 28] No space left on device").result()
    [row] = index.rows()
    assert row["status"] == "failed" and "No space" in row["error"]
    index.close()


@pytest.mark.parametrize("fmt,suffix", [("opus", ".ogg"), ("mp3", ".mp3")])
def test_post_call_conversion_keeps_the_hash_of_what_is_stored(tmp_path: Path, fmt: str, suffix: str) -> None:
    index = _index(tmp_path, fmt=fmt, convert=convert)
    path = index.path_for("c1", 1)
    _start(index, path)
    _wav(Path(path), 3.0)
    index.finished(path, 3.0, 0, None).result()
    index.close()
    [row] = index.rows()
    stored = Path(row["path"])
    assert stored.suffix == suffix and row["format"] == fmt and not Path(path).exists()
    assert row["sha256"] == sha256_file(stored) and row["size"] == stored.stat().st_size
    with av.open(str(stored)) as c:
        s = c.streams.audio[0]
        seconds = sum(f.samples for f in c.decode(s)) / s.sample_rate
    assert s.channels == 2 and abs(seconds - 3.0) < 0.1


def test_recover_repairs_unfinished_files_and_indexes_orphans(tmp_path: Path) -> None:
    index = _index(tmp_path)
    cut = Path(index.path_for("c1", 1))
    _start(index, str(cut))
    index._pool.submit(lambda: None).result()  # the start row is written
    x = _wav(cut, 2.0)
    with open(cut, "r+b") as f:  # as a kill -9 leaves it: sizes of an older sync, a torn last frame
        f.write(wav_header(8000, ALAW))
        f.seek(0, 2)
        f.write(b"\x01")
    today = datetime.now(SEOUL)
    orphan = tmp_path / "rec" / today.strftime("%Y/%m/%d") / "c9-1.wav"  # a crash before its row was written
    _wav(orphan, 1.0)
    legacy = tmp_path / "rec" / (today - timedelta(days=1)).strftime("%Y/%m/%d") / "c8-1.wav"  # 16-bit PCM, cut
    ancient = tmp_path / "rec" / "2020" / "01" / "01" / "c7-1.wav"  # no crash of today left it: not walked
    _wav(ancient, 1.0)
    pcm = _pcm_wav(legacy, 1.5)
    with open(legacy, "r+b") as f:
        f.seek(0, 2)
        f.write(b"\x01\x02\x03")
    fixed = index.recover(repair)
    assert fixed == 3
    rows = {r["path"]: r for r in index.rows()}
    row = rows[str(cut)]
    assert row["status"] == "repaired" and row["duration"] == 2.0 and row["size"] == HEADER + x.nbytes
    assert row["sha256"] == sha256_file(cut)
    assert np.array_equal(read_recording(cut, "pcm_alaw"), g711.decode(x, 8))
    o = rows[str(orphan)]
    assert o["status"] == "repaired" and o["reason"] == "unknown" and o["call_id"] == "c9"
    old = rows[str(legacy)]
    assert old["duration"] == 1.5 and old["size"] == 44 + pcm.nbytes == legacy.stat().st_size
    with wave.open(str(legacy)) as w:
        assert w.getnframes() == len(pcm)
    assert index.recover(repair) == 0  # nothing left to do
    assert str(ancient) not in rows
    index.close()


def test_folders_are_seoul_days_and_retention_removes_each_departments_old_recordings(tmp_path: Path) -> None:
    index = _index(tmp_path)
    path = Path(index.path_for("c1", 1))
    assert path.parent == tmp_path / "rec" / datetime.now(SEOUL).strftime("%Y/%m/%d")
    for call, dept, start in (("c1", "교통정책과", 1000.0), ("c2", "총무과", 1000.0), ("c3", "교통정책과", 90000.0),
                              ("c4", "없어진과", 1000.0)):
        p = tmp_path / "rec" / f"{call}-1.wav"
        _wav(p, 0.1)
        index.started(RecordingStarted(call, dept, "inbound", "full", str(p), start))
    index._pool.submit(lambda: None).result()
    now = 1000.0 + 10 * 86400 + 1
    # 교통정책과 keeps 10 days (c1 goes, c3 is younger), 총무과 keeps everything (null): so does an unknown one
    assert index.purge_all({"교통정책과": 10, "총무과": None}, now=now) == 1
    left = {r["call_id"] for r in index.rows()}
    assert left == {"c2", "c3", "c4"} and not (tmp_path / "rec" / "c1-1.wav").exists()
    assert (tmp_path / "rec" / "c2-1.wav").exists() and index.counts["purged"] == 1
    assert index.purge_all({"교통정책과": 10, "총무과": 30}, now=now) == 0  # 30 days have not passed
    later = 1000.0 + 30 * 86400 + 1
    assert index.purge_all({"교통정책과": 10, "총무과": 30}, now=later) == 3  # c2, c3, and c4 by the longest (30)
    assert index.rows() == []
    index.close()
