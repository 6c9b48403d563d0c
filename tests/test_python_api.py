"""The Python API with ordinary PyTorch habits: what the user hands over is used as given.

Each test is one line of issue 8: no validation data, a user's optimizer and its groups, loss
callables, extra metrics, other batch shapes, lr="auto", class weights, short runs, a user's
callbacks replacing the built-ins, fit twice, checkpoints that do not grow, the trivial-predictor
warning, 1-based epochs.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainwise import checkpoint as ckpt
from trainwise.callbacks import Callback, CheckpointSaver, EarlyStopping, ProgressBar
from trainwise.errors import ConfigError, DataError
from trainwise.engine.nonfinite import SpikeCounter
from trainwise.trainer import Trainer


def blobs(n: int = 200, features: int = 8, classes: int = 3, seed: int = 0):
    centers = torch.randn(classes, features, generator=torch.Generator().manual_seed(100)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, features, generator=g), y


def mlp(features: int = 8, outputs: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, outputs))


def quiet(**kwargs):
    return dict(progress=False, report=False, **kwargs)


class LrRecorder(Callback):
    """Each optimizer step's group lrs and momentum, as the optimizer saw them."""

    def __init__(self):
        self.lrs, self.momenta = [], []

    def on_before_optimizer_step(self, trainer, optimizer):
        self.lrs.append([g["lr"] for g in optimizer.param_groups])
        self.momenta.append([g.get("momentum", g.get("betas", (None,))[0]) for g in optimizer.param_groups])


def metrics_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------ no validation data
def test_fit_without_validation_trains_every_epoch_with_no_early_stopping(tmp_path):
    x, y = blobs()
    trainer = Trainer(mlp(), lr=1e-2, epochs=4, run_dir=tmp_path / "r", **quiet())
    result = trainer.fit((x, y))
    assert result.status == "completed" and len(result.history) == 4
    assert not any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks)
    assert result.summary["monitor"] == "train_loss"
    losses = [row["train_loss"] for row in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert (tmp_path / "r" / "checkpoints" / "best.pt").is_file()


def test_asking_for_early_stopping_on_val_without_val_data_fails_before_training(tmp_path):
    x, y = blobs()
    for kwargs in ({"early_stopping": True, "monitor": "val_loss"}, {"callbacks": [EarlyStopping("val_accuracy")]}):
        trainer = Trainer(mlp(), lr=1e-2, run_dir=tmp_path / str(len(kwargs)), **quiet(**kwargs))
        with pytest.raises(ConfigError, match="monitors 'val_(loss|accuracy)' but fit\\(\\) got no validation data"):
            trainer.fit((x, y))
        assert not (tmp_path / str(len(kwargs)) / "metrics.csv").exists()


# ------------------------------------------------------------------------------------ user optimizers
def test_a_user_sgd_keeps_its_group_lrs_and_momentum(tmp_path):
    x, y = blobs()
    model = mlp()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.05},
                                 {"params": model[2].parameters(), "lr": 0.01}], momentum=0.9)
    recorder = LrRecorder()
    Trainer(model, optimizer=optimizer, epochs=2, callbacks=[recorder], run_dir=tmp_path / "r",
            **quiet()).fit((x, y), (x, y))
    assert recorder.lrs and all(lrs == [0.05, 0.01] for lrs in recorder.lrs)
    assert all(m == [0.9, 0.9] for m in recorder.momenta)


def test_a_schedule_multiplies_each_group_own_lr(tmp_path):
    x, y = blobs()
    model = mlp()
    optimizer = torch.optim.AdamW([{"params": model[0].parameters(), "lr": 1e-2},
                                   {"params": model[2].parameters(), "lr": 1e-3}])
    recorder = LrRecorder()
    Trainer(model, optimizer=optimizer, schedule="cosine", epochs=3, callbacks=[recorder], run_dir=tmp_path / "r",
            **quiet()).fit((x, y), (x, y))
    assert recorder.lrs[0] == pytest.approx([1e-2, 1e-3])
    assert all(a == pytest.approx(10 * b) for a, b in recorder.lrs)
    assert recorder.lrs[-1][0] < 1e-3  # cosine decayed each group from its own base
    assert all(m == [0.9, 0.9] for m in recorder.momenta)  # no momentum cycling unless asked


