"""YAML with line numbers and the strict pydantic base shared by every config model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """One or more ``file:line: problem`` messages."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- YAML with line numbers -----------------------------------------------------------

def _to_python(node: yaml.Node, lines: dict[tuple, int], path: tuple) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
            lines[path + (key,)] = k.start_mark.line + 1
            out[key] = _to_python(v, lines, path + (key,))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, lines, path + (i,)) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Load one YAML file; returns the data and a ``path -> line`` map."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}:1: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}:1: cannot read: {exc}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: YAML syntax error: {exc.problem or exc}"]) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return {}, lines
    return _to_python(node, lines, ()), lines


