"""The abuse classifier: the lexicon and the text model combined into one score per utterance.

For each category the lexicon's strongest entry weight ``w`` and the model's probability ``p`` combine as
independent evidence, ``1 - (1 - w) * (1 - p)``; the utterance's score is the same combination of the
strongest entry of any category and the model's probability of any abuse (``1 - p(none)``). The model
reads the utterance with its innocent look-alikes left out (``시발점`` reads as ``점``), so neither part
fires on them. An utterance is abusive when its score reaches the threshold; its category is that of the
strongest entry when that entry alone reaches the threshold, else the category with the most evidence.

The model is the cache's active version (:mod:`.models`). A running detector calls
:meth:`AbuseClassifier.reload_if_changed` before classifying: it compares the pointer file's
modification time and size with those it loaded (one ``stat``), and loads the newly activated model when
they differ, so ``b2bua abuse models --activate`` and ``retrain`` take effect without a restart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .categories import CATEGORIES, DEFAULT_THRESHOLD, NONE, Category, Label
from .lexicon import Hit, Lexicon, load_lexicon
from .models import load_active
from .pointer import pointer_path
from .textmodel import TextModel

log = logging.getLogger(__name__)


def _pointer_signature(cache_dir: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of the cache's pointer file, None when there is none."""
    try:
        st = os.stat(pointer_path(cache_dir))
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Verdict:
    """What the classifier says of one utterance."""

    text: str
    abusive: bool
    #: the category with the most evidence when abusive, else None
    category: Category | None
    #: the combined score, 0..1
    score: float
    #: lexicon entries found
    hits: tuple[Hit, ...]
    #: the model's probability per label
    model: dict[Label, float]

    def as_json(self) -> dict[str, object]:
        """The command line's JSON object."""
        return {"text": self.text, "abusive": self.abusive, "category": self.category, "score": round(self.score, 4)}


def _combine(weight: float, probability: float) -> float:
    return 1.0 - (1.0 - weight) * (1.0 - probability)


@dataclass
class AbuseClassifier:
    """The lexicon and a trained text model (the cache's active one when loaded from a cache)."""

    lexicon: Lexicon
    model: TextModel
    #: the model cache it follows (None: a fixed model)
    cache_dir: Path | None = field(default=None, repr=False)
    _pointer: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, lexicon_path: str | Path, cache_dir: str | Path) -> AbuseClassifier:
        """Load the lexicon and the active model (the shipped data's, trained into ``cache_dir`` at first use)."""
        cache = Path(cache_dir)
        signature = _pointer_signature(cache)  # before loading: a change while loading is seen next time
        return cls(load_lexicon(lexicon_path), load_active(cache), cache, signature)

    def reload_if_changed(self) -> bool:
        """Switch to the active model if the pointer changed since it was loaded; True when it switched.

        Cheap when nothing changed (one ``stat``). A model that fails to load is logged and the current
        one kept (until the pointer changes again).
        """
        if self.cache_dir is None:
            return False
        signature = _pointer_signature(self.cache_dir)
        if signature == self._pointer:
            return False
        self._pointer = signature
        try:
            model = load_active(self.cache_dir)
        except Exception:
            log.exception("cannot load the newly active abuse model; keeping %s", self.model.version)
            return False
        switched = model.version != self.model.version
        if switched:
            log.info("abuse model switched from %s to %s", self.model.version, model.version)
        self.model = model
        return switched

    def classify(self, text: str, threshold: float = DEFAULT_THRESHOLD) -> Verdict:
        """Classify one utterance."""
        return self.classify_many([text], threshold)[0]

    def classify_many(self, texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD) -> list[Verdict]:
        """Classify utterances (one model call for all of them)."""
        views = [self.lexicon.model_view(t) for t in texts]
        read = iter(self.model.predict_proba([v for v in views if v]))
        # nothing left to read (empty, or only look-alikes such as 시발점): the model has no evidence of abuse
        nothing: dict[Label, float] = {**dict.fromkeys(CATEGORIES, 0.0), NONE: 1.0}
        probs = [next(read) if v else nothing for v in views]
        out = []
        for text, p in zip(texts, probs, strict=True):
            hits = tuple(self.lexicon.match(text))
            weights: dict[Category, float] = dict.fromkeys(CATEGORIES, 0.0)
            for hit in hits:
                weights[hit.category] = max(weights[hit.category], hit.weight)
            evidence = {c: _combine(weights[c], p[c]) for c in CATEGORIES}
            score = _combine(max(weights.values()), 1.0 - p[NONE])
            abusive = score >= threshold
            # an entry that is abuse on its own names the category; else the category with the most evidence
            named: Category = hits[0].category if hits and hits[0].weight >= threshold else \
                max(CATEGORIES, key=lambda c: evidence[c])
            category = named if abusive else None
            out.append(Verdict(text, abusive, category, score, hits, p))
        return out

    def label(self, text: str, threshold: float = DEFAULT_THRESHOLD) -> Label:
        """The verdict as a label: its category, or ``none``."""
        return self.classify(text, threshold).category or NONE