def test_a_number_lr_with_a_built_optimizer_is_refused_with_the_fix():
    model = mlp()
    with pytest.raises(ConfigError, match="lr=0.1 was given with a built optimizer whose groups already have "
                                          "lrs \\(0.05\\); drop lr"):
        Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), lr=0.1)


# ------------------------------------------------------------------------------------ losses and metrics
@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), lambda out, y: F.cross_entropy(out, y)])
def test_a_loss_callable_or_module_trains_and_reports_accuracy(loss, tmp_path):
    x, y = blobs()
    result = Trainer(mlp(), loss=loss, lr=1e-2, epochs=3, run_dir=tmp_path / "r", **quiet()).fit((x, y), (x, y))
    assert result.status == "completed"
    assert result.history[-1]["val_accuracy"] > 0.9


def test_a_regression_module_loss_gets_regression_metrics(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    result = Trainer(mlp(4, 1), loss=nn.MSELoss(), lr=1e-2, epochs=3, run_dir=tmp_path / "r",
                     **quiet()).fit((x, y), (x, y))
    assert {"val_rmse", "val_r2", "val_mae"} <= set(result.history[-1])


def test_extra_metric_callables_are_computed_over_the_whole_split(tmp_path):
    x, y = blobs()

    def top2(outputs, targets):
        return (outputs.topk(2, dim=1).indices == targets[:, None]).any(dim=1).float().mean()

    trainer = Trainer(mlp(), lr=1e-2, epochs=2, metrics={"top2": top2, "count": lambda o, t: len(t)},
                      run_dir=tmp_path / "r", **quiet())
    result = trainer.fit((x, y), (x[:50], y[:50]))
    assert result.history[-1]["val_count"] == 50
    assert 0 <= result.history[-1]["val_top2"] <= 1
    with torch.no_grad():
        expected = float(top2(trainer.model(x[:50]), y[:50]))
    assert trainer.evaluate((x[:50], y[:50]))["top2"] == pytest.approx(expected)
    with pytest.raises(ConfigError, match="metrics must be callables"):
        Trainer(mlp(), metrics=[lambda o, t: 0.0])


def test_class_weights_as_a_list_weight_the_loss(tmp_path):
    x, y = blobs(classes=2)
    trainer = Trainer(mlp(outputs=2), lr=1e-2, epochs=1, class_weights=[1.0, 3.0], run_dir=tmp_path / "r", **quiet())
    trainer.fit((x, y))
    with torch.no_grad():
        outputs = trainer.model(x)
    expected = F.cross_entropy(outputs, y, weight=torch.tensor([1.0, 3.0]))
    assert trainer.evaluate((x, y))["loss"] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ConfigError, match="class_weights must be a list of numbers"):
        Trainer(mlp(), class_weights=["a", object()])


# ------------------------------------------------------------------------------------ batch shapes
def test_sample_weights_in_a_third_tensor_weight_each_sample(tmp_path):
    x, y = blobs()
    w = torch.rand(len(x), generator=torch.Generator().manual_seed(3))
    trainer = Trainer(mlp(), lr=1e-2, epochs=1, run_dir=tmp_path / "r", **quiet())
    trainer.fit((x, y, w))
    with torch.no_grad():
        per_sample = F.cross_entropy(trainer.model(x), y, reduction="none")
    expected = (per_sample * w).sum() / w.sum()
    assert trainer.evaluate((x, y, w))["loss"] == pytest.approx(float(expected), rel=1e-5)


class DictDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "label": self.y[i], "id": i}


def test_a_dataloader_of_dicts_trains_and_validates(tmp_path):
    x, y = blobs()
    loader = DataLoader(DictDataset(x, y), batch_size=32, shuffle=True)
    result = Trainer(mlp(), lr=1e-2, epochs=3, run_dir=tmp_path / "r", **quiet()).fit(
        loader, DataLoader(DictDataset(x, y), batch_size=64))
    assert result.history[-1]["val_accuracy"] > 0.9


