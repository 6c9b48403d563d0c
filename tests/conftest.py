"""Shared test setup: one torch thread per test process (pytest-xdist runs two processes on two
cores; more threads would only fight over them), and no GUI backend for matplotlib."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
