"""Torch teachers (tagging, anomaly, pileup).

Importing this package sets two process-wide CPU runtime policies, both measured with benchmarks/teacher_throughput.py
on 2 cores:

- OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP, unless the environment already sets it: idle OpenMP threads
  then sleep instead of spinning. With other processes running, 2 spinning torch threads trained the demo GNN at
  58-78 jets/s, 1 thread at 175-186, 2 passive threads at 159-182 -- spinning threads wait on each other whenever
  another process holds a core.
- glibc's allocator keeps freed memory (``keep_freed_memory``): torch's activations are megabytes each, above glibc's
  mmap threshold, so every step mapped them fresh from the kernel and unmapped them again; the page faults of that
  round trip were 40% of the process's CPU time (48 s system time in a 67 s benchmark run). It applies to the whole
  process, TensorFlow students of the same ``l1forge run`` included; resident memory then stays near its peak.
"""

import ctypes
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> bool:
    """Make glibc serve allocations from its heap instead of fresh kernel mappings (M_MMAP_MAX = 0; threads other
    than the main one still map blocks above 64 MiB) and return freed memory to the kernel only above 2 GiB of free
    heap top (M_TRIM_THRESHOLD), so torch reuses its freed activations instead of faulting in new pages each step.
    benchmarks/teacher_throughput.py: inference 1.3-1.8x faster, medium GNN training 382 -> 561 jets/s, demo
    training +1-2%. Returns True when glibc took both settings; False on other platforms, when LD_PRELOAD brings
    another allocator (jemalloc, tcmalloc, mimalloc) or when L1FORGE_GLIBC_MALLOC=default asks to leave it as it is."""
    if os.environ.get("L1FORGE_GLIBC_MALLOC") == "default" or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS: no symbol; Windows: CDLL(None) refused)
        return False
    return all([bool(mallopt(_M_MMAP_MAX, 0)), bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))])


keep_freed_memory()
