"""The PBX number plan's entries: staff extensions as exact numbers, prefixes or ranges.

A leaf module (no project imports): the configuration validates ``departments[].extensions``
with it, and caller identity (:class:`b2bua.call.identity.NumberPlan`) looks extensions up with it.

An entry is a pair ``(low, high)``: an exact number is ``(n, n)``, a prefix ``22*`` is
``("22", "22\\uffff")`` and a range ``2200-2299`` is ``("2200", "2299")``.
"""

from __future__ import annotations

import re

__all__ = ["extension_matches", "extensions_overlap", "is_prefix", "parse_extension_range"]

_EXTENSION = re.compile(r"[0-9*#]+")

#: Marks the high end of a prefix entry: sorts after every digit, ``*`` and ``#``.
_PREFIX_END = "\uffff"


def parse_extension_range(item: str) -> tuple[str, str]:
    """``"2201"`` -> ("2201", "2201"); ``"22*"`` (prefix) -> ("22", "22\\uffff");
    ``"2200-2299"`` -> ("2200", "2299"). ValueError for anything else."""
    text = str(item).strip()
    if text.endswith("*") and _EXTENSION.fullmatch(text[:-1]) and text[:-1].isdigit():
        return text[:-1], text[:-1] + _PREFIX_END
    low, dash, high = text.partition("-")
    if dash:
        if not (low.isdigit() and high.isdigit() and len(low) == len(high)):
            raise ValueError(f"extension range {item!r} needs two numbers of one length (2200-2299)")
        if low > high:
            raise ValueError(f"extension range {item!r} runs backwards")
        return low, high
    if not _EXTENSION.fullmatch(text):
        raise ValueError(f"{item!r} is not an extension, a prefix (22*) or a range (2200-2299)")
    return text, text


def is_prefix(rng: tuple[str, str]) -> bool:
    """True for a prefix entry (``22*``)."""
    return rng[1].endswith(_PREFIX_END)


def extensions_overlap(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """True when some extension falls in both (ranges of different lengths never overlap)."""
    prefix_a, prefix_b = is_prefix(a), is_prefix(b)
    if prefix_a or prefix_b:
        pa, pb = (a[0] if prefix_a else None), (b[0] if prefix_b else None)
        if pa is not None and pb is not None:
            return pa.startswith(pb) or pb.startswith(pa)
        p, other = (pa, b) if pa is not None else (pb, a)
        assert p is not None
        return other[0][:len(p)] <= p <= other[1][:len(p)]
    return len(a[0]) == len(b[0]) and a[0] <= b[1] and b[0] <= a[1]


def extension_matches(rng: tuple[str, str], ext: str) -> bool:
    """True when extension ``ext`` falls in the entry ``rng``."""
    if is_prefix(rng):
        return ext.startswith(rng[0])
    return len(ext) == len(rng[0]) and rng[0] <= ext <= rng[1]
