"""The three walls of DEVELOPERS.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
    return out


def test_sip_core_is_sans_io_and_knows_no_call_control_or_media() -> None:
    files = sorted((ROOT / "b2bua" / "sip").glob("*.py"))
    assert files
    for f in files:
        for name in _imports(f):
            assert not name.startswith(("asyncio", "b2bua.call", "media", "socket", "uvloop")), f"{f.name} imports {name}"


def test_media_imports_nothing_from_b2bua() -> None:
    files = sorted((ROOT / "media").rglob("*.py"))
    assert files
    for f in files:
        for name in _imports(f):
            assert not name.startswith("b2bua"), f"{f} imports {name}"


def test_call_control_reaches_media_only_through_the_engine_interface() -> None:
    for f in sorted((ROOT / "b2bua" / "call").glob("*.py")):
        for name in _imports(f):
            assert not name.startswith("media"), f"{f.name} imports {name}: use the engine's command interface"
