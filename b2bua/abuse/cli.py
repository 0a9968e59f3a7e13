"""``b2bua abuse classify [--config FILE]``: one JSON verdict per line of text on stdin.

``--config`` names the process config (``config/b2bua.yaml``). Paths are relative to its folder: the lexicon
is ``detection.lexicon`` (default ``abuse_lexicon.yaml``, next to it) and the model cache
``detection.model_cache`` (default ``../var/abuse-models``). The file is only read for those two keys here:
``b2bua check-config`` validates it. The model is trained into the cache at first use (seconds).

Output, one line per input line: ``{"text": ..., "abusive": true|false, "category": ...|null, "score": 0..1}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..yamlconf import ConfigError, load_yaml
from .categories import DEFAULT_THRESHOLD

#: ``config/b2bua.yaml`` of the source tree
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "b2bua.yaml"
DEFAULT_LEXICON = "abuse_lexicon.yaml"
DEFAULT_MODEL_CACHE = "../var/abuse-models"


def paths_from_config(config: Path) -> tuple[Path, Path]:
    """(lexicon, model cache directory) for the process config at ``config``."""
    data, _ = load_yaml(config)
    detection: Any = data.get("detection") if isinstance(data, dict) else None
    section: dict[str, Any] = detection if isinstance(detection, dict) else {}
    lexicon = section.get("lexicon")
    cache = section.get("model_cache")
    base = config.resolve().parent
    return (base / (lexicon if isinstance(lexicon, str) else DEFAULT_LEXICON),
            base / (cache if isinstance(cache, str) else DEFAULT_MODEL_CACHE))


def _threshold(value: str) -> float:
    t = float(value)
    if not 0.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return t


def add_classify_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``abuse classify``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="process config (b2bua.yaml)")
    parser.add_argument("--threshold", type=_threshold, default=DEFAULT_THRESHOLD,
                        help=f"score from which a line is abusive (default {DEFAULT_THRESHOLD})")


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify stdin line by line; 2 on a configuration problem (printed as ``file:line: ...``)."""
    try:
        lexicon, cache = paths_from_config(args.config)
        from .classifier import AbuseClassifier  # noqa: PLC0415  (scikit-learn: only for this command)

        classifier = AbuseClassifier.load(lexicon, cache)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    threshold: float = getattr(args, "threshold", DEFAULT_THRESHOLD)
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # UTF-8 whatever the locale
    stdout = open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    with stdin, stdout:
        for line in stdin:
            text = line.rstrip("\r\n")
            verdict = classifier.classify(text, threshold)
            stdout.write(json.dumps(verdict.as_json(), ensure_ascii=False) + "\n")
            stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m b2bua.abuse classify ...`` until the lead wires ``b2bua abuse`` into ``b2bua/cli.py``."""
    parser = argparse.ArgumentParser(prog="python -m b2bua.abuse", description="abuse detection tools")
    sub = parser.add_subparsers(dest="command", required=True)
    classify = sub.add_parser("classify", help="classify lines of text from stdin, one JSON object per line")
    add_classify_arguments(classify)
    classify.set_defaults(func=cmd_classify)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
