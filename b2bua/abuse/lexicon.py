"""The editable abuse lexicon (``config/abuse_lexicon.yaml``): entries per category, innocent look-alikes.

An entry matches the normalised utterance (:mod:`.normalize`), inside one word; a space written in an entry
matches a space or none (``죽여 버릴`` matches ``죽여버릴`` and ``죽여 버릴``). Look-alikes are matched the
same way first and blanked out, so ``시발점`` or ``개가 새끼를 낳`` never reach the entries. Every problem
of the file is reported as ``file:line: what is wrong`` (:class:`b2bua.yamlconf.ConfigError`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ..yamlconf import ConfigError, Strict, load_yaml
from .categories import CATEGORIES, Category
from .normalize import clean, letters_outside, model_text, skeleton, units

#: what blanks a look-alike out: no entry contains it
_MASK = "\x00"


class EntrySpec(Strict):
    """An entry with its own weight."""

    term: str
    #: None: the category's weight
    weight: float | None = Field(None, ge=0.0, le=1.0)


class CategorySpec(Strict):
    """One category's entries; a bare string takes the category's weight."""

    #: how sure a match makes us (combined with the text model's probability)
    weight: float = Field(0.9, ge=0.0, le=1.0)
    entries: list[str | EntrySpec] = Field(min_length=1)


class LexiconSpec(Strict):
    """The YAML file's schema."""

    categories: dict[Category, CategorySpec] = Field(min_length=1)
    lookalikes: list[str] = Field(default_factory=list)

    @field_validator("lookalikes")
    @classmethod
    def _not_blank(cls, v: list[str]) -> list[str]:
        for item in v:
            if not skeleton(item):
                raise ValueError(f"look-alike {item!r} has no letters")
        return v


@dataclass(frozen=True)
class Entry:
    """A compiled entry."""

    term: str
    category: Category
    weight: float
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Hit:
    """An entry found in an utterance."""

    term: str
    category: Category
    weight: float


#: a match ends where a syllable ends: not before a vowel or a final consonant (년아 is not in 년안에, 개새 not in
#: 이렇게 생기다); a stem that takes endings is written as each form (예쁘, 예쁜)
_SYLLABLE_END = "(?![\u1161-\u1175\u11a8-\u11c2])"


def compile_term(term: str) -> re.Pattern[str]:
    """The regular expression of an entry or look-alike over :func:`skeleton` text."""
    words = [re.escape(skeleton(word)) for word in term.split()]
    return re.compile(" ?".join(w for w in words if w) + _SYLLABLE_END)


@dataclass(frozen=True)
class Lexicon:
    """Entries and look-alikes, ready to match."""

    entries: tuple[Entry, ...]
    lookalikes: tuple[re.Pattern[str], ...]

    def mask(self, text: str) -> str:
        """``text``'s skeleton with every look-alike blanked out (same length)."""
        skel = skeleton(text)
        for pattern in self.lookalikes:
            skel = pattern.sub(lambda m: _MASK * len(m.group()), skel)
        return skel

    def lookalike_spans(self, text: str) -> list[tuple[int, int]]:
        """Where look-alikes are in ``text``'s skeleton."""
        skel = skeleton(text)
        return [m.span() for p in self.lookalikes for m in p.finditer(skel)]

    def model_view(self, text: str) -> str:
        """What the text model reads: :func:`.normalize.model_text` with the look-alikes left out."""
        return letters_outside(text, self.lookalike_spans(text))

    def match(self, text: str) -> list[Hit]:
        """The entries found in ``text`` once its look-alikes are blanked out, strongest first."""
        masked = self.mask(text)
        hits = [Hit(e.term, e.category, e.weight) for e in self.entries if e.pattern.search(masked)]
        return sorted(hits, key=lambda h: -h.weight)

    def scores(self, text: str) -> dict[Category, float]:
        """The strongest entry's weight per category (0 when none matched)."""
        out: dict[Category, float] = dict.fromkeys(CATEGORIES, 0.0)
        for hit in self.match(text):
            out[hit.category] = max(out[hit.category], hit.weight)
        return out


