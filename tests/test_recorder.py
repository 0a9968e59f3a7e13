"""The recording writer: never blocks its caller, bounded when the disk stalls, files playable throughout."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from rtp_peer import read_recording

from media.recorder import HEADER, Finished, RecordingWriter

FRAME = b"\xff" * 320  # 20 ms of 8 kHz stereo mu-law (silence)


def test_a_stalled_disk_drops_and_counts_frames_without_blocking_the_tick(tmp_path: Path, caplog) -> None:
    fifo = tmp_path / "stalled.wav"
    os.mkfifo(fifo)  # opening it for writing blocks until someone reads: a disk that hangs
    done: list[Finished] = []
    writer = RecordingWriter(done.append, max_lag=0.2)
    writer.open("c1", str(fifo))
    longest = 0.0
    for _ in range(50):  # half a second of frames; the writer is stuck on the first entry
        start = time.monotonic()
        writer.put_many([("c1", FRAME)])
        longest = max(longest, time.monotonic() - start)
        time.sleep(0.01)
    assert longest < 0.05  # never waited for the disk
    assert writer.dropped >= 20  # once the writer was 0.2 s behind
    assert sum("recording disk too slow" in r.message for r in caplog.records) == 1  # logged, once
    drain = threading.Thread(target=lambda: open(fifo, "rb").read())
    drain.start()
    writer.close("c1")
    deadline = time.monotonic() + 5
    while writer._q.qsize() and time.monotonic() < deadline:  # the disk is back: the backlog drains
        time.sleep(0.01)
    # the hung file ends (here with an error: a FIFO cannot seek to rewrite the header) and the
    # writer goes on serving the next call
    writer.open("c2", str(tmp_path / "next.wav"))
    writer.put_many([("c2", FRAME)] * 3)
    writer.close("c2")
    writer.stop()
    drain.join(5)
    assert [d.key for d in done] == ["c1", "c2"]
    assert done[1].error is None and done[1].size == HEADER + 3 * len(FRAME)
    assert abs(done[1].seconds - 0.06) < 1e-9


def test_file_is_a_valid_wav_while_still_being_written(tmp_path: Path) -> None:
    writer = RecordingWriter()
    path = tmp_path / "live.wav"
    writer.open("c1", str(path))
    for n in range(1, 4):
        writer.put_many([("c1", FRAME * 20)])  # the engine's batch: 400 ms
        deadline = time.monotonic() + 5
        while writer._q.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        # after every batch (the call still running, nothing closed) a reader gets all of it
        assert len(read_recording(path, "pcm_mulaw")) == n * 20 * 160
    writer.close("c1")
    writer.stop()
