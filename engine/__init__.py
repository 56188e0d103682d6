"""The FashionAI keypoint engine (headless): data, models, training, jobs and the `fkp` command line.

Importing it sets how OpenMP's idle threads wait, before any engine module can load torch (both
`fkp` and the studio import `engine` before torch): see `_PASSIVE_WAITING`.
"""

import os

# Torch's OpenMP threads that wait for work spin first (libgomp: up to 300,000 turns) before they
# sleep; beside a busy process those spinning threads take the cores the work needs (issue 29,
# item 13: `benchmarks/bench_predict_threads.py`). OpenMP reads this once, when torch loads it:
# so here, at the top of the package. A value the user set is kept.
_PASSIVE_WAITING = ("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault(*_PASSIVE_WAITING)
