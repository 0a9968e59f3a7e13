"""The learned text model: character n-grams (TF-IDF) and a linear classifier over the labels.

Trained from the shipped data (:mod:`.corpora`) less its held-out share (:func:`split`) at first use, and
cached on disk, one file per version: ``abuse-textmodel-<version>.joblib``. The version is a hash of the
training files' SHA-256 hashes, the recipe below and the scikit-learn version; the file records the hashes
again, and a file whose hashes are not the data's is refused (and trained over). Nothing is downloaded.
The cache is a pickle: keep its directory writable by this service only (loading a pickle runs code).

The classifier is logistic regression fitted by stochastic gradient descent (``SGDClassifier`` with
``log_loss``): the same model as ``LogisticRegression``, with the same held-out figures on these corpora,
but it trains in seconds instead of half a minute on two cores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier

from .categories import LABELS, Label
from .corpora import DATA_DIR, PHONE_FILE, Sample, data_hashes, is_held_out, load_corpora, load_phone_sentences
from .normalize import model_text
from .pointer import pointed_versions

log = logging.getLogger(__name__)

#: Everything that decides what a training run produces besides the data (part of the version).
RECIPE: dict[str, Any] = {
    "normalize": 1,  # bump when normalize.model_text changes what the model reads
    # character 1-3-grams inside word boundaries: as good as 1-4-grams held out here, smaller and faster
    "vectorizer": {"analyzer": "char_wb", "ngram_range": [1, 3], "min_df": 2, "sublinear_tf": True},
    # a fixed number of epochs (tol None): deterministic with the random_state, no convergence warning
    "classifier": {"loss": "log_loss", "alpha": 2e-5, "max_iter": 12, "tol": None,
                   "random_state": 0},
    #: our phone sentences weigh this many corpus comments each: they are what the model will hear
    "phone_weight": 40.0,
    #: held-out shares (percent): never trained on, so the figures measured on them are the cached model's
    "held_out_corpora": 20,
    "held_out_phone": 25,
}


def held_out_percent(sample: Sample) -> int:
    """The held-out share of ``sample``'s file."""
    return int(RECIPE["held_out_phone"] if sample.source == PHONE_FILE else RECIPE["held_out_corpora"])


