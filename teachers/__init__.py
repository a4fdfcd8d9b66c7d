"""Torch teachers (tagging, anomaly, pileup).

Importing this package sets two process-wide CPU runtime policies, both measured with benchmarks/teacher_throughput.py
on 2 cores:

- OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP, unless the environment already sets it: idle OpenMP threads
  then sleep instead of spinning. With other processes running, 2 spinning torch threads trained the demo GNN at
  58-78 jets/s, 1 thread at 175-186, 2 passive threads at 159-182 -- spinning threads wait on each other whenever
  another process holds a core.
- glibc's allocator keeps freed memory (``keep_freed_memory``): torch's activations are megabytes each, above glibc's
  mmap threshold, so every step mapped them fresh from the kernel and unmapped them again; the page faults of that
  round trip were 40% of the process's CPU time (48 s system time in a 67 s benchmark run).
"""

import ctypes
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> bool:
    """Make glibc serve every allocation from its heap (M_MMAP_MAX = 0) and return freed memory to the kernel only
    above 2 GiB of free heap top (M_TRIM_THRESHOLD), so torch reuses its freed activations instead of faulting in new
    pages each step. Demo GNN training 1337 -> 1414 jets/s, medium GNN 358 -> 555 (system time 42 s -> 12 s), demo
    inference ~2x; peak resident memory +0-30%. Returns False where the C library is not glibc or
    L1FORGE_GLIBC_MALLOC=default asks to leave it as it is."""
    if os.environ.get("L1FORGE_GLIBC_MALLOC") == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


keep_freed_memory()
