"""The categories of abuse, shared by the lexicon, the text model and the classifier."""

from __future__ import annotations

from typing import Literal, get_args

#: What an abusive utterance is: swearing, an insult to the listener, a threat, sexual harassment.
Category = Literal["profanity", "insult", "threat", "sexual_harassment"]
#: The model's classes: the categories, and ``none`` (everything else, angry complaints included).
Label = Literal["profanity", "insult", "threat", "sexual_harassment", "none"]

CATEGORIES: tuple[Category, ...] = get_args(Category)
LABELS: tuple[Label, ...] = get_args(Label)
NONE: Label = "none"

#: the default threshold on the combined score (departments set their own: ``policy.abuse.threshold``)
DEFAULT_THRESHOLD = 0.6