def split(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) by :func:`.corpora.is_held_out`."""
    train: list[Sample] = []
    test: list[Sample] = []
    for s in samples:
        (test if is_held_out(s.text, held_out_percent(s)) else train).append(s)
    return train, test


def model_version(hashes: dict[str, str]) -> str:
    """The version of the model trained from data with these hashes (16 hex digits)."""
    blob = json.dumps({"data": hashes, "recipe": RECIPE, "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TextModel:
    """A trained model: the probability of each label for a text."""

    version: str
    data_hashes: dict[str, str]
    vectorizer: Any = field(repr=False)  # TfidfVectorizer (scikit-learn has no type information)
    classifier: Any = field(repr=False)  # SGDClassifier

    def predict_proba(self, texts: Sequence[str]) -> list[dict[Label, float]]:
        """Probability per label of each text (normalised here with :func:`.normalize.model_text`)."""
        if not texts:
            return []
        matrix = self.classifier.predict_proba(self.vectorizer.transform([model_text(t) for t in texts]))
        classes = [str(c) for c in self.classifier.classes_]
        out = []
        for row in matrix:
            probs: dict[Label, float] = dict.fromkeys(LABELS, 0.0)
            for label, p in zip(classes, row, strict=True):
                probs[label] = float(p)  # type: ignore[index]  # classes_ are our labels
            out.append(probs)
        return out

    def predict(self, texts: Sequence[str]) -> list[Label]:
        """The most probable label of each text."""
        return [max(p, key=lambda k: p[k]) for p in self.predict_proba(texts)]


#: the ``source`` of a staff-labelled abuse event given to :func:`train` as an extra example
LABELLED_SOURCE = "labelled-events"


def labelled_hash(extra: Sequence[Sample]) -> str:
    """SHA-256 of staff-labelled examples (order-independent): part of a retrained model's version."""
    blob = json.dumps(sorted([s.text, s.label] for s in extra), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def sample_weights(samples: Sequence[Sample]) -> list[float]:
    """Corpus comments balanced by label among the corpora; our phone sentences ``phone_weight`` each.

    Staff-labelled events (source :data:`LABELLED_SOURCE`) weigh ``phone_weight`` too: they are phone speech.

    (scikit-learn's ``class_weight="balanced"`` over everything would weigh each of the few threat and
    harassment sentences, which only the phone set has, as hundreds of comments: the model then read 퇴근
    or 구청 as a threat.)
    """
    ours = (PHONE_FILE, LABELLED_SOURCE)
    counts = Counter(s.label for s in samples if s.source not in ours)
    total = sum(counts.values())
    phone = float(RECIPE["phone_weight"])
    return [phone if s.source in ours else total / (len(counts) * counts[s.label]) for s in samples]


def train(samples: Sequence[Sample], version: str = "adhoc", hashes: dict[str, str] | None = None,
          extra: Sequence[Sample] = ()) -> TextModel:
    """Fit the recipe on ``samples`` plus ``extra`` examples (staff-labelled events, :data:`LABELLED_SOURCE`)."""
    samples = [*samples, *(Sample(s.text, s.label, LABELLED_SOURCE) for s in extra)]
    vectorizer = TfidfVectorizer(**{**RECIPE["vectorizer"], "ngram_range": tuple(RECIPE["vectorizer"]["ngram_range"])})
    matrix = vectorizer.fit_transform([model_text(s.text) for s in samples])
    classifier = SGDClassifier(**RECIPE["classifier"])
    classifier.fit(matrix, [s.label for s in samples], sample_weight=sample_weights(samples))
    return TextModel(version, dict(hashes or {}), vectorizer, classifier)


def shipped_samples(data_dir: Path = DATA_DIR) -> list[Sample]:
    """Every shipped sample: the corpora, then our phone sentences."""
    return load_corpora(data_dir) + load_phone_sentences(data_dir)


def held_out_samples(data_dir: Path = DATA_DIR) -> list[Sample]:
    """The shipped samples the model never trains on (its evaluation)."""
    return split(shipped_samples(data_dir))[1]


class CacheMismatch(Exception):
    """A cached model that is not the model of the current data."""


def cache_path(cache_dir: Path, version: str) -> Path:
    """Where the model of ``version`` is cached."""
    return cache_dir / f"abuse-textmodel-{version}.joblib"


def load_cached(path: Path, version: str, hashes: dict[str, str]) -> TextModel:
    """Load a cached model; :class:`CacheMismatch` unless it records this version and these data hashes."""
    try:
        stored = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file: refused like a stale one
        raise CacheMismatch(f"{path}: cannot load: {exc}") from None
    if not isinstance(stored, dict) or stored.get("version") != version:
        raise CacheMismatch(f"{path}: not version {version}")
    if stored.get("data_hashes") != hashes:
        raise CacheMismatch(f"{path}: trained on other data (SHA-256 hashes differ)")
    return TextModel(version, hashes, stored["vectorizer"], stored["classifier"])


def save(model: TextModel, cache_dir: Path) -> Path:
    """Write ``model`` to the cache atomically (a concurrent reader sees the old file or the whole new one)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_path(cache_dir, model.version)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump({"version": model.version, "data_hashes": model.data_hashes,
                     "vectorizer": model.vectorizer, "classifier": model.classifier}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@dataclass(frozen=True)
class Loaded:
    """What :func:`load_or_train` did."""

    model: TextModel
    path: Path
    trained: bool


def load_or_train(cache_dir: str | Path, data_dir: Path = DATA_DIR) -> Loaded:
    """The model of the current data: from ``cache_dir`` when cached there, else trained and cached."""
    cache_dir = Path(cache_dir)
    hashes = data_hashes(data_dir)
    version = model_version(hashes)
    path = cache_path(cache_dir, version)
    if path.exists():
        try:
            return Loaded(load_cached(path, version, hashes), path, trained=False)
        except CacheMismatch as exc:
            log.warning("refusing the cached abuse model: %s; training again", exc)
    model = train(split(shipped_samples(data_dir))[0], version, hashes)
    path = save(model, cache_dir)

    keep = {path, *(cache_path(cache_dir, v) for v in pointed_versions(cache_dir))}
    for old in cache_dir.glob("abuse-textmodel-*.joblib"):
        if old not in keep:  # models of older data or recipes: never loaded again (the registry's are kept)
            old.unlink(missing_ok=True)
    return Loaded(model, path, trained=True)
