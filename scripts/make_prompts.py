#!/usr/bin/env python3
"""Regenerate the default prompts in media/prompts/ from texts.yaml with espeak-ng's Korean voice.

Each prompt becomes an 8 kHz mono 16-bit WAV (what the media engine plays), so the shipped files
are reproducible: `apt install espeak-ng`, edit texts.yaml, run this script, commit the WAVs.

    python scripts/make_prompts.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PROMPTS = Path(__file__).resolve().parents[1] / "media" / "prompts"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="prompt names to regenerate (default: all)")
    args = ap.parse_args()
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed (apt install espeak-ng)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(PROMPTS.parents[1]))
    from media.audiofile import write_wav  # noqa: PLC0415
    from media.prompts_lib import decode_file  # noqa: PLC0415

    texts = yaml.safe_load((PROMPTS / "texts.yaml").read_text(encoding="utf-8"))
    for name, text in texts.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run([espeak, "-v", "ko", "-s", "150", "-w", str(raw), text], check=True)
            samples = decode_file(raw)  # resampled to 8 kHz mono by PyAV
        write_wav(PROMPTS / f"{name}.wav", samples)
        print(f"{name}.wav: {len(samples) / 8000:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
