"""YAML with line numbers and the strict pydantic base shared by every config model."""

from __future__ import annotations

import re
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

class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.1 surprises an operator trips over taken out (as YAML 1.2 did):

    * no base-60 numbers: ``lunch: 12:00`` is the text ``12:00``, not 720;
    * dates stay text (``2026-02-30`` reaches validation, which names the line, instead of raising
      while the file is read);
    * a number with a leading zero is text (``0221332200`` is a phone number, not octal).

    Hand-made because PyYAML resolves these in its loader classes and ruamel.yaml (YAML 1.2) would still
    make dates and need its own line tracking: this is the few resolvers we change, nothing else.
    """


_DROPPED = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:0|[1-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))

MERGE_TAG = "tag:yaml.org,2002:merge"


def _to_python(node: yaml.Node, lines: dict[tuple, int], path: tuple, problems: list[str], where: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        first: dict[Any, int] = {}
        for k, v in node.value:
            line = k.start_mark.line + 1
            if k.tag == MERGE_TAG:
                problems.append(f"{where}:{line}: YAML merge keys (<<) are not supported: write the keys out")
                continue
            key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
            try:
                if key in first:
                    problems.append(f"{where}:{line}: {key}: listed twice (first at line {first[key]})")
                    continue
            except TypeError:  # an unhashable key: validation names it
                pass
            else:
                first[key] = line
            lines[path + (key,)] = line
            out[key] = _to_python(v, lines, path + (key,), problems, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, lines, path + (i,), problems, where) for i, v in enumerate(node.value)]
    return _scalar(node, problems, where)


def _scalar(node: yaml.ScalarNode, problems: list[str], where: Path) -> Any:
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:  # e.g. !!binary that is not base64
        problems.append(f"{where}:{node.start_mark.line + 1}: {node.value!r}: {exc}")
        return None
    finally:
        loader.dispose()


def load_yaml(path: Path, problems: list[str] | None = None) -> tuple[Any, dict[tuple, int]]:
    """Load one YAML file; returns the data and a ``path -> line`` map. A syntax error is a
    :class:`ConfigError`; so are keys written twice and merge keys, unless ``problems`` is given: then
    they are added to it and the rest of the file is read (the caller reports everything at once)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}:1: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}:1: cannot read: {exc}"]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: YAML syntax error: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1: YAML error: {exc}"]) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return {}, lines
    found: list[str] = []
    data = _to_python(node, lines, (), found, path)
    if found and problems is None:
        raise ConfigError(found)
    if problems is not None:
        problems.extend(found)
    return data, lines