def test_a_dict_batch_without_known_keys_names_the_keys_and_the_override(tmp_path):
    x, y = blobs()
    with pytest.raises(DataError, match="keys \\['a', 'b'\\] gives the model nothing to take: .* or override "
                                        "Trainer.split_batch"):
        Trainer(mlp(), lr=1e-2, run_dir=tmp_path / "r", **quiet()).fit({"a": x, "b": y})


def test_compute_loss_override_handles_any_batch(tmp_path):
    class PairTrainer(Trainer):
        def compute_loss(self, model, batch):
            return F.cross_entropy(model(batch["a"] + batch["b"]), batch["target"])

    x, y = blobs()
    half = x / 2
    trainer = PairTrainer(mlp(), lr=1e-2, epochs=3, run_dir=tmp_path / "r", **quiet())
    result = trainer.fit({"a": half, "b": half, "target": y}, {"a": half, "b": half, "target": y})
    assert result.status == "completed"
    assert set(result.history[-1]) >= {"train_loss", "val_loss"}
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_split_batch_override_keeps_the_metrics(tmp_path):
    class TupleFirstTrainer(Trainer):
        def split_batch(self, batch):
            targets, inputs = batch
            return inputs, targets, None

    x, y = blobs()
    result = TupleFirstTrainer(mlp(), lr=1e-2, epochs=2, run_dir=tmp_path / "r", **quiet()).fit(
        DataLoader(list(zip(y, x)), batch_size=32), DataLoader(list(zip(y, x)), batch_size=64))
    assert "val_accuracy" in result.history[-1]


# ------------------------------------------------------------------------------------ lr, init, short runs
def test_lr_auto_runs_the_range_test_and_records_the_lr(tmp_path):
    x, y = blobs(400)
    trainer = Trainer(mlp(), lr="auto", epochs=2, run_dir=tmp_path / "r", **quiet())
    result = trainer.fit((x, y), (x, y))
    chosen = result.summary["lr"]
    assert result.summary["lr_finder"]["suggestion"] == chosen and 1e-5 < chosen < 1
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == chosen
    assert json.loads((tmp_path / "r" / "lr_find.json").read_text())["suggestion"] == chosen


def test_the_default_lr_of_a_named_optimizer_is_auto(tmp_path):
    x, y = blobs(400)
    result = Trainer(mlp(), epochs=1, run_dir=tmp_path / "r", **quiet()).fit((x, y))
    assert "lr_finder" in result.summary


def test_init_applies_a_scheme(tmp_path):
    model = mlp()
    before = model[0].weight.detach().clone()
    x, y = blobs()
    Trainer(model, lr=1e-3, init="orthogonal", epochs=1, max_steps=1, run_dir=tmp_path / "r", **quiet()).fit((x, y))
    assert not torch.allclose(model[0].weight, before, atol=1e-2)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
def test_one_epoch_on_64_samples_works_with_any_schedule(schedule, tmp_path):
    x, y = blobs(64)
    result = Trainer(mlp(), lr=1e-2, schedule=schedule, epochs=1, run_dir=tmp_path / "r",
                     schedule_params={"step_size": 1} if schedule == "step" else None, **quiet()).fit((x, y))
    assert result.status == "completed" and result.summary["steps"] == 1


# ------------------------------------------------------------------------------------ callbacks
class Snapshots(Callback):
    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, trainer, logs):
        self.weights[trainer.state.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_a_user_early_stopping_replaces_the_built_in_one_and_defines_best(tmp_path):
    x, y = blobs(200)
    xv, _ = blobs(100, seed=5)
    yv = torch.randint(0, 3, (100,), generator=torch.Generator().manual_seed(9))
    snapshots = Snapshots()
    trainer = Trainer(mlp(), lr=5e-2, epochs=30, run_dir=tmp_path / "r",
                      callbacks=[EarlyStopping(monitor="val_accuracy", mode="max", patience=2), snapshots], **quiet())
    result = trainer.fit((x, y), (xv, yv))
    assert sum(isinstance(cb, EarlyStopping) for cb in trainer.callbacks) == 1
    accuracies = [row["val_accuracy"] for row in result.history]
    best_epoch = 1 + accuracies.index(max(accuracies))
    assert result.best_epoch == best_epoch
    assert result.best_val_loss == result.history[best_epoch - 1]["val_loss"]  # the loss *at* the best epoch
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, snapshots.weights[best_epoch][key]), key
    best = ckpt.load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")
    assert best["run_state"]["best"]["epoch"] == best_epoch
    restore = [e for e in result.summary["events"] if e["kind"] == "restore_best"]
    assert restore and f"restored the weights of epoch {best_epoch} " in restore[0]["message"]


