"""Precision, recall and F1 per label on held-out samples, and their table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .categories import LABELS


@dataclass(frozen=True)
class LabelScores:
    """One label's figures."""

    label: str
    precision: float
    recall: float
    f1: float
    #: held-out samples of this label
    support: int


@dataclass(frozen=True)
class Evaluation:
    """Per-label figures of one held-out set."""

    name: str
    scores: tuple[LabelScores, ...]
    accuracy: float

    def __getitem__(self, label: str) -> LabelScores:
        return next(s for s in self.scores if s.label == label)

    def table(self) -> str:
        """A fixed-width table, one line per label with held-out samples."""
        rows = [f"{self.name}: accuracy {self.accuracy:.3f}",
                f"  {'label':<18} {'P':>6} {'R':>6} {'F1':>6} {'n':>6}"]
        rows += [f"  {s.label:<18} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.support:6d}"
                 for s in self.scores if s.support]
        return "\n".join(rows)


def evaluate(name: str, gold: Sequence[str], predicted: Sequence[str]) -> Evaluation:
    """Compare ``predicted`` labels with ``gold`` ones."""
    scores = []
    for label in LABELS:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p == label)
        n_pred = sum(1 for p in predicted if p == label)
        n_gold = sum(1 for g in gold if g == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(LabelScores(label, precision, recall, f1, n_gold))
    accuracy = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p) / len(gold) if gold else 0.0
    return Evaluation(name, tuple(scores), accuracy)
