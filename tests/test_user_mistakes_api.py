"""Mistakes a PyTorch, Keras or Lightning user makes through the Python API, each found by running
it as a new user would: every one is a single clear line, or the right behaviour, never a silently
wrong run."""

from __future__ import annotations

import csv
import traceback

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainwise import Trainer
from trainwise.callbacks import Callback
from trainwise.errors import ConfigError, DataError, UnknownArgumentError

pd = pytest.importorskip("pandas")


def quiet(run_dir, **options):
    return dict(run_dir=run_dir, progress=False, report=False, **options)


def blobs(n=240, features=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


# ------------------------------------------------------------------------------ tables: columns by name
def test_a_numeric_frame_is_read_by_column_name_in_evaluate_and_predict(tmp_path):
    x, y = blobs()
    frame = pd.DataFrame(x.numpy(), columns=["a", "b", "c"])
    trainer = Trainer(nn.Linear(3, 2), lr=0.05, epochs=3, **quiet(tmp_path / "r"))
    trainer.fit((frame, pd.Series(y.numpy())))
    reordered = frame[["c", "b", "a"]]
    assert torch.equal(trainer.predict(reordered), trainer.predict(frame))
    assert trainer.evaluate(reordered, y.numpy()) == trainer.evaluate(frame, y.numpy())
    with pytest.raises(DataError, match=r"inputs lack the column\(s\) 'b' the model was trained on"):
        trainer.predict(frame[["a", "c"]])
    with pytest.raises(DataError, match=r"inputs have the column\(s\) 'label', which the model was not trained on"):
        trainer.predict(frame.assign(label=y.numpy()))


# ------------------------------------------------------------------------------ the task, from every target
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multi_label_targets_are_refused_alike_whatever_the_batch_order(tmp_path, seed):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(200, 4, generator=generator)
    y = torch.zeros(200, 3)
    y[torch.arange(200), torch.randint(0, 3, (200,), generator=generator)] = 1.0  # one label per row ...
    y[::2, 0] = 1.0  # ... and a second one on half of them: not class probabilities
    with pytest.raises(DataError, match=r"whose values are all 0 or 1 \(200 targets read\); pass task='binary'"):
        Trainer(nn.Linear(4, 3), lr=0.01, epochs=1, seed=seed, **quiet(tmp_path / "r")).fit((x, y))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_count_targets_with_a_few_large_values_are_regression_whatever_the_batch_order(tmp_path, seed):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(200, 4, generator=generator)
    y = (torch.rand(200, generator=generator) < 0.3).float()
    y[7], y[150] = 5.0, 3.0  # two counts over 1 in 200: a probe of two samples would miss them
    trainer = Trainer(nn.Linear(4, 1), lr=0.01, epochs=1, seed=seed, **quiet(tmp_path / "r"))
    trainer.fit((x, y))
    assert trainer.loss_rule.label == "mse" and trainer.loss_rule.task == "regression"


# ------------------------------------------------------------------------------ losses and shapes
@pytest.mark.parametrize("weights, classes", [([1.0, 2.0, 3.0], 2), ([1.0, 2.0], 3)])
def test_a_wrong_number_of_class_weights_is_one_line(tmp_path, weights, classes):
    x, y = blobs()
    with pytest.raises(DataError, match=rf"class_weights has {len(weights)} weights but the model gives {classes} "
                                        rf"classes; give one weight per class \({classes}\)"):
        Trainer(nn.Linear(3, classes), lr=0.01, epochs=1, class_weights=weights, **quiet(tmp_path / "r")).fit((x, y))


@pytest.mark.parametrize("outputs, targets, said", [(1, (3,), "outputs of shape (1,) per sample but the targets have "
                                                                "shape (3,)"),
                                                     (3, (), "outputs of shape (3,) per sample but the targets have "
                                                             "one value")])
def test_regression_outputs_and_targets_of_other_sizes_are_one_line(tmp_path, outputs, targets, said):
    x = torch.randn(120, 4)
    y = torch.randn(120, *targets)
    with pytest.raises(DataError, match=re_escape(said)):
        Trainer(nn.Linear(4, outputs), loss="mse", lr=0.01, epochs=1, **quiet(tmp_path / "r")).fit((x, y), (x, y))


def re_escape(text):
    import re

    return re.escape(text)


def test_a_model_whose_outputs_have_no_gradient_is_one_line_and_a_failed_run(tmp_path):
    x, y = blobs()
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainer = Trainer(model, lr=0.01, epochs=1, **quiet(tmp_path / "r"))
    with pytest.raises(DataError, match=r"^the loss has no gradient: .*every parameter frozen with "
                                        r"requires_grad=False"):
        trainer.fit((x, y))
    assert trainer.state.status == "failed" and trainer.state.stop_reason.startswith("the loss has no gradient")


# ------------------------------------------------------------------------------ held-out data of another size
def test_validation_evaluate_and_predict_inputs_of_another_size_are_named(tmp_path):
    x, y = blobs()
    wide = torch.randn(40, 4)
    with pytest.raises(DataError, match=r"^the model cannot take the validation inputs of shape \(4,\)"):
        Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, **quiet(tmp_path / "a")).fit((x, y), (wide, y[:40]))
    with pytest.raises(DataError, match=r"^the model cannot take the test inputs of shape \(4,\)"):
        Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, **quiet(tmp_path / "b")).fit((x, y), test=(wide, y[:40]))
    trainer = Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, **quiet(tmp_path / "c"))
    trainer.fit((x, y))
    with pytest.raises(DataError, match=r"^the model cannot take the evaluate inputs of shape \(4,\)"):
        trainer.evaluate(TensorDataset(wide, y[:40]))  # a Dataset: found when its evaluation fails
    with pytest.raises(DataError, match=r"^the model cannot take the inputs given to predict of shape \(4,\)"):
        trainer.predict(wide)


