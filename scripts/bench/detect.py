#!/usr/bin/env python3
"""Abuse detection benchmark: how soon an abusive utterance is judged, and how many callers one machine follows.

For each number of monitored streams (``--streams 1,2,4``) this starts the real detection processes
(:class:`b2bua.detection.workers.DetectionPool`: the segmenter and ``--workers`` recognizers with the
embedded Whisper engine and the text classifier) and feeds every stream, paced in real time as the media
engine's tap does (100 ms batches), the same real Korean clip through G.711 in a loop, with a second of
silence after each repetition. The test lexicon lists a word of the clip as an insult, so every utterance
is a detection. Columns:

* ``judged``: utterances detected / utterances sent (a recognizer that falls behind drops utterances:
  ``dropped`` counts them);
* ``lat p50/p95 s``: from the end of the clip's audio (the moment its last frame was handed over) to the
  Detection reaching this process; the warning prompt's first packet follows within one 20 ms tick
  (the policy plays it at once), so this is the latency to the warning minus ~20 ms;
* ``cpu s/speech s``: CPU seconds of all detection processes per second of speech fed;
* ``rss MB``: the largest resident size of a recognizer process.

The machine is shared and noisy: read the columns side by side within one run, not against other runs.
Models come from ``var/`` (the speech model is assembled there at first use, the text model trained there).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from b2bua.detection.events import Detection  # noqa: E402  (the repository on the path first)
from b2bua.detection.workers import DetectionPool, DetectionSettings  # noqa: E402
from media import g711  # noqa: E402
from media.speech.audio import decode_file  # noqa: E402
from media.tap import TapBatch  # noqa: E402

sys.path.insert(1, str(Path(__file__).resolve().parent))  # after the repository, whose media package comes first
from cps import process_cpu_seconds  # noqa: E402  (the benchmarks' one CPU reading)

CLIP = ROOT / "tests" / "data" / "korean-speech" / "zeroth_104_003_0294.wav"  # ... 커피가 ...
WORD = "커피"


def phone_audio() -> np.ndarray:
    pcm = np.clip(decode_file(CLIP, 8000) * 32767, -32768, 32767).astype(np.int16)
    return g711.decode(g711.encode(pcm, 0), 0)


def lexicon_with_word(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "abuse_lexicon.yaml").read_text(encoding="utf-8"))
    data["categories"]["insult"]["entries"].append(WORD)
    path = folder / "abuse_lexicon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def cpu_seconds(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def run(streams: int, seconds: float, settings: DetectionSettings, workers: int) -> dict[str, float]:
    speech = phone_audio()
    cycle = np.concatenate([speech, np.zeros(8000, np.int16)])
    pool = DetectionPool(settings, workers)
    got: list[tuple[float, Detection]] = []
    pool.on_detection = lambda det: got.append((time.monotonic(), det))
    pool.start(asyncio.get_running_loop())
    pids = [p.pid for p in pool._procs]  # noqa: SLF001  (a benchmark looks inside)
    # warm up: the first utterance loads the models
    warm = {("warm", "a"): cycle.tobytes()}
    pool.tap_channel.put(TapBatch(warm, time.monotonic()))
    pool.tap_channel.put(TapBatch({("warm", "a"): np.zeros(8000, np.int16).tobytes()}, time.monotonic()))
    deadline = time.monotonic() + 300
    while not got and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    got.clear()
    cpu0 = cpu_seconds(pids)
    ends: dict[tuple[str, int], float] = {}  # (stream, repetition) -> when its last speech frame went out
    start = time.monotonic()
    step = 800  # 100 ms, as the tap hands it over
    n = 0
    sent = 0
    while time.monotonic() - start < seconds:
        pos = (n * step) % len(cycle)
        rep = (n * step) // len(cycle)
        chunk = cycle[pos:pos + step]
        batch = {(f"s{i}", "a"): chunk.tobytes() for i in range(streams)}
        pool.tap_channel.put(TapBatch(batch, time.monotonic()))
        if pos <= len(speech) < pos + step:
            for i in range(streams):
                ends[(f"s{i}", rep)] = time.monotonic()
            sent += streams
        n += 1
        await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))
    await asyncio.sleep(8.0)  # the last utterances
    cpu = cpu_seconds(pids) - cpu0
    rss = max(rss_mb(p) for p in pids[1:])
    totals = pool.totals()
    pool.close()
    lat = []
    for at, det in got:
        if det.abusive and WORD in det.text.replace(" ", ""):
            rep = int(det.start // (len(cycle) / 8000))
            end = ends.get((det.session, rep))
            if end is not None:
                lat.append(at - end)
    speech_s = sent * len(speech) / 8000
    return {"streams": streams, "sent": sent, "judged": len(lat), "dropped": totals.get("jobs_dropped", 0),
            "p50": float(np.percentile(lat, 50)) if lat else float("nan"),
            "p95": float(np.percentile(lat, 95)) if lat else float("nan"),
            "cpu": cpu / speech_s if speech_s else float("nan"), "rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="1,2,4", help="monitored streams to compare")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each configuration is fed")
    ap.add_argument("--workers", type=int, default=1, help="recognizer processes")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per recognizer")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="detect-bench-"))
    settings = DetectionSettings(model_dir=str(ROOT / "var" / "whisper-base"), lexicon=str(lexicon_with_word(folder)),
                                 model_cache=str(ROOT / "var" / "abuse-models"), threads=args.threads)
    rows = []
    for streams in [int(x) for x in args.streams.split(",")]:
        print(f"[detect] {streams} stream(s), {args.seconds:.0f} s ...", file=sys.stderr)
        rows.append(asyncio.run(run(streams, args.seconds, settings, args.workers)))
    print(f"workers={args.workers} threads={args.threads} clip={CLIP.name}")
    print(f"{'streams':>7} {'sent':>5} {'judged':>6} {'dropped':>7} {'lat p50 s':>9} {'lat p95 s':>9} "
          f"{'cpu s/speech s':>14} {'rss MB':>7}")
    for r in rows:
        print(f"{r['streams']:>7} {r['sent']:>5} {r['judged']:>6} {r['dropped']:>7} {r['p50']:>9.2f} {r['p95']:>9.2f} "
              f"{r['cpu']:>14.3f} {r['rss']:>7.0f}")


if __name__ == "__main__":
    main()
