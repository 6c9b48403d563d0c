"""Shared test setup: one torch thread per test process (pytest-xdist runs two processes on two
cores; more threads would only fight over them), and no GUI backend for matplotlib."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)

# Files that take minutes run first: pytest-xdist (--dist loadfile --no-loadscope-reorder, see the
# Makefile) hands files out in collection order, and a long file handed out last keeps one worker busy
# while the other idles (xdist's default order, most tests first, started the Ray file last: +3 min).
SLOW_FIRST = ("test_tune_ray.py", "test_tune_pbt.py", "test_distributed.py", "test_distributed_data.py",
              "test_tune_distributed.py", "test_doctor_faults.py")


def pytest_collection_modifyitems(config, items):  # noqa: ANN001 - pytest's hook
    first = {name: rank for rank, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(SLOW_FIRST)))  # stable: the others keep their order
