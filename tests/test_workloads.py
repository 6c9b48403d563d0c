"""Workloads beyond "in-memory inputs → one class", written as their users would write them: a
Hugging Face-style dict dataset with a model returning {"loss", "logits"}, an IterableDataset,
prediction on inputs alone, a BatchNorm model with balanced class weights, validation every N steps."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info

from trainwise import Trainer
from trainwise.callbacks import Callback, CheckpointSaver, EarlyStopping
from trainwise.data.streams import StreamBatches
from trainwise.errors import ConfigError, DataError, ResumeMismatchError


def blobs(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g) * 0.5 + F.one_hot(y, 4).float() * 3
    return x, y


def quiet(tmp_path, name="run", **kwargs):
    return dict(run_dir=tmp_path / name, progress=False, report=False, **kwargs)


class HFStyleDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones(4), "labels": self.y[i], "idx": i}


class HFStyleClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.body(input_ids * attention_mask)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def test_an_hf_style_dict_dataset_trains_on_the_models_own_loss(tmp_path):
    torch.manual_seed(0)
    x, y = blobs()
    train, val = HFStyleDataset(x[:200], y[:200]), HFStyleDataset(x[200:], y[200:])
    trainer = Trainer(HFStyleClassifier(), lr=1e-2, epochs=4, batch_size=32, **quiet(tmp_path))
    result = trainer.fit(train, val)
    assert trainer.loss_rule.source == "model"
    assert result.history[-1]["val_accuracy"] > 0.9  # targets for metrics come from "labels"
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["batch_rule"]["input_keys"] == ["input_ids", "attention_mask"]
    assert data["batch_rule"]["targets_to_model"] is True and data["batch_rule"]["unused_keys"] == ["idx"]
    assert any("['idx']" in w and "neither taken" in w for w in result.warnings)  # reported, never silent
    predictions = trainer.predict(DataLoader(HFStyleDataset(x[:10], y[:10]), batch_size=4))
    assert set(predictions) == {"logits"} and predictions["logits"].shape == (10, 3)


def test_a_named_loss_withholds_the_labels_from_forward(tmp_path):
    x, y = blobs()
    seen = []

    class Spy(HFStyleClassifier):
        def forward(self, input_ids, attention_mask=None, labels=None):
            seen.append(labels is None)
            return super().forward(input_ids, attention_mask, labels)

    Trainer(Spy(), loss="cross_entropy", lr=1e-2, epochs=1, **quiet(tmp_path)).fit(HFStyleDataset(x, y))
    assert all(seen)


def test_a_dict_batch_without_target_and_a_model_without_loss_fails_before_training(tmp_path):
    x, _ = blobs()

    class NoLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 3)

        def forward(self, input_ids):
            return self.body(input_ids)

    with pytest.raises(DataError, match=r"carry no target \(keys \['input_ids'\]\) and the model returned no loss"):
        Trainer(NoLoss(), lr=1e-2, **quiet(tmp_path)).fit({"input_ids": x})
    assert not (tmp_path / "run" / "metrics.csv").exists()


class Stream(IterableDataset):
    """Yields (x, y) pairs; with ``split_workers`` it splits itself between workers (the torch recipe)."""

    def __init__(self, x, y, split_workers=False):
        self.x, self.y, self.split_workers = x, y, split_workers

    def __iter__(self):
        info = get_worker_info()
        start, step = (info.id, info.num_workers) if info is not None and self.split_workers else (0, 1)
        for i in range(start, len(self.x), step):
            yield self.x[i], self.y[i]


def test_an_iterable_dataset_trains_with_max_steps_and_shows_no_invented_length(tmp_path):
    torch.manual_seed(0)
    x, y = blobs()
    trainer = Trainer(nn.Linear(4, 3), lr=1e-2, max_steps=20, epochs=100, batch_size=32, **quiet(tmp_path))
    result = trainer.fit(Stream(x, y), Stream(x[:60], y[:60]))
    assert result.summary["steps"] == 20 and result.status == "completed"
    assert result.summary["epochs_run"] == 3  # 8 batches a pass: an epoch is one pass of the stream
    assert trainer.state.batches_per_epoch is None
    source = json.loads((tmp_path / "run" / "data.json").read_text())["source"]
    assert source["stream"] is True and source["sharding"] == "rank x worker"
    assert result.history[-1]["val_accuracy"] > 0.6  # three classes: chance is 1/3


def test_a_stream_without_max_steps_under_a_whole_run_schedule_fails_before_training(tmp_path):
    x, y = blobs()
    with pytest.raises(ConfigError, match="stream of unknown length and schedule 'onecycle'.*max_steps=N"):
        Trainer(nn.Linear(4, 3), lr=1e-2, **quiet(tmp_path)).fit(Stream(x, y))
    result = Trainer(nn.Linear(4, 3), lr=1e-2, schedule="constant", epochs=2, batch_size=64,
                     **quiet(tmp_path, "b")).fit(DataLoader(Stream(x, y), batch_size=64))
    assert result.summary["steps"] == 8  # two passes of four batches (240 = 3 x 64 + 48)


@pytest.mark.parametrize("split_workers", [False, True])
def test_two_workers_and_two_ranks_read_every_element_exactly_once(split_workers):
    x = torch.arange(50).float()[:, None]
    seen = []
    for rank in (0, 1):
        batches = StreamBatches(Stream(x, x[:, 0].long(), split_workers), batch_size=3, num_workers=2,
                                rank=rank, world_size=2)
        batches.set_epoch(0)
        seen += [int(v) for xb, _ in batches for v in xb[:, 0]]
    assert sorted(seen) == list(range(50))
    assert batches.by_worker is not split_workers  # a self-splitting dataset is split by rank only


def test_ranks_share_each_global_batch_and_workers_keep_the_single_reader_order():
    x = torch.arange(23).float()[:, None]

    def batches_of(rank=0, world_size=1, num_workers=0):
        batches = StreamBatches(Stream(x, x[:, 0].long()), batch_size=5, num_workers=num_workers, rank=rank,
                                world_size=world_size)
        batches.set_epoch(0)
        return [[int(v) for v in xb[:, 0]] for xb, _ in batches]

    single = batches_of()
    assert single == [list(range(i, min(i + 5, 23))) for i in range(0, 23, 5)]
    assert batches_of(num_workers=2) == single  # worker k reads batches k, k + 2, ...: the same order
    ranks = [batches_of(rank, 2, num_workers=2) for rank in (0, 1)]
    assert ranks[0][0] == [0, 2, 4] and ranks[1][0] == [1, 3]  # batch_size is the global batch
    assert [sorted(a + b) for a, b in zip(*ranks)] == single
    with pytest.raises(DataError, match=r"a batch of 2 stream elements cannot be shared by 3 processes"):
        StreamBatches(Stream(x, x[:, 0].long()), batch_size=2, rank=0, world_size=3)


def test_predict_on_inputs_alone_keeps_input_order(tmp_path):
    x, y = blobs()
    model = nn.Linear(4, 3)
    trainer = Trainer(model, lr=1e-2, epochs=1, **quiet(tmp_path))
    trainer.fit((x, y))
    with torch.no_grad():
        expected = model(x)
    inputs_only = TensorDataset(x)
    for data in (x, x.numpy(), inputs_only, DataLoader(inputs_only, batch_size=7), DataLoader(x, batch_size=5)):
        torch.testing.assert_close(trainer.predict(data), expected)


def test_batchnorm_with_balanced_class_weights_counts_labels(tmp_path):
    x, y = blobs()
    y = torch.where(torch.arange(len(y)) % 5 == 0, torch.tensor(2), torch.tensor(0))  # 4:1 imbalance, class 1 absent
    y[1] = 1
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    trainer = Trainer(model, lr=1e-2, epochs=1, class_weights="balanced", **quiet(tmp_path))
    trainer.fit((x, y))
    counts = torch.bincount(y, minlength=3).float()
    torch.testing.assert_close(trainer.class_weights, len(y) / (3 * counts))


def test_validation_every_n_steps_drives_best_early_stopping_and_history(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(4, 3), lr=1e-2, epochs=3, batch_size=32, val_every_n_steps=5,
                      callbacks=[EarlyStopping(patience=100)], **quiet(tmp_path))
    result = trainer.fit((x[:200], y[:200]), (x[200:], y[200:]))
    steps = [row["step"] for row in result.history]
    assert steps == [5, 10, 15, 20, 21]  # 7 steps an epoch, 21 in all: the last steps are validated too
    assert result.summary["best_step"] in steps
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["run_state"]["best"]["step"] == result.summary["best_step"]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert sum(",val,loss," in row for row in rows) == 5


def test_patience_counts_validations(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(4, 3), lr=1e-9, epochs=50, batch_size=32, val_every_n_steps=2,
                      callbacks=[EarlyStopping(patience=3, min_delta=1.0)], **quiet(tmp_path))
    result = trainer.fit((x[:200], y[:200]), (x[200:], y[200:]))
    assert result.status == "stopped_early" and [r["step"] for r in result.history] == [2, 4, 6, 8]


def test_val_every_n_steps_zero_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="val_every_n_steps must be a whole number of optimizer steps >= 1.*got 0"):
        Trainer(nn.Linear(4, 3), val_every_n_steps=0, **quiet(tmp_path))


def test_an_unknown_monitor_fails_after_a_two_batch_sanity_pass_before_training(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(4, 3), lr=1e-2, monitor="val_acuracy", mode="max", **quiet(tmp_path))
    with pytest.raises(ConfigError, match="monitors 'val_acuracy'.*did you mean 'val_accuracy'"):
        trainer.fit((x[:200], y[:200]), (x[200:], y[200:]))
    assert trainer.state.step == 0


class FitStart(Callback):
    """What the model and optimizer look like when each fit's training starts."""

    def __init__(self):
        self.lrs, self.weights = [], []

    def on_fit_start(self, trainer):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])
        self.weights.append(trainer.model.weight.detach().clone())


