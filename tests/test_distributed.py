"""DistributedDataParallel on CPU: real processes (``--nproc`` and ``torchrun``), gloo, real signals.

The reference runs are shared by the module: one process, and two processes of the same global
batch started by torchrun. Batch 65 on digits' 1,294 training samples splits every batch unevenly
between the two ranks (32/33, the last 29/30), so the per-rank loss weights are exercised.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from trainwise.data.loader import InMemoryBatches

TIMEOUT = 240
CONFIG = {
    "name": "ddp", "seed": 0,
    "data": {"dataset": "digits", "batch_size": 65, "val_fraction": 0.1, "test_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [32], "dropout": 0.0},
    "optimizer": {"name": "adamw", "lr": 3.0e-3},
    "train": {"epochs": 12, "report": False, "early_stopping": {"enabled": False}},
}
# Float sums run in another order on two ranks (a batch's loss is two partial means, gradients
# are averaged by all-reduce): the curves agree to about 1e-7; this is the tolerance we promise.
CURVE_RTOL = 1e-5


def env(tmp: Path) -> dict[str, str]:
    variables = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1",
                     TMPDIR=str(tmp))  # torchrun leaves a torchelastic_* folder in TMPDIR
    variables.pop("WORLD_SIZE", None)
    return variables


def trainwise(work: Path, *args: str, nproc: int = 1, torchrun: bool = False, quiet: bool = True) -> subprocess.Popen:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "trainwise"] if torchrun else [sys.executable, "-m", "trainwise"]
    extra = ["--nproc", str(nproc)] if nproc > 1 and not torchrun else []
    return subprocess.Popen([*launcher, "train", "config.yaml", *(["--quiet"] if quiet else []), *args, *extra],
                            cwd=work, env=env(work),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def rows(run_dir: Path, split: str, metric: str) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [float(r["value"]) for r in csv.DictReader(handle) if r["split"] == split and r["metric"] == metric]


def rank_of(pid: int) -> int:
    variables = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return int(variables["RANK"])


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return folder


@pytest.fixture(scope="module")
def references(work: Path) -> dict[str, Path]:
    """One process and two torchrun processes, side by side."""
    single = trainwise(work, "--run-dir", "single")
    double = trainwise(work, "--run-dir", "double", nproc=2, torchrun=True)
    for proc in (single, double):
        code, output = finish(proc)
        assert code == 0, output
    return {"single": work / "single", "double": work / "double"}


# ------------------------------------------------------------------ sharding, in one process
@pytest.mark.parametrize("n,batch,world", [(1294, 65, 2), (10, 4, 3), (7, 7, 2)])
def test_ranks_share_each_batch_in_the_single_process_order(n, batch, world):
    x, y = torch.arange(n).float().unsqueeze(1), torch.arange(n)
    single = InMemoryBatches(x, y, batch_size=batch, shuffle=True, seed=3)
    ranks = [InMemoryBatches(x, y, batch_size=batch, shuffle=True, seed=3, rank=r, world_size=world)
             for r in range(world)]
    for source in (single, *ranks):
        source.set_epoch(2)
    whole = [b[1].tolist() for b in single]
    shares = [[b[1].tolist() for b in r] for r in ranks]
    kept = [w for w in whole if len(w) >= world]  # training leaves out a last batch smaller than the world
    assert len(ranks[0]) == len(kept)
    for index, expected in enumerate(kept):
        assert sum((s[index] for s in shares), []) == expected
        assert max(len(s[index]) for s in shares) - min(len(s[index]) for s in shares) <= 1
    assert [len(r) for r in ranks] == [len(kept)] * world


def test_evaluation_shares_cover_a_split_once_even_when_a_rank_gets_nothing_of_the_last_batch():
    x, y = torch.arange(9).float().unsqueeze(1), torch.arange(9)
    ranks = [InMemoryBatches(x, y, batch_size=4, shuffle=False, rank=r, world_size=3) for r in range(3)]
    seen = []
    for source in ranks:
        source.set_epoch(0)
        seen += [v for b in source for v in b[1].tolist()]
    assert sorted(seen) == list(range(9))  # the last batch (1 sample) goes to one rank; no padding, no repeats


def test_too_few_samples_for_the_processes_is_one_clear_error():
    x, y = torch.zeros(3, 1), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="4 processes need a batch size and a data set of at least 4"):
        InMemoryBatches(x, y, batch_size=2, shuffle=True, rank=0, world_size=4)


# ------------------------------------------------------------------ real processes
@pytest.mark.slow
def test_two_processes_follow_the_single_process_curve_with_the_same_global_batch(references):
    single, double = references["single"], references["double"]
    for split, metric in (("train", "loss"), ("val", "loss"), ("val", "accuracy")):
        a, b = rows(single, split, metric), rows(double, split, metric)
        assert len(a) == len(b) > 0
        assert b == pytest.approx(a, rel=CURVE_RTOL), (split, metric)
    s1, s2 = summary(single), summary(double)
    assert s2["steps"] == s1["steps"] == 12 * 20  # ceil(1294 / 65) = 20 global batches per epoch
    assert abs(s2["test_accuracy"] - s1["test_accuracy"]) <= 0.005
    assert s2["test_loss"] == pytest.approx(s1["test_loss"], rel=CURVE_RTOL)
    # rank 0 alone wrote the folder: one run's files, and a checkpoint that knows its world size
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())
    saved = torch.load(double / "checkpoints" / "last.pt", weights_only=True)
    assert saved["run_state"]["world_size"] == 2 and len(saved["ranks"]) == 2


def sigkill_rank_1_at_the_first_checkpoint(proc: subprocess.Popen, run_dir: Path) -> dict[int, int]:
    """The launcher's ranks by rank, once the job has saved a checkpoint; rank 1 then gets SIGKILL."""
    manifest = run_dir / "checkpoints" / "manifest.json"
    while not manifest.exists() and proc.poll() is None:
        time.sleep(0.02)
    ranks = {rank_of(int(pid)): int(pid) for pid in
             subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()}
    assert sorted(ranks) == [0, 1], "both ranks run"
    os.kill(ranks[1], signal.SIGKILL)
    return ranks


