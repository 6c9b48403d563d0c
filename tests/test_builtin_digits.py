"""The digits data set is read from the CSV file scikit-learn ships, without importing ``sklearn.datasets``
(2+ s of scipy and more, paid by every run of the digits example): the same arrays as ``load_digits``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

from trainwise.data import builtin


def test_digits_read_from_the_shipped_file_equal_load_digits() -> None:
    digits = load_digits()
    images, targets = builtin._digits_arrays()
    assert images.dtype == digits.images.dtype and np.array_equal(images, digits.images)
    assert np.array_equal(targets, digits.target)
    data = builtin.load_digits_data()
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == torch.float32
    assert torch.equal(data.x, torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1))
    assert torch.equal(data.y, torch.from_numpy(digits.target.astype(np.int64)))


def test_loading_digits_imports_no_sklearn() -> None:
    code = ("import sys; from trainwise.data.builtin import load_digits_data; load_digits_data(); "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('sklearn', 'scipy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_file_it_falls_back_to_load_digits(monkeypatch) -> None:
    import sklearn.datasets

    calls = []
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: calls.append(1) or load_digits())
    images, targets = builtin._digits_arrays()
    assert calls == [1] and np.array_equal(images, load_digits().images) and len(targets) == 1797
