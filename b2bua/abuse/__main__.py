"""``python -m b2bua.abuse classify [--config FILE]``."""

import sys

from .cli import main

sys.exit(main())