def test_predict_refuses_a_loader_that_shuffles(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, **quiet(tmp_path / "r"))
    trainer.fit((x, y))
    with pytest.raises(DataError, match=r"RandomSampler draws the samples in a random order.*shuffle=False"):
        trainer.predict(DataLoader(TensorDataset(x), batch_size=32, shuffle=True))
    in_order = trainer.predict(DataLoader(TensorDataset(x), batch_size=32))
    assert torch.equal(in_order, trainer.predict(x))


# ------------------------------------------------------------------------------ callbacks
def test_trainer_log_in_on_epoch_end_belongs_to_the_epoch_that_ended(tmp_path):
    class LogEpoch(Callback):
        def on_epoch_end(self, trainer, logs):
            trainer.log("my_epoch", trainer.state.epoch * 10)

    x, y = blobs()
    result = Trainer(nn.Linear(3, 2), lr=0.01, epochs=3, callbacks=[LogEpoch()], **quiet(tmp_path / "r")).fit(
        (x, y), (x, y))
    assert [row.get("my_epoch") for row in result.history] == [10.0, 20.0, 30.0]
    with open(tmp_path / "r" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["metric"] == "my_epoch"]
    assert [(row["epoch"], float(row["value"])) for row in rows] == [("1", 10.0), ("2", 20.0), ("3", 30.0)]


# ------------------------------------------------------------------------------ names and values
def test_typos_point_at_the_right_name(tmp_path):
    with pytest.raises(UnknownArgumentError, match=r"learning_rat=: did you mean lr= \(learning_rate= elsewhere\)\?"):
        Trainer(nn.Linear(3, 2), learning_rat=0.1)
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adamW'; did you mean 'adamw'\?"):
        Trainer(nn.Linear(3, 2), optimizer="adamW")
    assert Trainer(nn.Linear(3, 2), lr="1e-3", **quiet(tmp_path / "r")).lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match=r"lr must be a number or 'auto', got 'fast'"):
        Trainer(nn.Linear(3, 2), lr="fast")


def test_a_user_mistake_is_raised_from_the_users_line_not_from_inside_trainwise(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINWISE_DEBUG", raising=False)
    x, y = blobs()
    trainer = Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, class_weights=[1.0, 2.0, 3.0], **quiet(tmp_path / "r"))
    with pytest.raises(DataError) as raised:
        trainer.fit((x, y))
    files = {frame.filename.rsplit("/", 2)[-1] for frame in traceback.extract_tb(raised.value.__traceback__)}
    assert files <= {"test_user_mistakes_api.py", "errors.py"}, files
    monkeypatch.setenv("TRAINWISE_DEBUG", "1")
    with pytest.raises(DataError) as raised:
        Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, class_weights=[1.0, 2.0, 3.0],
                **quiet(tmp_path / "r2")).fit((x, y))
    assert "loss_rule.py" in {frame.filename.rsplit("/", 1)[-1] for frame in
                              traceback.extract_tb(raised.value.__traceback__)}