def test_user_checkpoint_saver_and_progress_bar_replace_the_built_ins(tmp_path):
    saver, bar = CheckpointSaver(every_n_steps=2), ProgressBar()
    trainer = Trainer(mlp(), lr=1e-2, epochs=1, callbacks=[saver, bar], run_dir=tmp_path / "r", report=False)
    kinds = [type(cb).__name__ for cb in trainer.callbacks]
    assert kinds.count("CheckpointSaver") == 1 and kinds.count("ProgressBar") == 1
    assert saver in trainer.callbacks and bar in trainer.callbacks
    with pytest.raises(ConfigError, match="CheckpointSaver monitors 'val_accuracy' but EarlyStopping monitors "
                                          "'val_loss'"):
        Trainer(mlp(), callbacks=[CheckpointSaver(monitor="val_accuracy"), EarlyStopping("val_loss")])


def test_callbacks_see_the_state_and_use_the_verbs(tmp_path):
    class Verbs(Callback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, trainer):
            self.steps.append(trainer.state.step)

        def on_validation_end(self, trainer, metrics):
            trainer.log("double_acc", 2 * metrics["val_accuracy"])

        def on_epoch_end(self, trainer, logs):
            if trainer.state.epoch == 2:
                trainer.stop("enough")

        def on_fit_end(self, trainer):
            self.summary = json.loads((trainer.run_dir / "summary.json").read_text())

    x, y = blobs(96)
    verbs = Verbs()
    result = Trainer(mlp(), lr=1e-2, epochs=5, batch_size=32, callbacks=[verbs], run_dir=tmp_path / "r",
                     **quiet()).fit((x, y), (x, y))
    assert verbs.steps == list(range(1, 7))
    assert result.status == "stopped_early" and result.summary["stop_reason"] == "enough"
    assert result.history[1]["double_acc"] == pytest.approx(2 * result.history[1]["val_accuracy"])
    assert verbs.summary["status"] == "stopped_early"  # on_fit_end runs after summary.json


# ------------------------------------------------------------------------------------ fit twice, run folder
def test_fit_twice_continues_the_run_in_its_folder(tmp_path):
    x, y = blobs()
    trainer = Trainer(mlp(), lr=1e-2, epochs=2, run_dir=tmp_path / "r", **quiet())
    first = trainer.fit((x, y), (x, y))
    second = trainer.fit((x, y), (x, y))
    assert [row["epoch"] for row in second.history] == [1, 2, 3, 4]
    assert second.summary["steps"] == 2 * first.summary["steps"]
    epochs = {int(row["epoch"]) for row in metrics_rows(tmp_path / "r") if row["split"] == "val"}
    assert epochs == {1, 2, 3, 4}


def test_a_python_run_folder_describes_its_model_and_data(tmp_path):
    from trainwise.models import build_model

    x, y = blobs()
    model = build_model("mlp", input_shape=(8,), num_outputs=3, hidden=[16])
    Trainer(model, lr=1e-2, epochs=1, run_dir=tmp_path / "r", class_names=["a", "b", "c"], **quiet()).fit((x, y))
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    data = json.loads((tmp_path / "r" / "data.json").read_text())
    assert config["model"]["name"] == "mlp" and config["model"]["hidden"] == [16]
    assert config["data"]["dataset"] == "python" and config["optimizer"]["lr"] == 1e-2
    assert (data["task"], data["input_shape"], data["num_outputs"], data["class_names"]) == (
        "classification", [8], 3, ["a", "b", "c"])
    from trainwise.config.schema import config_from_dict

    config_from_dict(config)  # a valid config: `trainwise evaluate` reads it


