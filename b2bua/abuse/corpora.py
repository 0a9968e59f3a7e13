"""The shipped training data: four public Korean corpora and our own phone-style sentences.

``data/korean-abuse-text/`` holds the corpora unchanged (their licences and label schemes are in its
``SOURCES.md``); ``data/phone_sentences.tsv`` holds labelled sentences as a city's staff hear them on the
phone (``text<TAB>category``, ``#`` comments). Every file's SHA-256 goes into the model's version
(:func:`data_hashes`). :func:`is_held_out` splits by a hash of the text, so a sentence stays on its side of
the split whatever is added to the files.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..yamlconf import ConfigError
from .categories import LABELS, Label

#: where the shipped data lives
DATA_DIR = Path(__file__).resolve().parent / "data"
CORPUS_DIR = "korean-abuse-text"
PHONE_FILE = "phone_sentences.tsv"
#: the files training reads, relative to the data directory (their hashes version the model)
TRAINING_FILES = (
    f"{CORPUS_DIR}/beep_kocohub/train.tsv",
    f"{CORPUS_DIR}/beep_kocohub/dev.tsv",
    f"{CORPUS_DIR}/curse_2runo/dataset.txt",
    f"{CORPUS_DIR}/kmhas/kmhas_valid.txt",
    f"{CORPUS_DIR}/kmhas/kmhas_test.txt",
    f"{CORPUS_DIR}/apeach/test.csv",
    PHONE_FILE,
)
#: K-MHaS label numbers: 3 is profanity, 8 is "not hate speech", the others are kinds of hate
_KMHAS_PROFANITY, _KMHAS_NOT_HATE = "3", "8"


@dataclass(frozen=True)
class Sample:
    """One labelled text."""

    text: str
    label: Label
    #: the file it comes from, relative to the data directory
    source: str


def is_held_out(text: str, percent: int) -> bool:
    """Whether ``text`` is in the held-out share of ``percent`` percent (stable: a hash of the text)."""
    digest = hashlib.sha256(text.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def data_hashes(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """SHA-256 of every training file, by its path relative to ``data_dir``."""
    return {name: hashlib.sha256((data_dir / name).read_bytes()).hexdigest() for name in TRAINING_FILES}


def _beep(path: Path, source: str) -> Iterator[Sample]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        for row in rows:
            if len(row) == 4:
                yield Sample(row[0], "none" if row[3] == "none" else "insult", source)


def _curse(path: Path, source: str) -> Iterator[Sample]:
    with path.open(encoding="utf-8", newline="") as f:
        for line in f:
            text, sep, label = line.rstrip("\r\n").rpartition("|")
            if sep and label.strip() in ("0", "1"):
                yield Sample(text, "insult" if label.strip() == "1" else "none", source)


def _kmhas(path: Path, source: str) -> Iterator[Sample]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)
        for row in rows:
            if len(row) != 2:
                continue
            labels = set(row[1].split(","))
            label: Label = "none" if labels == {_KMHAS_NOT_HATE} else \
                "profanity" if _KMHAS_PROFANITY in labels else "insult"
            yield Sample(row[0], label, source)


def _apeach(path: Path, source: str) -> Iterator[Sample]:
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            yield Sample(row["text"], "insult" if row["class"] == "Spoiled" else "none", source)


def load_corpora(data_dir: Path = DATA_DIR) -> list[Sample]:
    """The four public corpora, their labels mapped onto ours (see ``SOURCES.md``)."""
    readers = (_beep, _beep, _curse, _kmhas, _kmhas, _apeach)
    out: list[Sample] = []
    for name, reader in zip(TRAINING_FILES[:-1], readers, strict=True):
        out.extend(s for s in reader(data_dir / name, name) if s.text.strip())
    return out


def load_phone_sentences(data_dir: Path = DATA_DIR) -> list[Sample]:
    """Our phone-style sentences; a malformed line is a ``file:line: ...`` :class:`ConfigError`."""
    path = data_dir / PHONE_FILE
    out: list[Sample] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text, sep, label = line.rpartition("\t")
        text, label = text.strip(), label.strip()
        if not sep or not text:
            problems.append(f"{path}:{number}: expected text<TAB>category")
        elif label not in LABELS:
            problems.append(f"{path}:{number}: unknown category {label!r} (expected one of: {', '.join(LABELS)})")
        elif text in seen:
            problems.append(f"{path}:{number}: duplicate of line {seen[text]}")
        else:
            seen[text] = number
            out.append(Sample(text, label, PHONE_FILE))
    if problems:
        raise ConfigError(problems)
    return out
