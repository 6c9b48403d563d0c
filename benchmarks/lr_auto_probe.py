"""lr=auto on a few of ``lr_suggestion.py``'s recipes without the sweep: the Trainer's range test, then
training at its suggestion, one line per seed (lr, every rule's value, test accuracy). For checking a
change to the range test against the sweep already in ``results/lr_suggestion.json``.

    .venv/bin/python benchmarks/lr_auto_probe.py mnist1d_lstm,mnist1d_gru 3
    .venv/bin/python benchmarks/lr_auto_probe.py digits 3 lr_find.num_steps=33   # extra overrides
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lr_suggestion  # noqa: E402
from common import MNIST_ROOT  # noqa: E402


def main(names: list[str], seeds: int, overrides: list[str]) -> None:
    for name in names:
        recipe = lr_suggestion.RECIPES[name]
        recipe = dataclasses.replace(recipe, overrides=(*recipe.overrides, *overrides))
        with tempfile.TemporaryDirectory() as scratch:
            runner = lr_suggestion.Runner(recipe, device="cpu",
                                          mnist_root=MNIST_ROOT,
                                          scratch=Path(scratch))
            for seed in range(seeds):
                start = time.time()
                run = runner.suggest_and_train(seed)
                run.pop("curve")
                print(name, seed, *overrides, f"{time.time() - start:.0f}s", json.dumps(run), flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3:])