# ------------------------------------------------------------------------------------ checkpoints, warnings
def test_checkpoints_do_not_grow_with_the_run(tmp_path):
    x, y = blobs(64)
    sizes = {}
    for epochs in (5, 60):
        Trainer(mlp(), lr=1e-2, epochs=epochs, batch_size=64, run_dir=tmp_path / str(epochs), **quiet()).fit((x, y))
        sizes[epochs] = (tmp_path / str(epochs) / "checkpoints" / "last.pt").stat().st_size
    assert sizes[60] <= 1.02 * sizes[5]


def test_a_model_worse_than_the_mean_ends_with_a_warning(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = 100 + x @ torch.tensor([1.0, -2.0, 0.5, 3.0])  # far from a fresh model's outputs
    result = Trainer(mlp(4, 1), loss="mse", lr=1e-5, schedule="constant", epochs=1, run_dir=tmp_path / "r",
                     **quiet()).fit((x, y), (x, y), test=(x, y))
    assert result.status == "completed"
    assert any("worse than predicting the mean" in w for w in result.warnings)
    assert result.summary["warnings"] == result.warnings


def test_target_normalization_reports_original_units(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    raw = 50 + 10 * (x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))
    mean, std = float(raw.mean()), float(raw.std())
    trainer = Trainer(mlp(4, 1), loss="mse", lr=1e-2, epochs=2, run_dir=tmp_path / "r",
                      target_normalization={"mean": [mean], "std": [std]}, **quiet())
    trainer.fit((x, (raw - mean) / std))
    predictions = trainer.predict(x).squeeze(1)
    rmse = float(((predictions - raw) ** 2).mean().sqrt())
    assert trainer.evaluate((x, (raw - mean) / std))["rmse"] == pytest.approx(rmse, rel=1e-4)


def test_spikes_near_zero_are_not_spikes():
    counter = SpikeCounter(factor=10.0, refresh=5, window=10)
    for value in [2.0] * 5 + [1e-4] * 20:
        counter.observe(value)
    assert not counter.observe(5e-3)  # 50x the median, but a hair above zero
    assert counter.observe(1.5)  # a real spike


# ------------------------------------------------------------------------------------ typed exports
@pytest.mark.slow
def test_public_exports_are_typed_for_a_type_checker(tmp_path):
    import subprocess
    import sys

    import trainwise

    assert trainwise.Trainer is Trainer
    script = tmp_path / "uses_trainwise.py"
    script.write_text("import trainwise\nreveal_type(trainwise.Trainer)\nreveal_type(trainwise.FitResult)\n"
                      "trainwise.Trainer(None, epochs='three')\n")
    # trainwise's own modules are read; its dependencies (torch, numpy, pydantic) are skipped and read as Any:
    # reading torch took mypy a minute and says nothing about trainwise's annotations.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nfollow_imports = skip\nignore_missing_imports = True\n"
                      "[mypy-trainwise.*]\nfollow_imports = silent\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", str(script), "--config-file", str(config),
                           "--no-incremental", "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=300)
    assert 'Revealed type is "def (model: ' in proc.stdout, proc.stdout
    assert "epochs: builtins.int =" in proc.stdout or "epochs: int =" in proc.stdout, proc.stdout
    assert 'trainwise.engine.fit.FitResult' in proc.stdout
    assert 'Argument "epochs" to "Trainer" has incompatible type "str"; expected "int"' in proc.stdout  # not Any


def test_an_interrupted_lr_auto_run_resumes_at_the_lr_it_found(tmp_path):
    import os
    import signal

    class Interrupt(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.state.epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    x, y = blobs(400)
    first = Trainer(mlp(), lr="auto", epochs=3, callbacks=[Interrupt()], run_dir=tmp_path / "r",
                    **quiet()).fit((x, y), (x, y))
    assert first.status == "interrupted" and len(first.history) == 1
    resumed = Trainer(mlp(seed=1), lr="auto", epochs=3, callbacks=[Interrupt()], run_dir=tmp_path / "r",
                      **quiet()).fit(
        (x, y), (x, y), resume="auto")
    assert resumed.status == "completed" and [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.summary["lr"] == first.summary["lr"]
    assert "lr_finder" not in resumed.summary  # no second range test


def test_keras_habits_fit_x_y_and_restore_best_weights(tmp_path):
    x, y = blobs()
    stopper = EarlyStopping("train_loss", patience=2, restore_best_weights=False)
    assert stopper.restore_best is False
    result = Trainer(mlp(), lr=1e-2, epochs=2, callbacks=[stopper], run_dir=tmp_path / "r", **quiet()).fit(x, y)
    assert result.status == "completed" and len(result.history) == 2
    with pytest.raises(DataError, match="fit\\(\\) got a single tensor as training data; pass \\(inputs, targets\\)"):
        Trainer(mlp(), lr=1e-2, run_dir=tmp_path / "s", **quiet()).fit(x)


@pytest.mark.parametrize("make, interval, expected", [
    (lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), None, [0.1, 0.05, 0.025]),
    (lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step)), "step", None),
    (lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5), None, None),
])
def test_a_torch_scheduler_is_stepped_at_its_interval_and_resumes(make, interval, expected, tmp_path):
    x, y = blobs(96)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder = LrRecorder()
    trainer = Trainer(model, optimizer=optimizer, schedule=make(optimizer), schedule_interval=interval, epochs=3,
                      batch_size=32, callbacks=[recorder], run_dir=tmp_path / "r", **quiet())
    result = trainer.fit((x, y), (x, y))
    per_epoch = [lrs[0] for lrs in recorder.lrs[::3]]
    if expected is not None:  # StepLR defaults to stepping once per epoch
        assert per_epoch == pytest.approx(expected)
    if interval == "step":
        assert [lrs[0] for lrs in recorder.lrs[:3]] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert result.status == "completed"
    saved = ckpt.load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert saved["torch_scheduler"] == trainer.torch_scheduler.state_dict()


