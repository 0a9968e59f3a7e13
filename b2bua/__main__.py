"""``python -m b2bua`` is the ``b2bua`` command."""

import os
import sys

# One BLAS thread: the media tick's small matrix products must not wake a pool of
# spinning OpenBLAS threads on every 20 ms tick (they ate more than a core).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from .cli import main

sys.exit(main())
