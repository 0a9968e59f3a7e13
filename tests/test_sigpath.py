"""scripts/bench/sigpath.py drives real calls through the process's parts: every call completes, nothing stays."""

from __future__ import annotations

import shutil

from harness import ROOT, bench_module

sigpath = bench_module("sigpath")


def test_the_in_process_signalling_bench_completes_every_call_it_places() -> None:
    folder = sigpath.bench_folder(ROOT)
    try:
        got = sigpath.child(calls=60, rate=200.0, warmup=20, folder=folder)
    finally:
        shutil.rmtree(folder)
    assert got["ended"] == 80 and got["live"] == 0  # BYE'd and finished, none left behind
    # what SIPp would receive per call: 100, 180, 200 and the BYE's 200 back to the caller; INVITE, ACK and
    # BYE to the staff side (the bench asserts the INVITE and BYE arrive and answers them)
    assert (got["to_a"], got["to_b"]) == (4.0, 3.0)
