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
            if base == "media":  # ``from media import api``: the module named is what is imported
                out.update(f"media.{a.name}" for a in node.names)
    return out


def test_sip_core_is_sans_io_and_knows_no_call_control_or_media() -> None:
    files = sorted((ROOT / "b2bua" / "sip").glob("*.py"))
    assert files
    for f in files:
        for name in _imports(f):
            forbidden = ("asyncio", "b2bua.call", "media", "socket", "uvloop")
            assert not name.startswith(forbidden), f"{f.name} imports {name}"


def test_media_imports_nothing_from_b2bua() -> None:
    files = sorted((ROOT / "media").rglob("*.py"))
    assert files
    for f in files:
        for name in _imports(f):
            assert not name.startswith("b2bua"), f"{f} imports {name}"


def test_call_control_reaches_media_only_through_media_api() -> None:
    files = sorted((ROOT / "b2bua" / "call").glob("*.py"))
    assert files
    seen_api = False
    for f in files:
        for name in _imports(f):
            if name == "media.api":
                seen_api = True
                continue
            assert name != "media" and not name.startswith("media."), \
                f"{f.name} imports {name}: call control reaches media through media.api only"
            assert not name.startswith(("asyncio", "socket", "b2bua.transport")), f"{f.name} imports {name}: sans-I/O"
    assert seen_api, "call control's contract with media is media.api"


def test_media_api_is_the_contract_and_knows_only_the_standard_library() -> None:
    import sys

    names = _imports(ROOT / "media" / "api.py")
    assert names
    for name in names:
        assert name.split(".")[0] in sys.stdlib_module_names or name == "__future__", f"media/api.py imports {name}"


#: the size promises of the call-control split (issue 11): one job per module, readable in one sitting
MAX_LINES = 800
MAX_B2BUA_LINES = 650


def test_no_module_grows_past_its_budget() -> None:
    sizes = {f.relative_to(ROOT).as_posix(): len(f.read_text().splitlines())
             for top in ("b2bua", "media") for f in (ROOT / top).rglob("*.py")}
    assert sizes["b2bua/call/b2bua.py"] < MAX_B2BUA_LINES, sizes["b2bua/call/b2bua.py"]
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these modules along their seams: {too_long}"
