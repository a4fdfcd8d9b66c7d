"""Torch teachers (tagging, anomaly, pileup).

Importing this package before torch sets OMP_WAIT_POLICY=PASSIVE unless the environment already sets it: idle OpenMP
threads then sleep instead of spinning. Measured on 2 cores with other processes running (benchmarks/
teacher_throughput.py): 2 spinning torch threads trained the demo GNN at 58-78 jets/s, 1 thread at 175-186, 2 passive
threads at 159-182 -- the spinning threads wait on each other whenever another process holds a core.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
