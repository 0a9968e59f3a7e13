"""``python -m b2bua`` is the ``b2bua`` command."""

import sys

from .cli import main

sys.exit(main())
