"""A stream (``IterableDataset``) trained by a user's script under torchrun, 2 ranks on gloo: each
rank reads a disjoint share of every global batch (with DataLoader workers too), the job follows
the single-process curve step for step, shares that end apart end the pass together on every rank,
a job cut mid-epoch resumes to the uninterrupted job's weights, and a split too small to share is
refused alike on every rank. Each rank writes what it saw to its own file (two ranks' prints
interleave)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_distributed_data import env  # a torchrun job's environment, without a parent job's variables

TIMEOUT = 240

STREAM_SCRIPT = '''
import json
import sys
import torch
from torch import nn
from torch.utils.data import IterableDataset
import trainwise
from trainwise.callbacks import Callback, CheckpointSaver


class Points(IterableDataset):
    """A deterministic stream of {"x", "y", "index"} elements."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] * self.x[:, 2] > 0).long() + (self.x[:, 3] > 1).long()

    def __iter__(self):
        for i in range(len(self.x)):
            yield {"x": self.x[i], "y": self.y[i], "index": i}


class Seen(Callback):
    """The stream indices of each training batch this rank trained on; raises at step ``crash_at``."""

    def __init__(self, crash_at=-1):
        self.batches, self.crash_at = [], crash_at

    def on_batch_start(self, trainer, batch):
        self.batches.append(batch["index"].tolist())

    def on_step_end(self, trainer):
        if trainer.state.step == self.crash_at:
            raise RuntimeError("cut")


def fit(run_dir, n, workers, epochs=2, crash_at=-1, resume=None, val=61):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    seen = Seen(crash_at)
    trainer = trainwise.Trainer(model, batch_size=25, eval_batch_size=20, epochs=epochs, lr=1e-2, schedule="constant",
                                run_dir=run_dir, seed=0, report=False, progress=False, early_stopping=False,
                                num_workers=workers, callbacks=[seen], checkpoint=CheckpointSaver(every_n_steps=5))
    try:
        result = trainer.fit(Points(n, 1), Points(val, 2), resume=resume)
    except trainwise.errors.DataError as exc:
        with open(f"{run_dir}-error-{trainer.world.rank}.txt", "w") as out:
            out.write(str(exc))
        return None
    except RuntimeError as exc:
        if str(exc) != "cut":
            raise
        return None
    rank = trainer.world.rank
    torch.save(model.state_dict(), f"{run_dir}-weights-{rank}.pt")
    with open(f"{run_dir}-rank-{rank}.json", "w") as out:
        json.dump({"world": trainer.world.world_size, "status": result.status, "steps": result.summary["steps"],
                   "batches": seen.batches, "events": [e["kind"] for e in result.summary["events"]]}, out)


name, workers = sys.argv[1], int(sys.argv[2])
fit(name, 203, workers)
if name == "double":
    fit("uneven", 201, 0, epochs=1)  # 201 = 8 x 25 + 1: rank 1's share ends one batch before rank 0's
    fit("cut", 203, 0, crash_at=13)  # stopped at step 13 of 18; the last checkpoint is at step 10
    fit("cut", 203, 0, resume="auto")
    fit("tiny", 25, 0, epochs=1, val=1)  # one val element for two ranks: rank 1's share is empty
'''


def rows(run_dir: Path) -> list[tuple[str, str, str, float]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(r["step"], r["split"], r["metric"], float(r["value"])) for r in csv.DictReader(handle)
                if r["split"] in ("train", "val")]


@pytest.mark.slow
def test_a_stream_under_torchrun_is_shared_by_rank_and_worker_and_follows_one_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(STREAM_SCRIPT)
    single = subprocess.Popen([sys.executable, str(script), "single", "0"], cwd=tmp_path, env=env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(script), "double", "2"], cwd=tmp_path, env=env(tmp_path), capture_output=True,
                            text=True, timeout=TIMEOUT)
    _, err = single.communicate(timeout=TIMEOUT)
    assert single.returncode == 0, err
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "single-rank-0.json").read_text())
    ranks = [json.loads((tmp_path / f"double-rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert one["steps"] == 18 and one["world"] == 1  # 203 = 8 x 25 + 3: 9 batches a pass, 2 passes
    for rank, seen in enumerate(ranks):
        assert (seen["world"], seen["status"], seen["steps"]) == (2, "completed", 18)
        assert len(seen["batches"]) == 18
    for step, (whole, a, b) in enumerate(zip(one["batches"], ranks[0]["batches"], ranks[1]["batches"])):
        assert not set(a) & set(b), step  # disjoint shares, read through 2 DataLoader workers per rank
        assert sorted(a + b) == whole, step  # together: the single process's batch of this step
        assert a == whole[0::2] and b == whole[1::2]  # offsets rank, rank + 2, ... of the global batch
    assert sorted(i for batch in one["batches"][:9] for i in batch) == list(range(203))  # one pass: all of it
    a, b = rows(tmp_path / "single"), rows(tmp_path / "double")
    assert [r[:3] for r in a] == [r[:3] for r in b] and len(a) > 10
    assert [r[3] for r in b] == pytest.approx([r[3] for r in a], rel=1e-5)
    record = json.loads((tmp_path / "double" / "run.json").read_text())
    assert record["starts"] == 1 and record["environment"]["processes"] == 2
    source = json.loads((tmp_path / "double" / "data.json").read_text())["source"]
    assert source["stream"] is True and source["sharding"] == "rank x worker"

    uneven = [json.loads((tmp_path / f"uneven-rank-{rank}.json").read_text()) for rank in (0, 1)]
    for seen in uneven:  # element 200 falls to rank 0 alone: both ranks end the pass after 8 steps
        assert (seen["status"], seen["steps"]) == ("completed", 8) and "stream_end" in seen["events"]
    assert sorted(i for a, b in zip(uneven[0]["batches"], uneven[1]["batches"]) for i in a + b) == list(range(200))

    resumed = [json.loads((tmp_path / f"cut-rank-{rank}.json").read_text()) for rank in (0, 1)]
    for rank, seen in enumerate(resumed):  # the stream was replayed to batch 1 of pass 2 (step 10)
        assert (seen["status"], seen["steps"]) == ("completed", 18) and "resumed" in seen["events"]
        assert seen["batches"] == ranks[rank]["batches"][10:]
        # the whole job read through workers, the resumed one without: the same batches, the same weights
        whole = torch.load(tmp_path / f"double-weights-{rank}.pt")
        for key, value in torch.load(tmp_path / f"cut-weights-{rank}.pt").items():
            torch.testing.assert_close(value, whole[key], rtol=0, atol=0)

    for rank in (0, 1):  # both ranks refuse alike, none waits for the other in a collective
        assert (tmp_path / f"tiny-error-{rank}.txt").read_text() == (
            "2 processes need at least one sample each to evaluate, and a share of this split is empty; evaluate in "
            "one process, or on more samples")
