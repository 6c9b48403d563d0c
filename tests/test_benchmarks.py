"""Tests for benchmarks/: the relay that alternates contestants, the summary table, and one tiny run
of every benchmark script (a few steps on a small stand-in for MNIST) so that none can rot.

The figures and their targets are checked by ``make bench``, never here: a timing asserted in a
test would only measure how busy the machine was.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
RESULT_KEYS = {"figure", "headline", "target", "meets_target", "machine"}


def load(name: str) -> ModuleType:
    """A benchmark script as a module (its folder on sys.path, as when it runs as a script)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four IDX files shaped like MNIST's: 1,200 train and 300 test images of 28x28, labels 0-9."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("t10k", 300)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 64, (n, 28, 28)) + (labels * 20)[:, None, None]  # learnable: brightness = class
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


# ---------------------------------------------------------------------------------------- the relay
def run_relay(names: list[str], *, steps: int, warmup: int, block: int) -> tuple[list[tuple[str, int]], dict]:
    common = load("common")
    relay = common.Relay(names, block=block, steps=steps, warmup=warmup)
    order: list[tuple[str, int]] = []
    lock = threading.Lock()

    def contestant(name: str):
        def train() -> None:
            for step in range(1, steps + 1):
                with lock:
                    order.append((name, step))
                relay.tick(name)
        return train

    blocks = relay.run({name: contestant(name) for name in names})
    return order, blocks


def test_relay_runs_contestants_in_turns_of_one_block_after_the_warm_up() -> None:
    order, blocks = run_relay(["a", "b"], steps=7, warmup=1, block=2)
    turns = [(name, [s for n, s in order[i:i + 2] if n == name]) for i, (name, _) in enumerate(order)
             if i == 0 or order[i - 1][0] != name]
    assert [name for name, _ in turns] == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert order[:2] == [("a", 1), ("b", 1)]
    assert [s for n, s in order if n == "a"] == list(range(1, 8))
    assert {name: [len(b.wall) for b in timed] for name, timed in blocks.items()} == {"a": [2, 2, 2], "b": [2, 2, 2]}


def test_relay_with_three_contestants_goes_round_robin() -> None:
    order, blocks = run_relay(["a", "b", "c"], steps=4, warmup=0, block=2)
    starts = [name for i, (name, _) in enumerate(order) if i == 0 or order[i - 1][0] != name]
    assert starts == ["a", "b", "c", "a", "b", "c"]
    assert all(len(timed) == 2 for timed in blocks.values())


def test_relay_reports_a_contestant_that_fails_without_hanging_the_others() -> None:
    common = load("common")
    relay = common.Relay(["ok", "broken"], block=1, steps=3, warmup=0)

    def ok() -> None:
        for _ in range(3):
            relay.tick("ok")

    def broken() -> None:
        relay.tick("broken")
        raise ValueError("boom")

    with pytest.raises(RuntimeError, match="contestant 'broken' failed: boom"):
        relay.run({"ok": ok, "broken": broken})


def test_relay_refuses_steps_that_are_not_whole_blocks() -> None:
    common = load("common")
    with pytest.raises(ValueError, match="positive multiple of block, got steps=10, warmup=1, block=4"):
        common.Relay(["a"], block=4, steps=10, warmup=1)


def test_round_ratios_pair_the_blocks_of_each_round() -> None:
    common = load("common")
    blocks = {"a": [common.StepTimes([1.0, 1.0], [0.5, 0.5]), common.StepTimes([2.0, 2.0], [1.0, 1.0])],
              "b": [common.StepTimes([2.0, 2.0], [1.0, 2.0]), common.StepTimes([1.0, 1.0], [1.0, 1.0])]}
    assert common.round_ratios(blocks, "b", "a") == [2.0, 0.5]
    assert common.round_ratios(blocks, "b", "a", "cpu_block") == [3.0, 1.0]
    assert common.ratio_summary([1.0, 2.0, 4.0]) == {"median": 2.0, "q1": 1.0, "q3": 4.0, "rounds": 3}


def test_round_ratios_average_a_baseline_that_ran_twice_in_the_round() -> None:
    common = load("common")
    blocks = {"hand": [common.StepTimes([1.0], [1.0])], "trainwise": [common.StepTimes([3.0], [3.0])],
              "hand_again": [common.StepTimes([2.0], [2.0])]}
    assert common.round_ratios(blocks, "trainwise", ["hand", "hand_again"], "wall_block") == [2.0]


# ---------------------------------------------------------------------------------------- run_all
def test_summary_table_lists_each_result_and_whether_it_meets_its_target(tmp_path: Path) -> None:
    run_all = load("run_all")
    (tmp_path / "fast.json").write_text(json.dumps({"headline": "1.01x", "target": "<= 1.03", "meets_target": True}))
    (tmp_path / "slow.json").write_text(json.dumps({"headline": "1.2x", "target": "<= 1.05", "meets_target": False}))
    table = run_all.summary_table(tmp_path, ["fast", "slow", "absent"]).splitlines()
    assert table[2:] == ["| fast | 1.01x | <= 1.03 | yes |", "| slow | 1.2x | <= 1.05 | no |"]


def test_run_all_skips_a_benchmark_whose_script_is_not_there(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    run_all = load("run_all")
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path)
    assert run_all.available("lr_suggestion") == "benchmarks/lr_suggestion.py is not there"
    assert run_all.available("memory") == "benchmarks/memory.py is missing"


# ---------------------------------------------------------------------------------------- every script, tiny
@pytest.mark.slow
@pytest.mark.parametrize("name", ["step_overhead", "data_path", "fit_overhead", "vs_lightning", "checkpoint_cost",
                                  "checkpoint_growth", "dry_run", "memory", "time_to_accuracy", "export_int8",
                                  "tune_storage", "timing_overhead", "speed_options", "token_step", "val_every",
                                  "image_folder", "gpt"])
def test_benchmark_runs_in_a_tiny_configuration(name: str, tiny_mnist: Path, tmp_path: Path) -> None:
    if name == "vs_lightning" and importlib.util.find_spec("lightning") is None:
        pytest.skip("lightning is not installed: it is a benchmark-only dependency "
                    "(pip install -r benchmarks/requirements.txt), and make test does not install it")
    module = load(name)
    assert module.main(["--quick", "--threads", "1", "--out", str(tmp_path), "--mnist-root", str(tiny_mnist)]) == 0
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert RESULT_KEYS <= result.keys()
    assert isinstance(result["meets_target"], bool)
    assert result["quick"] is True
    assert result["machine"]["torch"].startswith("2.")
