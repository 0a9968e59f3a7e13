"""The text-model registry (active pointer, activate, rollback), retraining from staff labels, live reload."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import ROOT, write_config
from sqlalchemy import create_engine

from b2bua.abuse.classifier import AbuseClassifier
from b2bua.abuse.corpora import PHONE_FILE
from b2bua.abuse.models import (
    POINTER,
    ModelError,
    activate,
    active_version,
    binary_macro_f1,
    labelled_samples,
    list_models,
    read_pointer,
    retrain,
    rollback,
    shipped_version,
)
from b2bua.abuse.textmodel import cache_path, held_out_samples, load_or_train
from b2bua.detection.events import AbuseEvent
from b2bua.storage.abuse import AbuseEvents

LEXICON = ROOT / "config" / "abuse_lexicon.yaml"
#: a made-up insult the shipped model does not know on its own
NEW_WORD = "뿌잉충"
TEACHING = ["너 진짜 뿌잉충이구나", "이 뿌잉충 같은 놈아", "뿌잉충아 말귀를 못 알아듣네", "뿌잉충 새끼",
            "완전 뿌잉충이네 당신"]


@pytest.fixture(scope="module")
def shipped_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the shipped data's model (trained once for the module, ~11 s)."""
    cache = tmp_path_factory.mktemp("shipped-cache")
    load_or_train(cache)
    return cache


def _copy(cache: Path, to: Path) -> Path:
    shutil.copytree(cache, to)
    return to


def test_pointer_activate_and_rollback(tmp_path: Path) -> None:
    assert active_version(tmp_path) == shipped_version() and read_pointer(tmp_path) is None
    for v in ("aaaa", "bbbb"):
        cache_path(tmp_path, v).write_bytes(b"")
    with pytest.raises(ModelError):
        activate(tmp_path, "nope")
    with pytest.raises(ModelError):
        rollback(tmp_path)  # nothing was ever activated
    activate(tmp_path, "aaaa")
    pointer = json.loads((tmp_path / POINTER).read_text())
    assert pointer["version"] == "aaaa" and pointer["previous"] == shipped_version() and pointer["when"] > 0
    activate(tmp_path, "bbbb")
    assert active_version(tmp_path) == "bbbb" and read_pointer(tmp_path)["previous"] == "aaaa"  # type: ignore[index]
    assert [(m.version, m.active) for m in sorted(list_models(tmp_path), key=lambda m: m.version)] == [
        ("aaaa", False), ("bbbb", True)]
    assert rollback(tmp_path) == "aaaa" and active_version(tmp_path) == "aaaa"
    assert rollback(tmp_path) == "bbbb"  # a rollback can be rolled back
    assert not list(tmp_path.glob("*.tmp"))


def test_labels_become_examples_and_f1_is_binary() -> None:
    samples = labelled_samples([("욕 했잖아", "profanity", "confirmed"), ("그냥 화난 거예요", "insult", "rejected"),
                                ("", "insult", "confirmed"), ("뭐", None, "unlabelled"), ("뭐지", None, "confirmed")])
    assert [(s.text, s.label) for s in samples] == [("욕 했잖아", "profanity"), ("그냥 화난 거예요", "none")]
    assert binary_macro_f1(["insult", "none"], ["profanity", "none"]) == 1.0  # the category does not matter
    assert binary_macro_f1(["insult", "none"], ["none", "none"]) == pytest.approx((0 + 2 / 3) / 2)


def test_retrain_teaches_a_new_word_and_a_running_classifier_switches(shipped_cache: Path, tmp_path: Path) -> None:
    cache = _copy(shipped_cache, tmp_path / "cache")
    running = AbuseClassifier.load(LEXICON, cache)
    assert not running.classify(NEW_WORD).abusive
    assert running.reload_if_changed() is False
    base = running.model.version
    labels: list[tuple[str, str | None, str]] = [(t, "insult", "confirmed") for t in TEACHING]
    result = retrain(cache, [*labels, ("민원 접수 부탁드립니다", None, "rejected")])
    assert result.activated, result.table()
    assert result.labelled == 6 and result.active_version == base and active_version(cache) == result.new_version
    assert "labelled events" in result.table() and "activated" in result.table()
    assert running.reload_if_changed() is True and running.model.version == result.new_version
    assert running.reload_if_changed() is False  # cheap: nothing changed
    verdict = running.classify(f"당신 완전 {NEW_WORD}이야")
    assert verdict.abusive and verdict.category == "insult"
    assert running.classify(NEW_WORD).abusive and not running.classify("오늘 날씨 좋네요").abusive
    assert AbuseClassifier.load(LEXICON, cache).model.version == result.new_version  # a fresh load follows too
    assert rollback(cache) == base
    assert running.reload_if_changed() is True and not running.classify(NEW_WORD).abusive


def test_a_retrain_that_makes_it_worse_is_refused(shipped_cache: Path, tmp_path: Path) -> None:
    cache = _copy(shipped_cache, tmp_path / "cache")
    clean = [s.text for s in held_out_samples() if s.source == PHONE_FILE and s.label == "none"]
    result = retrain(cache, [(t, "insult", "confirmed") for t in clean])  # clean phone sentences "confirmed" abusive
    assert not result.activated and "phone held-out" in result.reason, result.table()
    assert read_pointer(cache) is None and active_version(cache) == shipped_version()
    kept = {m.version: m.active for m in list_models(cache)}
    assert kept == {shipped_version(): True, result.new_version: False}  # kept on disk, inactive


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "b2bua.abuse", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_retrain_and_models_commands(shipped_cache: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config")
    var = tmp_path / "var"
    _copy(shipped_cache, var / "abuse-models")  # the config's detection.model_cache: ../var/abuse-models
    store = AbuseEvents(create_engine(f"sqlite:///{var / 'b2bua.sqlite3'}"), var / "rec")
    texts = [*TEACHING, "민원 접수 부탁드립니다", "아직 안 봤어요"]
    for n, text in enumerate(texts):
        store.record(AbuseEvent(f"ev{n}", "c1", "x@y", "교통정책과", float(n), "insult", 0.9, text, "whisper-base",
                                "m1", "warned", None, np.zeros(80, np.int16).tobytes()))
    store.flush()
    for n in range(len(TEACHING)):
        assert store.label(f"ev{n}", True, "kim")
    assert store.label(f"ev{len(TEACHING)}", False, "kim")  # the last one stays unlabelled
    store.close()

    listed = _cli("models", "--config", str(cfg))
    assert listed.returncode == 0 and listed.stdout.startswith(f"* {shipped_version()}"), listed.stderr
    done = _cli("retrain", "--config", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "labelled events used: 6" in done.stdout and "activated" in done.stdout
    new = active_version(var / "abuse-models")
    assert new != shipped_version()
    lines = _cli("models", "--config", str(cfg)).stdout.splitlines()
    assert f"* {new}" in "\n".join(lines) and f"  {shipped_version()}" in "\n".join(lines)
    back = _cli("models", "--rollback", "--config", str(cfg))
    assert back.returncode == 0 and f"rolled back to {shipped_version()}" in back.stdout
    assert _cli("models", "--activate", new, "--config", str(cfg)).returncode == 0
    assert active_version(var / "abuse-models") == new
    bad = _cli("models", "--activate", "0123456789abcdef", "--config", str(cfg))
    assert bad.returncode == 1 and "no model" in bad.stderr