def test_a_second_fit_with_a_user_optimizer_and_a_named_schedule_starts_from_the_reference_lr(tmp_path):
    x, y = blobs()
    model = nn.Linear(4, 3)
    seen = FitStart()
    trainer = Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), schedule="cosine", epochs=2,
                      callbacks=[seen], **quiet(tmp_path))
    trainer.fit((x, y))
    assert trainer.optimizer.param_groups[0]["lr"] < 0.05  # decayed by the first fit's cosine
    trainer.fit((x, y))
    assert seen.lrs == [0.1, 0.1]


def test_resume_auto_that_finds_nothing_still_applies_init(tmp_path):
    x, y = blobs()
    seen = FitStart()
    Trainer(nn.Linear(4, 3), lr=1e-2, init="orthogonal", callbacks=[seen], epochs=1,
            **quiet(tmp_path)).fit((x, y), resume="auto")
    gram = seen.weights[0] @ seen.weights[0].T  # orthogonal rows, times the init's gain squared
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(3), atol=1e-5, rtol=0)


def test_a_python_resume_checks_the_config_as_the_cli_does(tmp_path):
    x, y = blobs()
    Trainer(nn.Linear(4, 3), lr=1e-2, epochs=2, **quiet(tmp_path)).fit((x, y))
    with pytest.raises(ResumeMismatchError, match="train.epochs: 2 -> 3"):
        Trainer(nn.Linear(4, 3), lr=1e-2, epochs=3, **quiet(tmp_path)).fit((x, y), resume="auto")
    result = Trainer(nn.Linear(4, 3), lr=1e-2, epochs=3, **quiet(tmp_path)).fit(
        (x, y), resume="auto", allow_config_changes=True)
    assert result.summary["epochs_run"] == 3