def test_numbers_only_frames_record_their_columns_for_the_cli(tmp_path):
    import json

    x, y = blobs()
    frame = pd.DataFrame(x.numpy(), columns=["a", "b", "c"])
    Trainer(nn.Linear(3, 2), lr=0.05, epochs=1, **quiet(tmp_path / "r")).fit((frame, y.numpy()))
    described = json.loads((tmp_path / "r" / "data.json").read_text())
    assert described["feature_names"] == ["a", "b", "c"] and described["categorical"] == {}


def test_lightning_and_keras_callback_arguments_get_what_trainwise_does_instead():
    from trainwise.callbacks import CheckpointSaver, EarlyStopping

    with pytest.raises(UnknownArgumentError, match=r"^CheckpointSaver got unknown arguments: dirpath=: checkpoints go "
                                                   r"to RUN_DIR/checkpoints: Trainer\(run_dir=\.\.\.\); "
                                                   r"every_n_train_steps= is every_n_steps= here"):
        CheckpointSaver(dirpath="ckpts", every_n_train_steps=5)
    with pytest.raises(UnknownArgumentError, match=r"save_best_only=: best\.pt is always written"):
        CheckpointSaver(save_best_only=True)
    with pytest.raises(UnknownArgumentError, match=r"keep_lst=: did you mean keep_last=\?"):
        CheckpointSaver(keep_lst=2)
    with pytest.raises(UnknownArgumentError, match=r"^EarlyStopping got unknown argument: patiense=: did you mean "
                                                   r"patience=\?"):
        EarlyStopping(monitor="val_loss", patiense=2)
    assert EarlyStopping(monitor="val_loss", restore_best_weights=False).restore_best is False  # Keras' name works


def test_integer_images_from_a_dataset_are_named_as_integers_not_as_a_size(tmp_path):
    from torch.utils.data import Dataset

    class Bytes(Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, index):
            return torch.full((1, 6, 6), index % 256, dtype=torch.uint8), index % 2

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 2))
    with pytest.raises(DataError, match=r"^the model cannot take the inputs: they are uint8 and its layers compute in "
                                        r"floats .*x\.float\(\) / 255"):
        Trainer(model, lr=0.01, epochs=1, **quiet(tmp_path / "r")).fit(Bytes())


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp/abs", "a/b", ".hidden"])
def test_a_run_name_that_is_a_path_is_refused_before_any_folder_is_made(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"must be a plain folder name \(no '/', no leading '\.'\)"):
        Trainer(nn.Linear(3, 2), name=name)
    assert not any(tmp_path.iterdir())


def test_the_trivial_predictor_warning_needs_two_classes_and_does_not_advise_the_lr_it_used():
    from trainwise.engine.summary import trivial_predictor_warning

    assert trivial_predictor_warning("classification", {"accuracy": 1.0}, "test", 1.0) is None  # one class: no bar
    said = trivial_predictor_warning("classification", {"accuracy": 0.9}, "test", 0.9, lr_was_auto=True)
    assert said.startswith("the model is no better than always predicting the majority class: test accuracy 0.900 "
                           "<= 0.900; try another lr (the range test's curve is in report.html)")
    assert "try lr=auto" in trivial_predictor_warning("regression", {"r2": -0.5}, "test", None)


def test_an_exact_majority_class_model_is_warned_about(tmp_path):
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([10.0, -10.0]))  # always class 0
    x, y = torch.randn(400, 3), torch.cat([torch.zeros(378), torch.ones(22)]).long()  # 0.945: inexact in float32
    result = Trainer(model, lr=1e-12, epochs=1, **quiet(tmp_path / "r")).fit((x, y), test=(x, y))
    assert result.test_metrics["accuracy"] == 378 / 400
    assert any(w.startswith("the model is no better than always predicting the majority class: test accuracy 0.945 "
                            "<= 0.945") for w in result.warnings), result.warnings


def test_evaluate_checks_its_data_as_fit_checks_a_split(tmp_path):
    x, y = blobs()
    trainer = Trainer(nn.Linear(3, 2), lr=0.01, epochs=1, **quiet(tmp_path / "r"))
    trainer.fit((x, y))
    with pytest.raises(DataError, match=r"^evaluate: label 5 in row 0 is out of range for num_classes=2"):
        trainer.evaluate(x, torch.full((len(x),), 5))
    with pytest.raises(DataError, match=r"^evaluate: x has 3 NaN/Inf values, first in row 4"):
        trainer.evaluate(torch.cat([x[:4], torch.full((1, 3), float("nan")), x[5:]]), y)
    assert trainer.evaluate(x, y.float()) == trainer.evaluate(x, y)  # integer-valued float labels are indices
