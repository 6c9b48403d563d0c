"""A ``Dataset`` under DDP, ``Trainer.fit`` in a user's script under torchrun, one writer per run
folder: the batch plan in one process, then real processes (torchrun, gloo on CPU, 2 ranks).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, SequentialSampler, TensorDataset

from trainwise.data.loader import DatasetBatches, make_batches
from trainwise.data.sharding import epoch_permutation, loader_settings
from trainwise.errors import DataError
from trainwise.runfolder import lock

TIMEOUT = 240
CURVE_RTOL = 1e-5  # two ranks add each batch's loss in another order: about 1e-7 apart, 1e-5 promised

USER_SCRIPT = '''
import sys
import torch
from torch import nn
from torch.utils.data import Dataset
import trainwise


class Points(Dataset):
    """A map-style Dataset of (features, label) pairs."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] * self.x[:, 2] > 0).long() + (self.x[:, 3] > 1).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
trainer = trainwise.Trainer(model, batch_size=25, eval_batch_size=20, epochs=3, lr=1e-2, run_dir=sys.argv[1], seed=0,
                            report=False, early_stopping=False, loggers=sys.argv[2:])
result = trainer.fit(Points(203, 1), Points(61, 2), test=Points(47, 3))
predictions = trainer.predict(Points(47, 3))  # batches of 20, 20 and 7, each shared by the ranks
one = trainer.predict(Points(47, 3).x[:1])  # fewer samples than processes: one rank predicts it
torch.save([predictions, one], f"{sys.argv[1]}-predictions-{trainer.world.rank}.pt")
with open(f"{sys.argv[1]}-status-{trainer.world.rank}.txt", "w") as status:  # two ranks' prints can interleave
    status.write(f"rank {trainer.world.rank} of {trainer.world.world_size} {result.status} {result.summary['steps']}")