def _where(lines: dict[tuple, int], loc: tuple) -> int:
    for i in range(len(loc), -1, -1):
        if loc[:i] in lines:
            return lines[loc[:i]]
    return 1


def _schema_problems(exc: ValidationError, path: Path, lines: dict[tuple, int]) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # an entry is a string or a mapping: report the branch the input was meant for, once
        if "str" in loc and isinstance(err.get("input"), dict) or "EntrySpec" in loc and \
                not isinstance(err.get("input"), dict) and len(loc) == loc.index("EntrySpec") + 1:
            continue
        if "str" in loc and "entries" in loc:
            err = {**err, "msg": "expected a word or phrase, or a mapping {term: ..., weight: ...}"}
        # a union's member name (``str``, ``EntrySpec``) is not a place in the file
        shown = tuple(p for p in loc if p not in ("str", "EntrySpec", "[key]"))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = list(LexiconSpec.model_fields) if len(shown) == 1 else \
                list(CategorySpec.model_fields) if len(shown) == 3 else list(EntrySpec.model_fields)
            hint = difflib.get_close_matches(str(shown[-1]), known, n=1)
            msg = f"unknown key {shown[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                  f" (expected one of: {', '.join(known)})")
        elif err["type"] == "missing":
            msg = f"missing required key {shown[-1]!r}"
            shown = shown[:-1]
        elif err["type"] == "literal_error" and "[key]" in loc:
            msg = f"unknown category {loc[1]!r} (expected one of: {', '.join(CATEGORIES)})"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        where = ".".join(str(p) for p in shown) or "top level"
        out.append(f"{path}:{_where(lines, shown)}: {where}: {msg}")
    return list(dict.fromkeys(out))


def _compile(spec: LexiconSpec, path: Path, lines: dict[tuple, int]) -> tuple[Lexicon, list[str]]:
    problems: list[str] = []
    lookalikes = tuple(compile_term(t) for t in spec.lookalikes)
    entries: list[Entry] = []
    seen: dict[str, tuple[Category, int]] = {}
    bare = Lexicon((), lookalikes)
    for category, cat in spec.categories.items():
        for i, item in enumerate(cat.entries):
            term, weight = (item, cat.weight) if isinstance(item, str) else \
                (item.term, cat.weight if item.weight is None else item.weight)
            line = lines.get(("categories", category, "entries", i), 1)
            where = f"{path}:{line}: categories.{category}.entries.{i}"
            key = skeleton(term).replace(" ", "")  # a space in an entry is optional: 미친 놈 is 미친놈
            if not key:
                problems.append(f"{where}: entry {term!r} has no letters")
                continue
            if len(clean(term).replace(" ", "")) != sum(len(w) for w in units(term)):
                problems.append(f"{where}: entry {term!r} has a letter repeated three times or a drawn-out vowel, which"
                                f" utterances lose before matching ({model_text(term)!r}): it would match"
                                f" more than it says")
                continue
            if key in seen:
                other, other_line = seen[key]
                problems.append(f"{where}: entry {term!r} is already in {other} (line {other_line})")
                continue
            seen[key] = (category, line)
            pattern = compile_term(term)
            if not pattern.search(bare.mask(term)):
                problems.append(f"{where}: entry {term!r} is covered by a look-alike: it can never match")
                continue
            entries.append(Entry(term, category, weight, pattern))
    return Lexicon(tuple(entries), lookalikes), problems


def parse_lexicon(data: Any, path: Path, lines: dict[tuple, int]) -> Lexicon:
    """Validate loaded YAML ``data`` (with its line map) and compile it."""
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: expected a mapping with 'categories' and 'lookalikes' at the top level"])
    try:
        spec = LexiconSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_schema_problems(exc, path, lines)) from None
    lexicon, problems = _compile(spec, path, lines)
    if problems:
        raise ConfigError(problems)
    return lexicon


def load_lexicon(path: str | Path) -> Lexicon:
    """Load and validate a lexicon file; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    data, lines = load_yaml(path)
    return parse_lexicon(data, path, lines)
