"""``python -m b2bua.abuse classify``: JSON lines out for text lines in, through a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from b2bua.abuse.cli import paths_from_config
from b2bua.abuse.textmodel import Loaded, load_or_train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The shipped model (shared with test_abuse_classifier.py through the session's cache)."""
    return load_or_train(tmp_path_factory.getbasetemp() / "abuse-models")


@pytest.fixture()
def tree(tmp_path: Path, loaded: Loaded) -> Path:
    """A copy of the shipped config/ with the model already in ../var/abuse-models (as config/b2bua.yaml says)."""
    config = tmp_path / "config"
    config.mkdir()
    for name in ("b2bua.yaml", "abuse_lexicon.yaml"):
        shutil.copy(ROOT / "config" / name, config / name)
    cache = tmp_path / "var" / "abuse-models"
    cache.mkdir(parents=True)
    shutil.copy(loaded.path, cache / loaded.path.name)
    return config / "b2bua.yaml"


def _run(config: Path, stdin: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "b2bua.abuse", "classify", "--config", str(config)],
                          input=stdin.encode("utf-8"), capture_output=True, timeout=60, cwd=ROOT)


def test_paths_come_from_next_to_the_config(tree: Path) -> None:
    lexicon, cache = paths_from_config(tree)
    assert lexicon == tree.parent / "abuse_lexicon.yaml"
    assert cache.resolve() == (tree.parent.parent / "var" / "abuse-models").resolve()
    bare = tree.parent / "bare.yaml"
    bare.write_text("sip: {}\n", encoding="utf-8")
    assert paths_from_config(bare) == (tree.parent / "abuse_lexicon.yaml", tree.parent / "../var/abuse-models")


def test_classify_round_trip(tree: Path, loaded: Loaded) -> None:
    lines = ["퇴근길 조심해라", "너무 답답하네요, 왜 처리가 안 돼요?", "시발점이 어디예요?", "씨이이발 진짜",
             "목소리 예쁜데 몇 살이야", "", "개가 새끼를 낳았다"]
    result = _run(tree, "\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode("utf-8")
    assert "퇴근길" in out  # ensure_ascii=False: Korean as it is, not \\uXXXX
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [v["text"] for v in verdicts] == lines
    assert all(set(v) == {"text", "abusive", "category", "score"} for v in verdicts)
    assert all(0.0 <= v["score"] <= 1.0 for v in verdicts)
    assert [(v["abusive"], v["category"]) for v in verdicts] == [
        (True, "threat"), (False, None), (False, None), (True, "profanity"), (True, "sexual_harassment"),
        (False, None), (False, None)]
    # the cached model was used: nothing trained, nothing added
    assert [p.name for p in (tree.parent.parent / "var" / "abuse-models").iterdir()] == [loaded.path.name]


def test_a_broken_lexicon_is_reported_as_file_line(tree: Path) -> None:
    lexicon = tree.parent / "abuse_lexicon.yaml"
    lexicon.write_text("categories:\n  profanity:\n    entries: [씨발]\n  slur:\n    entries: [x]\n", encoding="utf-8")
    result = _run(tree, "안녕하세요\n")
    assert result.returncode == 2
    assert result.stdout == b""
    assert f"{lexicon}:5: categories.slur: unknown category 'slur'" in result.stderr.decode("utf-8")