@pytest.mark.slow
def test_a_sigkilled_rank_restarts_the_job_from_its_checkpoint_and_the_run_ends_exactly(work, references):
    # not --quiet: rank 0's progress bar is a callback, and rank 1 (printing nowhere) has one too
    proc = trainwise(work, "--run-dir", "restarted", "train.checkpoint.every_n_steps=10", "--max-restarts", "1",
                     nproc=2, quiet=False)
    sigkill_rank_1_at_the_first_checkpoint(proc, work / "restarted")
    code, output = finish(proc)
    assert code == 0, output
    assert output.count("restart 1 of the job: continuing from the last checkpoint") == 1
    assert "resumed from restarted/checkpoints/step-000000" in output
    resumed, reference = work / "restarted", references["double"]
    assert summary(resumed)["status"] == "completed"
    assert json.loads((resumed / "run.json").read_text())["starts"] == 2
    for split, metric in (("train", "loss"), ("val", "loss"), ("test", "accuracy")):
        assert rows(resumed, split, metric) == rows(reference, split, metric)  # bit for bit


@pytest.mark.slow
def test_a_sigkilled_rank_without_restarts_ends_the_job_with_one_line_and_the_command_that_continues(work):
    proc = trainwise(work, "--run-dir", "killed", "train.checkpoint.every_n_steps=10", nproc=2)
    ranks = sigkill_rank_1_at_the_first_checkpoint(proc, work / "killed")
    code, output = finish(proc, timeout=60)
    assert code == 1, output
    assert f"error: rank 1 (pid {ranks[1]}) was killed by SIGKILL; stopped the other 1 process. " \
           "The last checkpoint is killed/checkpoints/step-000000" in output
    assert "continue with: trainwise train config.yaml train.checkpoint.every_n_steps=10 --nproc 2 " \
           "--run-dir killed --resume auto" in output
    assert "Traceback" not in output
    for pid in ranks.values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert summary(work / "killed")["status"] == "failed"


@pytest.mark.slow
def test_two_jobs_at_once_do_not_collide_and_another_world_size_is_refused(work, references):
    jobs = [trainwise(work, "--run-dir", f"pair-{i}", "train.epochs=1", nproc=2) for i in range(2)]
    # at the same time, a job of two "machines" of one process each, meeting at a rendezvous endpoint
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    machines = [trainwise(work, "--run-dir", "nodes", "train.epochs=1", "--nproc", "1", "--nnodes", "2",
                          "--rdzv-endpoint", f"127.0.0.1:{port}") for _ in range(2)]
    for job in jobs + machines:
        code, output = finish(job)
        assert code == 0, output
        assert "EADDRINUSE" not in output
    for name in ("pair-0", "pair-1", "nodes"):
        assert summary(work / name)["status"] == "completed"
    for split, metric in (("train", "loss"), ("val", "loss"), ("test", "accuracy")):
        assert rows(work / "nodes", split, metric) == rows(work / "pair-0", split, metric)  # the same job

    copy = work / "mismatch"
    shutil.copytree(references["double"], copy)
    before = (copy / "summary.json").read_bytes()
    code, output = finish(trainwise(work, "--run-dir", "mismatch", "--resume", "auto"))
    assert code == 2
    assert output.strip().splitlines()[-1] == (
        "error: the checkpoint was written by a run of 2 processes (--nproc 2), this one has 1 process; "
        "resume with --nproc 2, or start a new run with another --run-dir")
    assert (copy / "summary.json").read_bytes() == before


@pytest.mark.parametrize("nproc", [0, (os.cpu_count() or 1) + 1])
def test_impossible_process_counts_are_refused_before_anything_starts(work, nproc):
    proc = subprocess.Popen([sys.executable, "-m", "trainwise", "train", "config.yaml", "--run-dir", "refused",
                             "--nproc", str(nproc)], cwd=work, env=env(work), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    code, output = finish(proc)
    assert code == 2
    cores = os.cpu_count()
    expected = ("error: --nproc must be at least 1 (processes on this machine), got 0" if nproc == 0 else
                f"error: --nproc {nproc} asks for more processes than this machine has CPU cores ({cores}); "
                f"use --nproc {cores} or fewer")
    assert output.strip() == expected
    assert not (work / "refused").exists()


@pytest.mark.slow
def test_the_throughput_benchmark_runs_in_a_tiny_configuration(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import ddp_throughput

    assert ddp_throughput.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "ddp_throughput.json").read_text())
    assert result["complete"] is True and result["meets_target"] is None
    (case,) = result["cases"]
    assert set(case["samples_per_second"]) == {"ddp_2x1", "single_1x2", "single_1x1"}
    assert all(speed > 0 for speeds in case["samples_per_second"].values() for speed in speeds)
