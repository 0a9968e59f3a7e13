"""The active text model's pointer (``<cache>/active.json``: version, when, previous): a leaf that both the
model cache (:mod:`.textmodel`, which keeps the versions it names) and the registry (:mod:`.models`) read."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("b2bua.abuse.models")

POINTER = "active.json"


def pointer_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / POINTER


def read_pointer(cache_dir: str | Path) -> dict[str, Any] | None:
    """The pointer's content, or None when there is none (or it is unreadable: logged)."""
    path = pointer_path(cache_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the abuse model pointer %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("version"), str) else None


def pointed_versions(cache_dir: str | Path) -> set[str]:
    """The active and previous versions named by the pointer (kept by the cache's clean-up)."""
    pointer = read_pointer(cache_dir) or {}
    return {v for v in (pointer.get("version"), pointer.get("previous")) if isinstance(v, str)}


__all__ = ["POINTER", "pointed_versions", "pointer_path", "read_pointer"]