def test_two_trainers_built_in_the_same_second_never_share_a_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folders = {Trainer(nn.Linear(4, 3), progress=False).run_dir for _ in range(3)}
    assert len(folders) == 3 and all(folder.is_dir() for folder in folders)


class CrashAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.step == self.step:
            raise RuntimeError("killed")


def test_a_stream_resumes_at_its_position_by_replaying_it(tmp_path):
    x, y = blobs()

    def run(name, crash_at=-1, resume=None):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        trainer = Trainer(model, lr=1e-2, max_steps=12, epochs=100, batch_size=32, callbacks=[CrashAt(crash_at)],
                          checkpoint=CheckpointSaver(every_n_steps=5), **quiet(tmp_path, name))
        return trainer.fit(Stream(x, y), resume=resume), model

    _, whole = run("whole")
    with pytest.raises(RuntimeError, match="killed"):
        run("cut", crash_at=7)
    result, resumed = run("cut", resume="auto")
    torch.testing.assert_close(resumed.weight, whole.weight, rtol=0, atol=0)
    event = next(e for e in result.summary["events"] if e["kind"] == "resumed")
    assert "at step 5" in event["message"] and "the stream is replayed to batch 5" in event["message"]


def test_validation_every_n_steps_survives_a_resume(tmp_path):
    x, y = blobs()

    def run(crash_at=-1, resume=None):
        torch.manual_seed(0)
        trainer = Trainer(nn.Linear(4, 3), lr=1e-2, epochs=3, batch_size=32, val_every_n_steps=5,
                          callbacks=[CrashAt(crash_at)], checkpoint=CheckpointSaver(every_epoch=False),
                          **quiet(tmp_path, "cut" if crash_at > 0 or resume else "whole"))
        return trainer.fit((x[:200], y[:200]), (x[200:], y[200:]), resume=resume)

    whole = run()
    with pytest.raises(RuntimeError, match="killed"):
        run(crash_at=12)
    resumed = run(resume="auto")
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history] == [5, 10, 15, 20, 21]
    assert resumed.summary["best_step"] == whole.summary["best_step"]
    assert resumed.summary["best_val_loss"] == pytest.approx(whole.summary["best_val_loss"], rel=1e-6)
