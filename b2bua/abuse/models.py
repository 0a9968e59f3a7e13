"""The registry of text-model versions in the model cache, and retraining from staff labels.

Versions are the cache's ``abuse-textmodel-<version>.joblib`` files (:mod:`.textmodel`). The active one is
named by the pointer file ``active.json`` in the same folder, ``{"version": ..., "when": <Unix time>,
"previous": <version>}``, replaced atomically (a reader sees the old pointer or the new one). Without a
pointer the active model is the one :func:`.textmodel.load_or_train` builds from the shipped data. A pointer
naming a model that is missing, unreadable or trained on other shipped data than the current one is ignored
with a warning (the shipped model is used). :func:`rollback` points back at ``previous``; the version it
leaves becomes the new ``previous``, so a rollback can itself be rolled back.

:func:`retrain` trains a new version from the shipped training split plus staff-labelled events (confirmed:
an example of its category; rejected: an example of ``none``), weighted like our phone sentences. Its
version is the hash of the shipped data's hashes, the recipe and the labelled events' hash. It is compared
with the active model on three sets, by the macro F1 over {abusive, not abusive} of the text model alone
(the lexicon is the same for both): the corpora's held-out split, our phone sentences' held-out split (the
speech the model will hear: a few dozen sentences, so measured apart from the corpora's thousands), and all
labelled events. It is activated only when it is no worse than the active model on each set, by more than
:data:`TOLERANCE`; otherwise it stays on disk, inactive, and the result says which set got worse.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib

from .categories import CATEGORIES, NONE, Label
from .corpora import DATA_DIR, PHONE_FILE, Sample, data_hashes
from .pointer import POINTER, pointer_path, read_pointer
from .textmodel import (
    CacheMismatch,
    TextModel,
    cache_path,
    labelled_hash,
    load_or_train,
    model_version,
    save,
    shipped_samples,
    split,
    train,
)

log = logging.getLogger(__name__)

#: a new model may score this much less (macro F1, 0..1) than the active one on a set and still be activated
TOLERANCE = 0.01
#: what a staff label teaches
CONFIRMED, REJECTED = "confirmed", "rejected"
_PREFIX, _SUFFIX = "abuse-textmodel-", ".joblib"
_LABELLED_KEY = "labelled"


class ModelError(Exception):
    """An unknown version, or nothing to roll back to."""


@dataclass(frozen=True)
class ModelInfo:
    """One version in the cache."""

    version: str
    path: Path
    modified: float
    active: bool


def shipped_version(data_dir: Path = DATA_DIR) -> str:
    """The version :func:`.textmodel.load_or_train` builds from the shipped data."""
    return model_version(data_hashes(data_dir))


def active_version(cache_dir: str | Path, data_dir: Path = DATA_DIR) -> str:
    """The pointer's version, else the shipped data's model."""
    pointer = read_pointer(cache_dir)
    return str(pointer["version"]) if pointer else shipped_version(data_dir)


def list_models(cache_dir: str | Path, data_dir: Path = DATA_DIR) -> list[ModelInfo]:
    """The versions on disk, oldest first."""
    active = active_version(cache_dir, data_dir)
    out = []
    for path in Path(cache_dir).glob(f"{_PREFIX}*{_SUFFIX}"):
        version = path.name[len(_PREFIX):-len(_SUFFIX)]
        out.append(ModelInfo(version, path, path.stat().st_mtime, version == active))
    return sorted(out, key=lambda m: (m.modified, m.version))


def _write_pointer(cache_dir: Path, version: str, previous: str | None) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=POINTER, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"version": version, "when": time.time(), "previous": previous}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, pointer_path(cache_dir))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def activate(cache_dir: str | Path, version: str, data_dir: Path = DATA_DIR) -> None:
    """Make ``version`` (a model in the cache) the active one; :class:`ModelError` when it is not there."""
    cache_dir = Path(cache_dir)
    if not cache_path(cache_dir, version).exists():
        raise ModelError(f"no model {version} in {cache_dir}")
    current = active_version(cache_dir, data_dir)
    if current != version:
        _write_pointer(cache_dir, version, current)


def rollback(cache_dir: str | Path, data_dir: Path = DATA_DIR) -> str:
    """Activate the previously active version and return it; :class:`ModelError` when there is none."""
    cache_dir = Path(cache_dir)
    pointer = read_pointer(cache_dir)
    previous = pointer.get("previous") if pointer else None
    if not isinstance(previous, str):
        raise ModelError("no previously active model to roll back to")
    activate(cache_dir, previous, data_dir)
    return previous


def load_version(cache_dir: str | Path, version: str, data_dir: Path = DATA_DIR) -> TextModel:
    """A cached model of the current shipped data (retrained or not); :class:`CacheMismatch` otherwise."""
    path = cache_path(Path(cache_dir), version)
    try:
        stored = joblib.load(path)
    except Exception as exc:  # missing, truncated or foreign
        raise CacheMismatch(f"{path}: cannot load: {exc}") from None
    if not isinstance(stored, dict) or stored.get("version") != version:
        raise CacheMismatch(f"{path}: not version {version}")
    hashes = dict(stored.get("data_hashes") or {})
    shipped = {k: v for k, v in hashes.items() if k != _LABELLED_KEY}
    if shipped != data_hashes(data_dir):
        raise CacheMismatch(f"{path}: trained on other shipped data (SHA-256 hashes differ)")
    return TextModel(version, hashes, stored["vectorizer"], stored["classifier"])


def load_active(cache_dir: str | Path, data_dir: Path = DATA_DIR) -> TextModel:
    """The active model: the pointer's when it is usable, else the shipped data's (trained at first use)."""
    pointer = read_pointer(cache_dir)
    if pointer:
        try:
            return load_version(cache_dir, str(pointer["version"]), data_dir)
        except CacheMismatch as exc:
            log.warning("the active abuse model is unusable (%s): using the shipped data's model", exc)
    return load_or_train(cache_dir, data_dir).model


# -- retraining -------------------------------------------------------------------------------------------
def labelled_samples(labelled: Sequence[tuple[str, str | None, str]]) -> list[Sample]:
    """Staff-labelled events as examples: confirmed ones of their category, rejected ones of ``none``.

    Events with no transcript, an unknown category, or neither label are skipped.
    """
    out = []
    for transcript, category, label in labelled:
        text = (transcript or "").strip()
        if not text:
            continue
        if label == REJECTED:
            out.append(Sample(text, NONE, _LABELLED_KEY))
        elif label == CONFIRMED and category in CATEGORIES:
            cat: Label = category
            out.append(Sample(text, cat, _LABELLED_KEY))
    return out


def binary_macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro F1 over {abusive, not abusive} (0 for an empty set)."""
    if not gold:
        return 0.0
    g = [x != NONE for x in gold]
    p = [x != NONE for x in predicted]
    f1s = []
    for cls in (True, False):
        tp = sum(1 for a, b in zip(g, p, strict=True) if a == b == cls)
        n_pred, n_gold = p.count(cls), g.count(cls)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(f1s) / len(f1s)


