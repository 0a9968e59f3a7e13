"""``python -m media.speech transcribe FILE...``."""

from .cli import main

raise SystemExit(main())
