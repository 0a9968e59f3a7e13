"""Text normalisation that survives ASR output and typed evasions.

Two views of one utterance come out of :func:`units`:

* the **key** of each letter, what the lexicon matches on: syllables decomposed into conjoining jamo with
  tense consonants and near-homophone vowels folded (씨/시, 빨/발, 새/세), so ``씨발``, ``시발`` and ``씨빨``
  are one key; a letter repeated more than twice cut to two, drawn-out vowels dropped (``씨이이발``);
* the **letter** itself (NFKC, lower case), what the text model reads (:func:`model_text`).

Punctuation and symbols are dropped (``씨.발``), and runs of one-letter words are joined (``씨 발``,
``ㅅ ㅂ``, ``개 새 끼``): ASR and evaders both space letters apart. Other spaces stay, so a two-letter entry
never matches across two real words (``지시 발령`` does not contain ``시발``); the lexicon says where a space
may fall inside an entry.

Jamo decomposition is Unicode arithmetic (Unicode §3.12, "Conjoining Jamo Behavior"): a precomposed syllable
is ``0xAC00 + (L * 21 + V) * 28 + T``. That is three lines, exact for all 11,172 syllables, and spares a
dependency (the ``jamo`` package is not installed and does nothing more). Conjoining jamo keep the position of
a consonant (initial ᄉ U+1109 and final ᆺ U+11BA differ), so the evasion ``ㅅㅂ`` (two initials, after NFKC)
cannot match inside ``웃반`` (final ㅅ, then initial ㅂ).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import NamedTuple

_S_BASE, _L_BASE, _V_BASE, _T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
_V_COUNT, _T_COUNT = 21, 28
_S_COUNT = 19 * _V_COUNT * _T_COUNT
_IEUNG = 11  # ㅇ as an initial: a syllable of ㅇ and a vowel only is how a drawn-out vowel is written

#: initial consonants folded: ㄲ ㅃ ㅆ -> ㄱ ㅂ ㅅ (새끼/새기, 씨빨/시발). Not ㄸ or ㅉ: 찐따 would be 진다, a verb
#: ending of every other sentence. Aspirates stay (미친 is not 미진).
_FOLD_L = {1: 0, 8: 7, 10: 9}
#: vowels spoken alike folded: ㅐ->ㅔ, ㅒ->ㅖ, ㅙ/ㅞ->ㅚ, ㅢ->ㅣ (final consonants are never folded: 좇 is not 좆)
_FOLD_V = {1: 5, 3: 7, 10: 11, 15: 11, 19: 20}


class Unit(NamedTuple):
    """One letter of normalised text: its folded jamo key and the letter itself (a tuple: made per letter)."""

    key: str
    char: str


def clean(text: str) -> str:
    """NFKC (full-width forms, compatibility jamo), lower case, letters/digits/spaces only."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in text if _kept(c))


@lru_cache(maxsize=65536)
def _kept(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "LN"


@lru_cache(maxsize=65536)
def _key(char: str) -> tuple[str, int, int, int]:
    """Folded jamo key of a letter, and its (initial, vowel, final) indices or -1 when not a syllable."""
    code = ord(char)
    if _S_BASE <= code < _S_BASE + _S_COUNT:
        s = code - _S_BASE
        lead, vowel, tail = s // (_V_COUNT * _T_COUNT), (s % (_V_COUNT * _T_COUNT)) // _T_COUNT, s % _T_COUNT
        lead, vowel = _FOLD_L.get(lead, lead), _FOLD_V.get(vowel, vowel)
        key = chr(_L_BASE + lead) + chr(_V_BASE + vowel) + (chr(_T_BASE + tail) if tail else "")
        return key, lead, vowel, tail
    if _L_BASE <= code < _L_BASE + 19:  # a lone initial (NFKC turns compatibility ㅅ into this)
        lead = _FOLD_L.get(code - _L_BASE, code - _L_BASE)
        return chr(_L_BASE + lead), -1, -1, -1
    if _V_BASE <= code < _V_BASE + _V_COUNT:  # a lone vowel
        vowel = _FOLD_V.get(code - _V_BASE, code - _V_BASE)
        return chr(_V_BASE + vowel), -1, -1, -1
    return char, -1, -1, -1


def _word_units(word: str) -> list[Unit]:
    out: list[Unit] = []
    prev_vowel, prev_open = -1, False
    for char in word:
        key, lead, vowel, tail = _key(char)
        if len(out) >= 2 and key == out[-1].key == out[-2].key:
            continue  # a letter repeated more than twice: 씨발발발, ㅋㅋㅋㅋ (twice is Korean: 자자, 뽀뽀, 하하)
        if lead == _IEUNG and tail == 0 and prev_open and vowel == prev_vowel:
            continue  # drawn-out vowel: 씨이이발, 시이발
        out.append(Unit(key, char))
        prev_vowel, prev_open = vowel, (vowel >= 0 and tail == 0)
    return out


def units(text: str) -> list[list[Unit]]:
    """The words of ``text`` as lists of :class:`Unit`, runs of one-letter words joined into one word."""
    words = [w for w in (_word_units(w) for w in clean(text).split()) if w]
    out: list[list[Unit]] = []
    run: list[Unit] = []
    for word in words:
        if len(word) == 1:
            run.extend(word)
            continue
        if run:
            out.append(run)
            run = []
        out.append(word)
    if run:
        out.append(run)
    return out


def skeleton(text: str) -> str:
    """The lexicon's view: the words' folded jamo keys, separated by single spaces."""
    return " ".join("".join(u.key for u in word) for word in units(text))


def letters_outside(text: str, spans: list[tuple[int, int]]) -> str:
    """:func:`model_text` of ``text`` without the letters whose keys overlap ``spans`` of its skeleton."""
    out: list[str] = []
    pos = 0
    for word in units(text):
        kept = []
        for unit in word:
            start, end = pos, pos + len(unit.key)
            pos = end
            if not any(start < b and a < end for a, b in spans):
                kept.append(unit.char)
        pos += 1  # the space between words
        if kept:
            out.append("".join(kept))
    return " ".join(out)


def model_text(text: str) -> str:
    """The text model's view: cleaned letters, long repeats and drawn-out vowels cut, spaced letters joined."""
    return " ".join("".join(u.char for u in word) for word in units(text))