'''


def env(tmp: Path, **extra: str) -> dict[str, str]:
    variables = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1",
                     TMPDIR=str(tmp))  # torchrun leaves a torchelastic_* folder in TMPDIR
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        variables.pop(key, None)
    variables.update(extra)
    return variables


def run(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env(cwd, **extra), capture_output=True, text=True, timeout=TIMEOUT)


def rows(run_dir: Path) -> list[tuple[str, str, str, float]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(r["step"], r["split"], r["metric"], float(r["value"])) for r in csv.DictReader(handle)
                if r["split"] in ("train", "val", "test")]


class Numbers(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor([float(i)]), torch.tensor(i)


# ------------------------------------------------------------------ the batch plan, in one process
@pytest.mark.parametrize("n,batch,world", [(203, 25, 2), (10, 4, 3), (7, 7, 2), (9, 2, 2)])
def test_ranks_of_a_dataset_share_each_batch_of_the_single_process_order(n, batch, world):
    def labels(batches):
        batches.set_epoch(3)
        return [b[1].tolist() for b in batches]

    whole = labels(DatasetBatches(Numbers(n), batch_size=batch, shuffle=True, seed=7))
    assert [v for b in whole for v in b] == epoch_permutation(n, 7, 3).tolist()  # the in-memory order
    shares = [labels(DatasetBatches(Numbers(n), batch_size=batch, shuffle=True, seed=7, rank=r, world_size=world))
              for r in range(world)]
    kept = [b for b in whole if len(b) >= world]  # training leaves out a last batch smaller than the world
    assert all(len(s) == len(kept) for s in shares)
    for index, expected in enumerate(kept):
        assert sum((s[index] for s in shares), []) == expected


def test_evaluation_shards_count_every_sample_once_and_resume_starts_mid_epoch():
    seen = []
    for rank in range(3):
        batches = make_batches(Numbers(10), batch_size=4, shuffle=False, seed=0, device=torch.device("cpu"),
                               rank=rank, world_size=3)
        batches.set_epoch(0)
        seen += [v for b in batches for v in b[1].tolist()]
    assert sorted(seen) == list(range(10))  # no DistributedSampler padding: 10 samples, not 12

    batches = DatasetBatches(Numbers(20), batch_size=4, shuffle=True, seed=1, rank=1, world_size=2)
    batches.set_epoch(2)
    all_batches = [b[1].tolist() for b in batches]
    batches.load_state_dict({"epoch": 2, "position": 3})
    assert [b[1].tolist() for b in batches] == all_batches[3:]


def test_a_plain_dataloader_is_rebuilt_per_rank_and_anything_else_is_refused_in_one_line():
    data = TensorDataset(torch.arange(12.0).unsqueeze(1), torch.arange(12))
    shuffled = loader_settings(DataLoader(data, batch_size=4, shuffle=True), 2, training=True)
    assert (shuffled["batch_size"], shuffled["shuffle"]) == (4, True)  # the global batch, as in one process
    per_rank = DataLoader(data, batch_size=3, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    assert loader_settings(per_rank, 2, training=True)["batch_size"] == 6  # a DDP loader's batch is per process
    assert loader_settings(DataLoader(data, batch_size=4), 2, training=True)["shuffle"] is False
    with pytest.raises(DataError, match="^2 processes \\(DDP\\) cannot share out a DataLoader whose sampler is a "
                                        "WeightedRandomSampler: its order is its own; pass the Dataset itself"):
        weighted = torch.utils.data.WeightedRandomSampler(torch.ones(12), 12)
        loader_settings(DataLoader(data, batch_size=4, sampler=weighted), 2, training=True)
    with pytest.raises(DataError, match="built for 4 processes but the job has 2"):
        loader_settings(DataLoader(data, batch_size=3, sampler=DistributedSampler(data, num_replicas=4, rank=0)), 2,
                        training=True)
    custom = DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 4, False))
    assert loader_settings(custom, 2, training=False)["batch_size"] == 4


# ------------------------------------------------------------------ one writer per run folder
def test_a_second_writer_is_refused_with_who_holds_the_folder_and_a_killed_holder_blocks_nothing(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from trainwise.runfolder import lock
        lock.acquire({str(run_dir)!r})
        print("held", flush=True)
        time.sleep(120)
        """)], env=env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.RunFolderBusyError) as refused:  # in this process: another process holds it
            lock.acquire(run_dir)
        assert str(refused.value).startswith(f"run folder {run_dir} is being written by another process "
                                             f"(pid {holder.pid} on ")
        assert str(refused.value).endswith("; wait for it to end or stop it, or choose another --run-dir "
                                           "(Python: run_dir=)")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock.acquire(run_dir)  # the kernel released the killed holder's lock
    lock.acquire(run_dir)  # re-entrant in one process
    lock.release(run_dir)
    child = os.fork()  # as a DataLoader worker is: it must not keep the folder locked after the run
    if child == 0:
        time.sleep(5)
        os._exit(0)
    try:
        lock.release(run_dir)
        lock.acquire(run_dir)  # free again, though the forked child lives on
        lock.release(run_dir)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_the_cli_refuses_a_second_writer_in_one_line_and_writes_nothing(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: t\ndata: {dataset: digits}\nmodel: {name: mlp, hidden: [8]}\ntrain: {epochs: 1}\n")
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    lock.acquire(run_dir)  # this test process holds it, as a running trainwise train would
    try:
        proc = run([sys.executable, "-m", "trainwise", "train", str(config), "--run-dir", str(run_dir)], tmp_path)
    finally:
        lock.release(run_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: run folder {run_dir} is being written by another process (pid "
                                          f"{os.getpid()} on ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == []  # the refused run wrote nothing; the holder left no .lock


def test_world_size_without_master_addr_is_one_clear_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: t\ndata: {dataset: digits}\nmodel: {name: mlp, hidden: [8]}\ntrain: {epochs: 1}\n")
    proc = run([sys.executable, "-m", "trainwise", "train", str(config), "--run-dir", "r"], tmp_path,
               WORLD_SIZE="2", RANK="0", MASTER_PORT="29999")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: WORLD_SIZE is 2 but MASTER_ADDR is not set; start the job with trainwise train CONFIG --nproc N, or "
        "torchrun --nproc-per-node N script.py (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and "
        "MASTER_PORT)")


# ------------------------------------------------------------------ a user's script under torchrun
@pytest.mark.slow
def test_fit_under_torchrun_shards_a_dataset_and_follows_the_single_process_curve(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    single = subprocess.Popen([sys.executable, str(script), "single", "tensorboard"], cwd=tmp_path, env=env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    double = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
                  "double", "tensorboard"], tmp_path)
    out, err = single.communicate(timeout=TIMEOUT)
    assert single.returncode == 0, err
    assert double.returncode == 0, double.stderr
    for rank in (0, 1):
        assert (tmp_path / f"double-status-{rank}.txt").read_text() == f"rank {rank} of 2 completed 27"
    assert double.stdout.count("epoch 3/3") == 1  # the progress lines come from rank 0 alone, and the logger's
    assert len(list((tmp_path / "double" / "tensorboard").glob("events.*"))) == 1  # files too
    a, b = rows(tmp_path / "single"), rows(tmp_path / "double")
    assert [r[:3] for r in a] == [r[:3] for r in b] and len(a) > 10
    assert [r[3] for r in b] == pytest.approx([r[3] for r in a], rel=CURVE_RTOL)
    record = json.loads((tmp_path / "double" / "run.json").read_text())
    assert record["starts"] == 1 and record["status"] == "completed"  # one writer, one start
    assert (record["environment"]["processes"], record["environment"]["backend"]) == (2, "gloo")
    reference, reference_one = torch.load(tmp_path / "single-predictions-0.pt")
    for rank in (0, 1):  # every rank has every prediction, in input order
        predictions, one = torch.load(tmp_path / f"double-predictions-{rank}.pt")
        assert predictions.shape == (47, 3) and one.shape == (1, 3)
        torch.testing.assert_close(predictions, reference, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one, reference_one, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one[0], predictions[0], rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "double").iterdir()) == \
        sorted(p.name for p in (tmp_path / "single").iterdir())


@pytest.mark.slow
def test_a_second_torchrun_job_on_a_folder_in_use_fails_on_every_rank_with_one_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    run_dir = tmp_path / "shared"
    run_dir.mkdir()
    lock.acquire(run_dir)
    try:
        proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                    str(script), str(run_dir)], tmp_path)
    finally:
        lock.release(run_dir)
    assert proc.returncode != 0
    assert proc.stderr.count(f"RunFolderBusyError: run folder {run_dir} is being written by another process") == 2
    assert sorted(p.name for p in run_dir.iterdir()) == []  # the holder left no .lock; nobody waited for a collective's timeout


@pytest.mark.parametrize("flags, message", [
    (["--max-restarts", "1"], "--max-restarts goes with --nproc N (processes on this machine); add --nproc, "
                              "e.g. --nproc 2"),
    (["--nproc", "2", "--max-restarts", "-1"], "--max-restarts must be >= 0 (restarts of the whole job after a "
                                               "failure), got -1"),
    (["--nproc", "1", "--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT, the same on every machine "
                                        "(a machine of the job that the others can reach)"),
    (["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", "h:1"], "--nnodes 2 needs --run-dir, the same folder on "
                                                                  "every machine (the default folder name holds the "
                                                                  "time, which differs between machines)"),
    (["--nproc", "2", "--nnodes", "3:x"], "--nnodes must be a number of machines N >= 1, or MIN:MAX, got '3:x'"),
])
def test_launcher_flags_that_cannot_work_are_refused_before_anything_starts(tmp_path, monkeypatch, capsys, flags,
                                                                            message):
    from trainwise.cli import main

    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text("name: t\ndata: {dataset: digits}\nmodel: {name: mlp, hidden: [8]}\n")
    assert main(["train", "c.yaml", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not Path("runs").exists()


@pytest.mark.parametrize("variables, gpus, expected", [
    ({"LOCAL_RANK": "1"}, 4, "cuda:1"),
    ({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "5"}, 1, "cuda:0"),  # the launcher gave each process one GPU
    ({"LOCAL_RANK": "1"}, 1, "LOCAL_RANK is 1 but this machine has 1 GPUs; start at most one process per GPU"),
    ({}, 4, "WORLD_SIZE is 2 on CUDA but LOCAL_RANK is not set, so this process cannot tell which GPU is its own"),
])
def test_each_process_of_a_job_trains_on_its_own_gpu(monkeypatch, variables, gpus, expected):
    from trainwise.distributed.world import rank_device
    from trainwise.errors import ConfigError

    for key in ("LOCAL_RANK", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert rank_device(torch.device("cpu")) == torch.device("cpu")
    assert rank_device(torch.device("cuda", 2)) == torch.device("cuda", 2)  # an explicit GPU is kept
    if expected.startswith("cuda"):
        assert rank_device(torch.device("cuda")) == torch.device(expected)
    else:
        with pytest.raises(ConfigError, match=f"^{expected}"):
            rank_device(torch.device("cuda"))