def test_a_torch_scheduler_on_another_optimizer_is_refused():
    model = mlp()
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(other, 1)
    with pytest.raises(ConfigError, match="StepLR built on another optimizer"):
        Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), schedule=scheduler)


def test_lr_auto_with_dict_batches_and_weights_measures_the_training_loss(tmp_path):
    x, y = blobs(300)
    w = torch.ones(len(x))
    loader = DataLoader(DictDataset(x, y), batch_size=32, shuffle=True)
    result = Trainer(mlp(), lr="auto", epochs=1, run_dir=tmp_path / "d", **quiet()).fit(loader)
    assert result.summary["lr_finder"]["suggestion"] == result.summary["lr"]
    weighted = Trainer(mlp(), lr="auto", epochs=1, run_dir=tmp_path / "w", **quiet()).fit((x, y, w))
    plain = Trainer(mlp(), lr="auto", epochs=1, run_dir=tmp_path / "p", **quiet()).fit((x, y))
    assert weighted.summary["lr"] == pytest.approx(plain.summary["lr"])  # unit weights: the same curve


@pytest.mark.parametrize("wrap", ["tuple", "dict"])
def test_models_returning_a_tuple_or_a_logits_dict_train_and_evaluate(wrap, tmp_path):
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            logits = self.body(x)
            return (logits, x.mean()) if wrap == "tuple" else {"logits": logits, "hidden": x}

    x, y = blobs()
    trainer = Trainer(Wrapped(), lr=1e-2, epochs=3, run_dir=tmp_path / "r", **quiet())
    result = trainer.fit((x, y), (x, y))
    assert result.history[-1]["val_accuracy"] > 0.9
    predictions = trainer.predict(x)  # a dict-returning model gets a dict back (issue 19)
    assert (predictions["logits"] if wrap == "dict" else predictions).shape == (len(x), 3)
    if wrap == "dict":
        assert set(predictions) == {"logits", "hidden"}


