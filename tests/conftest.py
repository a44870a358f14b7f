"""One CPU thread per test process and per process a test starts, unless the caller chose otherwise.

The suite trains small models in this process, in sweep workers it starts and in notebook kernels; with torch's
default of one thread per core each of them competes for the same cores (on the 2-core CI machine two OpenMP
threads per process measured 5-7x slower). Set before torch is imported, so it holds for this process too. A test
about thread counts sets its own environment (tests/test_sweep_checks.py).
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
