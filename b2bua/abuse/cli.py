"""``b2bua abuse classify [--config FILE]``: one JSON verdict per line of text on stdin.

``--config`` names the process config (``config/b2bua.yaml``). Paths are relative to its folder: the lexicon
is ``detection.lexicon`` (default ``abuse_lexicon.yaml``, next to it) and the model cache
``detection.model_cache`` (default ``../var/abuse-models``); the process file is validated (``file:line``
problems, exit 2), the routing file is not read. The model is trained into the cache at first use (seconds).

Output, one line per input line: ``{"text": ..., "abusive": true|false, "category": ...|null, "score": 0..1}``.

``b2bua abuse retrain [--config FILE]`` trains a model from the shipped data plus the confirmed and rejected
abuse events of the config's database (``storage.url``), prints both models' figures, and activates the new
one unless it is worse (:mod:`.models`): exit 0 when the new model is active, 1 when it was refused.
``b2bua abuse models [--config FILE] [--activate VERSION | --rollback]`` lists the cached versions (``*`` marks
the active one), activates one, or goes back to the previously active one. Running detectors follow.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import load_process
from ..yamlconf import ConfigError
from .categories import DEFAULT_THRESHOLD

#: ``config/b2bua.yaml`` of the source tree
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "b2bua.yaml"


def paths_from_config(config: Path) -> tuple[Path, Path]:
    """(lexicon, model cache directory) of the process config at ``config`` (``detection:`` there)."""
    detection = load_process(config).detection
    base = config.resolve().parent
    return detection.lexicon_path(base), detection.model_cache_path(base)


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
        return _config_problem(exc)
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


def _config_problem(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return 2


def add_retrain_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``abuse retrain``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="process config (b2bua.yaml)")


def cmd_retrain(args: argparse.Namespace) -> int:
    """Retrain from the labelled events; 0 activated, 1 refused, 2 on a configuration problem."""
    from ..config import load_config  # noqa: PLC0415
    from ..storage.abuse import AbuseEvents  # noqa: PLC0415
    from .models import retrain  # noqa: PLC0415  (scikit-learn: only for this command)

    try:
        config = load_config(args.config)
        _, cache = paths_from_config(args.config)
    except ConfigError as exc:
        return _config_problem(exc)
    store = AbuseEvents.for_config(config)
    try:
        labelled = [(str(e.get("transcript") or ""), e.get("category"), str(e["label"])) for e in store.events()
                    if e.get("label") in ("confirmed", "rejected")]
    finally:
        store.close()
        store.engine.dispose()
    result = retrain(cache, labelled)
    print(result.table())
    return 0 if result.activated else 1


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``abuse models``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="process config (b2bua.yaml)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--activate", metavar="VERSION", help="make this cached version the active model")
    which.add_argument("--rollback", action="store_true", help="go back to the previously active model")


def cmd_models(args: argparse.Namespace) -> int:
    """List, activate or roll back; 1 on an unknown version or nothing to roll back to, 2 on a bad config."""
    from .models import ModelError, activate, active_version, list_models, rollback  # noqa: PLC0415

    try:
        _, cache = paths_from_config(args.config)
    except ConfigError as exc:
        return _config_problem(exc)
    try:
        if args.activate:
            activate(cache, args.activate)
            print(f"activated {args.activate}")
        elif args.rollback:
            print(f"rolled back to {rollback(cache)}")
        else:
            models = list_models(cache)
            for m in models:
                when = datetime.fromtimestamp(m.modified).isoformat(timespec="seconds")
                print(f"{'*' if m.active else ' '} {m.version}  {when}")
            if not any(m.active for m in models):
                print(f"(active: {active_version(cache)}, not trained yet)")
    except ModelError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def add_commands(sub: Any) -> None:
    """``classify``, ``retrain`` and ``models`` on an argparse sub-command set (here and in ``b2bua abuse``)."""
    classify = sub.add_parser("classify", help="classify lines of text from stdin, one JSON object per line")
    add_classify_arguments(classify)
    classify.set_defaults(func=cmd_classify)
    retrain = sub.add_parser("retrain", help="train a model with the labelled abuse events; activate it if not worse")
    add_retrain_arguments(retrain)
    retrain.set_defaults(func=cmd_retrain)
    models = sub.add_parser("models", help="list, activate or roll back text-model versions")
    add_models_arguments(models)
    models.set_defaults(func=cmd_models)


def main(argv: list[str] | None = None) -> int:
    """``python -m b2bua.abuse classify|retrain|models ...`` (``b2bua abuse ...`` once wired into b2bua/cli.py)."""
    parser = argparse.ArgumentParser(prog="python -m b2bua.abuse", description="abuse detection tools")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