def test_a_model_returning_something_else_gets_one_clear_error(tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            return {"scores": self.body(x)}

    x, y = blobs()
    with pytest.raises(DataError, match="^the model returned a dict; return a tensor, a tuple"):
        Trainer(Odd(), lr=1e-2, run_dir=tmp_path / "r", **quiet()).fit((x, y))


def test_a_binary_classifier_with_bce_with_logits_reports_accuracy_not_r2(tmp_path):
    x, labels = blobs(classes=2)
    y = labels.float()  # 0/1 floats, one logit per sample: the usual binary set-up
    trainer = Trainer(mlp(outputs=1), loss=nn.BCEWithLogitsLoss(), lr=1e-2, epochs=10, run_dir=tmp_path / "r",
                      **quiet())
    result = trainer.fit((x, y), (x, y), test=(x, y))
    assert "val_accuracy" in result.history[-1] and "val_r2" not in result.history[-1]
    expected = float(((trainer.predict(x).squeeze(1) > 0).float() == y).float().mean())
    assert result.summary["test_accuracy"] == pytest.approx(expected) and expected > 0.9
    assert not result.warnings
    assert sum(map(sum, result.summary["confusion_matrix"])) == len(x)
    with pytest.raises(DataError, match="targets must be 0 or 1 for BCEWithLogitsLoss"):
        Trainer(mlp(outputs=1), loss=nn.BCEWithLogitsLoss(), lr=1e-2, run_dir=tmp_path / "s",
                **quiet()).fit((x, y * 3))


def test_val_fraction_holds_out_a_stratified_seeded_share(tmp_path):
    x, y = blobs(200)
    seen = {}

    class Sizes(Callback):
        def on_fit_start(self, trainer):
            seen["batches"] = trainer.state.batches_per_epoch

    result = Trainer(mlp(), lr=1e-2, epochs=2, batch_size=10, callbacks=[Sizes()], run_dir=tmp_path / "r",
                     **quiet()).fit((x, y), val_fraction=0.2)
    assert seen["batches"] == 16  # 160 training samples in batches of 10
    assert "val_accuracy" in result.history[-1] and result.summary["monitor"] == "val_loss"
    with pytest.raises(ConfigError, match="pass either val or val_fraction"):
        Trainer(mlp(), lr=1e-2, run_dir=tmp_path / "s", **quiet()).fit((x, y), (x, y), val_fraction=0.2)


def test_val_fraction_splits_a_map_style_dataset_by_index_seeded(tmp_path):
    class Rows(torch.utils.data.Dataset):
        def __init__(self) -> None:
            generator = torch.Generator().manual_seed(0)
            self.x = torch.randn(100, 4, generator=generator)
            self.reads = 0

        def __len__(self) -> int:
            return 100

        def __getitem__(self, i: int) -> dict:
            self.reads += 1
            return {"x": self.x[i], "labels": int(self.x[i, 0] > 0)}

    from trainwise.engine.plan import hold_out_val

    rows = Rows()
    train, val = hold_out_val(rows, None, 0.2, seed=3)
    assert rows.reads == 0 and len(train) == 80 and len(val) == 20  # split by index, nothing read
    assert sorted(train.indices + val.indices) == list(range(100))
    assert hold_out_val(rows, None, 0.2, seed=3)[1].indices == val.indices  # seeded
    result = Trainer(nn.Linear(4, 2), lr=1e-2, epochs=2, batch_size=16, run_dir=tmp_path / "r",
                     **quiet()).fit(Rows(), val_fraction=0.2)
    assert result.status == "completed" and "val_accuracy" in result.history[-1]
    loader = torch.utils.data.DataLoader(Rows(), batch_size=10)
    with pytest.raises(ConfigError, match="val_fraction cannot split a DataLoader"):
        Trainer(nn.Linear(4, 2), lr=1e-2, run_dir=tmp_path / "s", **quiet()).fit(loader, val_fraction=0.2)


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
def test_a_third_integer_element_is_refused_as_sample_weights(tmp_path, as_dataset):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    lengths, y = torch.randint(1, 5, (64,)), (x[:, 0] > 0).long()  # (x, lengths, y): a second input, not weights
    data = torch.utils.data.TensorDataset(x, lengths, y) if as_dataset else (x, lengths, y)
    with pytest.raises(DataError, match=r"batches of 3 are read as \(inputs, targets, sample_weights\), and the "
                                        r"third here is int64, which sample weights are not: .* dict batch"):
        Trainer(nn.Linear(4, 2), lr=1e-2, epochs=1, run_dir=tmp_path / "r", **quiet()).fit(data)
