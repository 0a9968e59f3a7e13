"""``b2bua abuse transcribe [--config FILE] FILE...``: print ``file<TAB>transcript`` for each file.

Nothing here needs ``b2bua``: ``--config`` only locates the default model directory (``var/whisper-base``
next to the configuration's folder, i.e. ``<config dir>/../var/whisper-base``; without ``--config``,
``./var/whisper-base``). Also runnable as ``python -m media.speech transcribe ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .audio import AudioError
from .engine import Transcriber
from .external import ExternalError, ExternalOptions, ExternalTranscriber
from .files import transcribe_file
from .model import ModelError
from .whisper import WhisperOptions, WhisperTranscriber

DEFAULT_MODEL_DIR = Path("var") / "whisper-base"


def add_transcribe_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``transcribe`` command's arguments."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (anything FFmpeg reads)")
    parser.add_argument("--config", help="the B2BUA's config file (only to find var/whisper-base next to it)")
    parser.add_argument("--model-dir", help="the Whisper model directory (assembled there on first use; default "
                        "var/whisper-base next to the config's folder, else ./var/whisper-base)")
    parser.add_argument("--engine", choices=("embedded", "external"), default="embedded")
    parser.add_argument("--url", help="the external server (OpenAI-compatible /v1/audio/transcriptions)")
    parser.add_argument("--external-model", default="whisper-1", help="model name sent to the external server")
    parser.add_argument("--timeout", type=float, default=30.0, help="external server timeout per attempt, s")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the embedded engine")
    parser.add_argument("--beam-size", type=int, default=WhisperOptions.beam_size)


def model_dir(args: argparse.Namespace) -> Path:
    """The model directory the arguments name."""
    if args.model_dir:
        return Path(args.model_dir)
    if args.config:
        return Path(args.config).resolve().parent.parent / DEFAULT_MODEL_DIR
    return DEFAULT_MODEL_DIR


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe every file; 0 when all were transcribed, 1 when one failed, 2 on a usage error."""
    embedded = WhisperTranscriber(model_dir(args), WhisperOptions(cpu_threads=args.threads, beam_size=args.beam_size))
    engine: Transcriber = embedded
    if args.engine == "external":
        if not args.url:
            print("transcribe: --engine external needs --url", file=sys.stderr)
            return 2
        engine = ExternalTranscriber(ExternalOptions(url=args.url, model=args.external_model, timeout_s=args.timeout),
                                     fallback=embedded)
    status = 0
    for name in args.files:
        try:
            result = transcribe_file(name, engine)
        except (AudioError, ModelError, ExternalError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}\t{result.text}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m media.speech transcribe FILE...``."""
    parser = argparse.ArgumentParser(prog="python -m media.speech", description="speech to text")
    sub = parser.add_subparsers(dest="command", required=True)
    add_transcribe_arguments(sub.add_parser("transcribe", help="print file<TAB>transcript per file"))
    args = parser.parse_args(argv)
    return cmd_transcribe(args)
