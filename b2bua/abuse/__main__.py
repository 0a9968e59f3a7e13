"""``python -m b2bua.abuse classify|retrain|models [--config FILE] ...``."""

import sys

from .cli import main

sys.exit(main())
