"""Prompts: the shipped Korean prompts, operators' own files decoded by PyAV, and config checks."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import ROOT

from b2bua.config import ConfigError, load_config
from media.prompts_lib import PROMPT_DIR, PromptError, PromptLibrary


def test_every_text_has_its_shipped_audio() -> None:
    texts = yaml.safe_load((PROMPT_DIR / "texts.yaml").read_text(encoding="utf-8"))
    assert {"recording_notice", "lunch_break", "after_hours", "holiday", "office_moved", "construction",
            "city_notice", "long_call_end", "abuse_warning", "abuse_termination"} <= set(texts)
    lib = PromptLibrary()
    assert set(lib.names()) == set(texts)
    for name in texts:
        samples = lib.get(name)
        assert 2.0 < len(samples) / 8000 < 30.0, name
        assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 500, f"{name} is (nearly) silent"
        with wave.open(str(PROMPT_DIR / f"{name}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)


def test_operator_file_is_resampled_to_8khz_mono(tmp_path: Path) -> None:
    t = np.arange(int(44100 * 1.5)) / 44100
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    path = tmp_path / "greeting.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.column_stack([tone, tone]).tobytes())
    lib = PromptLibrary(base=tmp_path)
    samples = lib.get("greeting.wav")
    assert abs(len(samples) / 8000 - 1.5) < 0.05
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / len(samples) - 440) < 5
    assert lib.get("greeting.wav") is samples  # decoded once, then cached


def test_a_decoded_prompt_serves_every_library_until_its_file_changes(tmp_path: Path) -> None:
    """The config check at start-up decodes each prompt once; the calls' library reuses it, and a file
    edited before a reload is decoded again."""
    import os

    from b2bua.prompts import PromptSource

    path = tmp_path / "notice.wav"
    for seconds in (1.0, 2.0):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(np.zeros(int(8000 * seconds), np.int16).tobytes())
        if seconds == 2.0:
            os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000_000))  # edited later
        checked = PromptLibrary(base=tmp_path).get("notice.wav")
        played = PromptSource(tmp_path).get("notice.wav")
        assert played is checked and len(played) == 8000 * seconds


def test_missing_and_broken_prompts(tmp_path: Path) -> None:
    lib = PromptLibrary(base=tmp_path)
    with pytest.raises(PromptError, match="no file"):
        lib.get("nope")
    (tmp_path / "broken.mp3").write_bytes(b"\x00\x01not audio at all" * 50)
    with pytest.raises(PromptError, match="cannot decode|no audio"):
        lib.get("broken.mp3")


def test_check_config_reports_bad_prompts_with_file_and_line(tmp_path: Path) -> None:
    for name in ("b2bua.yaml", "holidays.yaml", "abuse_lexicon.yaml"):
        (tmp_path / name).write_text((ROOT / "config" / name).read_text())
    routing = (ROOT / "config" / "routing.yaml").read_text()
    head, sep, tail = routing.partition("- name: 주택정책과")
    routing = head + sep + tail.replace("lunch: lunch_break", "lunch: lunch_brek", 1)  # the second department
    routing = routing.replace("moved: office_moved,", "moved: sounds/moved.mp3,")
    (tmp_path / "sounds").mkdir()
    (tmp_path / "sounds" / "moved.mp3").write_bytes(b"garbage" * 100)
    (tmp_path / "routing.yaml").write_text(routing)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "b2bua.yaml")
    problems = err.value.problems
    lines = routing.splitlines()
    lunch_line = next(i for i, ln in enumerate(lines, 1) if "lunch_brek" in ln)
    moved_line = next(i for i, ln in enumerate(lines, 1) if "sounds/moved.mp3" in ln)
    assert any(p.startswith(f"{tmp_path / 'routing.yaml'}:{lunch_line}: departments.1.policy.ringback.lunch: "
                            "prompt 'lunch_brek': no file") for p in problems), problems
    assert any(p.startswith(f"{tmp_path / 'routing.yaml'}:{moved_line}: departments.2.policy.ringback.moved:")
               and ("cannot decode" in p or "no audio" in p) for p in problems), problems
