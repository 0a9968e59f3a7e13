"""How the console writes times, lengths and sizes: Seoul time, whatever the server's zone."""

from __future__ import annotations

from datetime import date, datetime, time

from ..routing.schedule import SEOUL


def ts(unix: float | None) -> str:
    """``2026-12-03 14:05:09`` in Seoul time; empty for None."""
    if unix is None:
        return ""
    return datetime.fromtimestamp(unix, SEOUL).strftime("%Y-%m-%d %H:%M:%S")


def when(moment: datetime | None) -> str:
    return moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def dur(seconds: float | None) -> str:
    """``4:07`` or ``1:02:03``; empty for None."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GB"


def day_start(text: str) -> float:
    """Unix time of 00:00 in Seoul on ``YYYY-MM-DD`` (ValueError when it is not such a date)."""
    return datetime.combine(date.fromisoformat(text), time(0), tzinfo=SEOUL).timestamp()


def day(unix: float) -> str:
    """``YYYY-MM-DD`` of ``unix`` in Seoul (the search form's dates)."""
    return datetime.fromtimestamp(unix, SEOUL).strftime("%Y-%m-%d")


__all__ = ["day", "day_start", "dur", "size", "ts", "when"]
