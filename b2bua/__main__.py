"""``python -m b2bua`` is the ``b2bua`` command."""

import os
import sys

# One BLAS thread: the media tick's small matrix products must not wake a pool of
# spinning OpenBLAS threads on every 20 ms tick (they ate more than a core).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from .cli import main

sys.exit(main())