@dataclass(frozen=True)
class SetScore:
    """Both models on one evaluation set."""

    name: str
    size: int
    active: float
    new: float

    @property
    def worse(self) -> bool:
        return self.size > 0 and self.new < self.active - TOLERANCE


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did."""

    active_version: str
    new_version: str
    labelled: int
    scores: tuple[SetScore, ...]
    activated: bool
    reason: str

    def table(self) -> str:
        rows = [f"labelled events used: {self.labelled}",
                f"  {'set (macro F1, abusive vs not)':<32} {'n':>6} {'active':>8} {'new':>8}",
                *(f"  {s.name:<32} {s.size:6d} {s.active:8.3f} {s.new:8.3f}{'  worse' if s.worse else ''}"
                  for s in self.scores),
                f"active {self.active_version}  new {self.new_version}",
                self.reason]
        return "\n".join(rows)


def retrain(cache_dir: str | Path, labelled: Sequence[tuple[str, str | None, str]],
            data_dir: Path = DATA_DIR) -> RetrainResult:
    """Train a model on the shipped training split plus ``labelled`` events and activate it if not worse.

    ``labelled`` holds (transcript, category or None, "confirmed" | "rejected").
    """
    cache_dir = Path(cache_dir)
    extra = labelled_samples(labelled)
    current = load_active(cache_dir, data_dir)
    hashes = {**data_hashes(data_dir), _LABELLED_KEY: labelled_hash(extra)}
    version = model_version(hashes)
    train_set, held_out = split(shipped_samples(data_dir))
    try:
        new = load_version(cache_dir, version, data_dir)
    except CacheMismatch:
        new = train(train_set, version, hashes, extra=extra)
        save(new, cache_dir)
    sets = [("corpora held-out", [s for s in held_out if s.source != PHONE_FILE]),
            ("phone held-out", [s for s in held_out if s.source == PHONE_FILE]),
            ("labelled events", extra)]
    scores = []
    for name, samples in sets:
        gold = [s.label for s in samples]
        texts = [s.text for s in samples]
        scores.append(SetScore(name, len(samples), binary_macro_f1(gold, current.predict(texts)),
                               binary_macro_f1(gold, new.predict(texts))))
    worse = [s.name for s in scores if s.worse]
    if version == current.version:
        activated, reason = True, f"{version} is already the active model"
    elif worse:
        activated, reason = False, f"not activated: worse than the active model on {', '.join(worse)} " \
                                   f"(by more than {TOLERANCE}); kept on disk as {version}"
    else:
        activate(cache_dir, version, data_dir)
        activated, reason = True, f"activated {version} (previous: {current.version})"
    return RetrainResult(current.version, version, len(extra), tuple(scores), activated, reason)
