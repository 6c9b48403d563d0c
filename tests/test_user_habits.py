"""What users of other tools type first: Keras' fit(x, y) on regression data, Lightning's and the
HF Trainer's argument names, a one-logit model on 0/1 labels. Each either trains as they meant or
gets one line naming the trainwise way."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainwise import Trainer
from trainwise.errors import ConfigError, DataError, UnknownArgumentError


def regression_data(n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x @ np.arange(5) + 0.1 * rng.normal(size=n)).astype("float32")


def one_output_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.parametrize("task", [None, "regression"])
def test_float_targets_without_a_loss_train_as_regression_with_mse(tmp_path, task):
    x, y = regression_data()
    trainer = Trainer(one_output_model(), epochs=10, batch_size=16, lr=1e-2, task=task, run_dir=tmp_path, progress=False,
                      report=False)
    result = trainer.fit((x[:200], y[:200]), (x[200:], y[200:]))
    assert result.status == "completed"
    assert json.loads((tmp_path / "data.json").read_text())["loss_rule"]["loss"] == "mse"
    variance = float(np.var(y[200:]))
    assert result.summary["best_val_loss"] < 0.2 * variance  # it learned the linear map, in MSE units


def test_float_zero_one_targets_without_a_task_are_refused_with_the_two_readings(tmp_path):
    x, _ = regression_data()
    y = (x[:, 0] > 0).astype("float32")
    with pytest.raises(DataError, match="values are all 0 or 1 \\(\\d+ targets read\\); pass task='binary' .* or task='regression'"):
        Trainer(one_output_model(), epochs=1, lr=1e-2, run_dir=tmp_path, progress=False).fit(x, y)
    assert not (tmp_path / "checkpoints").exists()


def test_integer_zero_one_labels_with_one_output_point_at_task_binary(tmp_path):
    x, _ = regression_data()
    y = (x[:, 0] > 0).astype("int64")
    with pytest.raises(DataError, match="is binary: pass task='binary'"):
        Trainer(one_output_model(), epochs=1, lr=1e-2, run_dir=tmp_path / "a", progress=False).fit(x, y)
    result = Trainer(one_output_model(), epochs=10, batch_size=16, lr=1e-2, task="binary", run_dir=tmp_path / "b",
                     progress=False, report=False).fit((x[:200], y[:200]), (x[200:], y[200:]))
    assert result.status == "completed" and result.summary["best_val_accuracy"] > 0.85


@pytest.mark.parametrize("arguments, message", [
    ({"max_epochs": 3}, "Trainer got unknown argument: max_epochs= is epochs= here (Lightning's max_epochs)"),
    ({"learning_rate": 1e-3, "gradient_accumulation_steps": 2},
     "learning_rate= is lr= here (Keras' and the HF Trainer's learning_rate); gradient_accumulation_steps= is "
     "accumulate= here (the HF Trainer's gradient_accumulation_steps)"),
    ({"epocs": 3}, "epocs=: did you mean epochs=?"),
])
def test_other_tools_argument_names_get_the_trainwise_name(tmp_path, arguments, message):
    with pytest.raises(UnknownArgumentError) as caught:
        Trainer(nn.Linear(2, 2), run_dir=tmp_path / "run", **arguments)
    assert message in str(caught.value) and isinstance(caught.value, TypeError)
    assert not (tmp_path / "run").exists()


def test_a_config_with_another_tools_key_names_the_trainwise_key(tmp_path):
    (tmp_path / "c.yaml").write_text("name: t\ndata: {dataset: digits}\nmodel: {name: mlp}\n"
                                     "optimizer: {learning_rate: 0.01}\n")
    proc = subprocess.run([sys.executable, "-m", "trainwise", "train", "c.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: unknown key 'optimizer.learning_rate' in config; did you mean "
                                   "'optimizer.lr'? (Keras' and the HF Trainer's learning_rate)")


class LightningStyle(nn.Module):
    """A LightningModule's habits on a plain module: its loss in training_step, its optimizer in
    configure_optimizers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning's signature
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y) + self.net.weight.abs().sum()  # not trainwise's loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_training_step_trainwise_would_not_call_is_refused_not_silently_replaced(tmp_path):
    x, _ = regression_data()
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    with pytest.raises(ConfigError) as caught:
        Trainer(LightningStyle(), epochs=1, run_dir=tmp_path / "a", progress=False).fit(x, y)
    assert str(caught.value).startswith("LightningStyle defines training_step(), which trainwise does not call")
    assert "pass optimizer=model.configure_optimizers()" in str(caught.value)
    assert not (tmp_path / "a").exists()
    model = LightningStyle()  # said on purpose: trainwise's loss, the module's optimizer
    result = Trainer(model, loss="cross_entropy", optimizer=model.configure_optimizers(), epochs=1,
                     run_dir=tmp_path / "b", progress=False, report=False).fit(x, y)
    assert result.status == "completed"


@pytest.mark.parametrize("arguments, message", [
    ({"epochs": 10, "batch_size": 32}, "Trainer.fit got epochs=, which is set in Trainer(...) here: "
                                       "Trainer(model, epochs=...).fit(...); Trainer.fit got batch_size="),
    ({"validation_split": 0.2}, "Trainer.fit got unknown argument: validation_split= is val_fraction= here (Keras')"),
])
def test_keras_fit_arguments_get_the_trainwise_way(tmp_path, arguments, message):
    x, y = regression_data(40)
    with pytest.raises(UnknownArgumentError) as caught:
        Trainer(one_output_model(), run_dir=tmp_path / "run").fit(x, y, **arguments)
    assert str(caught.value).startswith(message)
    assert not (tmp_path / "run").exists()


def test_evaluate_takes_x_and_y_as_keras_does(tmp_path):
    x, _ = regression_data()
    y = (x[:, 0] > 0).astype("int64")
    trainer = Trainer(nn.Linear(5, 2), epochs=2, run_dir=tmp_path, progress=False, report=False)
    trainer.fit((x[:200], y[:200]), (x[200:], y[200:]))
    assert trainer.evaluate(x[200:], y[200:]) == trainer.evaluate((x[200:], y[200:]))


@pytest.mark.parametrize("kind", ["one_hot", "mixed"])
def test_float_class_probabilities_without_a_loss_stay_soft_label_cross_entropy(tmp_path, kind):
    x, _ = regression_data()
    labels = torch.from_numpy((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64"))
    targets = torch.nn.functional.one_hot(labels, 3).float()
    if kind == "mixed":  # mixup-style: each row mixed with the next, still a distribution
        targets = 0.7 * targets + 0.3 * targets.roll(1, 0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    result = Trainer(model, epochs=2, lr=1e-2, run_dir=tmp_path, progress=False, report=False).fit(
        (torch.from_numpy(x), targets))
    rule = json.loads((tmp_path / "data.json").read_text())["loss_rule"]
    assert result.status == "completed"
    assert (rule["loss"], rule["task"], rule["soft_labels"]) == ("cross_entropy", "classification", True)


def table_data(n: int = 120):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n), "flag": rng.normal(size=n) > 0})
    labels = pd.Series((frame["a"] > 0).astype("int64"))
    return pd, frame, labels


def test_pandas_tables_train_evaluate_and_predict_like_arrays(tmp_path):
    pd, frame, labels = table_data()
    torch.manual_seed(0)
    trainer = Trainer(nn.Linear(3, 2), epochs=3, lr=1e-2, run_dir=tmp_path, progress=False, report=False)
    assert trainer.fit(frame, labels).status == "completed"
    as_array = torch.tensor(frame.to_numpy(dtype="float32"))
    assert torch.equal(trainer.predict(frame), trainer.predict(as_array))  # bool and int columns as float32
    assert trainer.evaluate(frame, labels) == trainer.evaluate(as_array, torch.tensor(labels.to_numpy()))


@pytest.mark.parametrize("what, message", [
    ("string column with a gap", r"inputs: column 'name' has missing values; fill them in"),
    ("string labels", r"targets hold object values \('(cat|dog)', \.\.\.\), not numbers"),
    ("category labels", r"targets is a categorical series; pass its integer codes"),
])
def test_tables_that_are_not_numbers_are_refused_with_the_encoding_to_use(tmp_path, what, message):
    pd, frame, labels = table_data()
    if what == "string column with a gap":
        frame = frame.assign(name=["x", None] * (len(frame) // 2))
    elif what == "string labels":
        labels = labels.map({0: "cat", 1: "dog"})
    else:
        labels = labels.map({0: "cat", 1: "dog"}).astype("category")
    with pytest.raises(DataError, match=message):
        Trainer(nn.Linear(frame.shape[1], 2), epochs=1, run_dir=tmp_path, progress=False, report=False).fit(frame, labels)
    assert not (tmp_path / "checkpoints").exists()


def test_a_list_of_samples_trains_as_a_dataset_and_predicts(tmp_path):
    torch.manual_seed(0)
    samples = [(torch.randn(3), i % 2) for i in range(40)]
    trainer = Trainer(nn.Linear(3, 2), epochs=2, batch_size=8, run_dir=tmp_path, progress=False, report=False)
    result = trainer.fit(samples)
    assert result.status == "completed" and result.summary["steps"] == 10
    stacked = torch.stack([x for x, _ in samples])
    assert torch.allclose(trainer.predict(samples), trainer.predict(stacked))


def test_keras_column_labels_of_shape_n_1_get_the_reshape_to_use(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(50, 4)).astype("float32"), np.arange(50)[:, None] % 3
    with pytest.raises(DataError, match=r"one class index per sample in a trailing axis of size 1.*y.reshape\(-1\)"):
        Trainer(nn.Linear(4, 3), epochs=1, run_dir=tmp_path, progress=False, report=False).fit(x, y)


def test_a_configure_optimizers_trainwise_does_not_call_is_named_with_the_optimizer_it_uses(tmp_path):
    class LitLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 3)

        def forward(self, x):
            return self.layer(x)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = (torch.randn(40, 4), torch.randint(0, 3, (40,)))
    result = Trainer(LitLike(), epochs=1, run_dir=tmp_path / "a", progress=False, report=False).fit(data)
    assert [w for w in result.warnings if "configure_optimizers()" in w] == [
        "LitLike defines configure_optimizers(), which trainwise does not call: it trains with optimizer='adamw'; "
        "pass optimizer=model.configure_optimizers() (an optimizer) to train with yours"]
    model = LitLike()
    result = Trainer(model, optimizer=model.configure_optimizers(), epochs=1, run_dir=tmp_path / "b", progress=False,
                     report=False).fit(data)
    assert not any("configure_optimizers" in w for w in result.warnings)


@pytest.mark.parametrize("arguments, message", [
    ({"loss": "sparse_categorical_crossentropy"}, r"unknown loss 'sparse_categorical_crossentropy'; that is 'cross_entropy' here"),
    ({"loss": "binary_crossentropy"}, r"that is task='binary' \(its default loss is BCE on logits\) here"),
    ({"precision": "16-mixed"}, r"unknown precision '16-mixed'; that is 'fp16' here"),
    ({"optimizer": torch.optim.Adam}, r"optimizer=Adam is a class; pass it built on the model's parameters"),
    ({"metrics": ["accuracy", "precision"]}, r"metric 'precision' is not a built-in figure"),
])
def test_other_tools_values_get_the_trainwise_value(tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(nn.Linear(4, 3), epochs=1, run_dir=tmp_path, progress=False, report=False, **arguments).fit(
            torch.randn(20, 4), torch.randint(0, 3, (20,)))


def test_keras_metric_names_of_built_in_figures_are_accepted_and_reported(tmp_path):
    x, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
    result = Trainer(nn.Linear(4, 3), metrics=["accuracy", "acc"], epochs=1, run_dir=tmp_path, progress=False,
                     report=False).fit((x[:40], y[:40]), (x[40:], y[40:]))
    assert "val_accuracy" in result.history[-1] and "val_acc" not in result.history[-1]


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8])
def test_narrow_integer_labels_train_in_memory_and_from_a_dataloader(tmp_path, dtype):
    from torch.utils.data import DataLoader, TensorDataset
    x, y = torch.randn(60, 4), torch.randint(0, 3, (60,)).to(dtype)
    trainer = Trainer(nn.Linear(4, 3), epochs=1, batch_size=16, run_dir=tmp_path / "a", progress=False, report=False)
    assert trainer.fit(x, y).status == "completed"
    assert trainer.evaluate(x, y)["loss"] == pytest.approx(trainer.evaluate(x, y.long())["loss"])
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    assert Trainer(nn.Linear(4, 3), epochs=1, run_dir=tmp_path / "b", progress=False,
                   report=False).fit(loader, (x, y)).status == "completed"


def test_a_float64_model_on_float32_data_is_named_as_a_dtype_mismatch(tmp_path):
    with pytest.raises(DataError, match=r"must share a dtype: model.float\(\)"):
        Trainer(nn.Linear(4, 3).double(), epochs=1, run_dir=tmp_path, progress=False, report=False).fit(
            torch.randn(20, 4), torch.randint(0, 3, (20,)))


@pytest.mark.parametrize("method, message", [
    ("test", "Trainer has no test(): evaluate(data) scores any split with the model as it is (Lightning's "
             "trainer.test); fit(train, val, test=data)"),
    ("validate", "Trainer has no validate(): evaluate(val) (Lightning's trainer.validate)"),
    ("train", "Trainer has no train(): fit(train, val) (the HF Trainer's train()"),
    ("save_model", "trainwise export RUN writes deployable files (the HF Trainer's save_model)"),
])
def test_other_tools_method_names_name_the_trainwise_call(tmp_path, method, message):
    x, y = regression_data(40)
    trainer = Trainer(one_output_model(), lr=1e-2, epochs=1, progress=False, report=False, run_dir=tmp_path / "r")
    trainer.fit(x, y)
    with pytest.raises(AttributeError) as error:
        getattr(trainer, method)((x, y))
    assert message in str(error.value)
    assert not hasattr(trainer, "no_such_thing") and not hasattr(trainer, method)  # hasattr stays truthful
    with pytest.raises(AttributeError, match="'Trainer' object has no attribute 'fitt'; did you mean 'fit'"):
        trainer.fitt(x, y)


@pytest.mark.parametrize("loss, message", [
    (nn.CrossEntropyLoss(reduction="none"), "the loss CrossEntropyLoss returned a tensor of shape (32,), not one "
                                            "number for the batch (reduction='none'?)"),
    (lambda outputs, targets: (outputs.argmax(1) == targets).float().mean(),
     "carries no gradient back to the model"),
    (lambda outputs, targets: 0.5, "returned float, not a tensor"),
])
def test_a_loss_callable_that_cannot_train_is_named_with_its_fix(tmp_path, loss, message):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(nn.Linear(4, 2), lr=1e-2, epochs=1, batch_size=32, loss=loss, progress=False, report=False,
                      run_dir=tmp_path / "r")
    with pytest.raises(DataError) as error:
        trainer.fit((x, (x[:, 0] > 0).long()))
    assert message in str(error.value)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed" and message in summary["stop_reason"]


def test_a_summed_torch_loss_and_a_plain_function_still_train(tmp_path):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    for name, loss in (("sum", nn.CrossEntropyLoss(reduction="sum")), ("fn", lambda o, t: F.cross_entropy(o, t))):
        result = Trainer(nn.Linear(4, 2), lr=1e-2, epochs=2, batch_size=32, loss=loss, progress=False, report=False,
                         run_dir=tmp_path / name).fit((x, y), (x, y))
        assert result.status == "completed"


def test_a_dataframes_text_columns_are_one_hot_in_fit_evaluate_predict_and_data_json(tmp_path):
    pd = pytest.importorskip("pandas")

    def frame(n: int, seed: int):
        rng = np.random.default_rng(seed)
        table = pd.DataFrame({"age": rng.normal(40, 10, n), "city": rng.choice(["oslo", "paris", "rome"], n),
                              "member": pd.Categorical(rng.choice(["no", "yes"], n)), "vip": rng.random(n) > 0.5})
        return table, (table["city"] == "paris").astype("int64").to_numpy()

    train, labels = frame(300, 0)
    val, val_labels = frame(100, 1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1 + 3 + 2 + 1, 16), nn.ReLU(), nn.Linear(16, 2))  # age, city x3, member x2, vip
    trainer = Trainer(net, epochs=15, lr=1e-2, run_dir=tmp_path / "r", progress=False, report=False)
    assert trainer.fit(train, labels).status == "completed"
    assert trainer.evaluate(val, val_labels)["accuracy"] == 1.0  # the label is the city: only its encoding has it
    shuffled = val[["vip", "member", "city", "age"]]  # columns by name, not position
    assert torch.equal(trainer.predict(shuffled), trainer.predict(val))
    described = json.loads((tmp_path / "r" / "data.json").read_text())
    assert described["categorical"] == {"city": ["oslo", "paris", "rome"], "member": ["no", "yes"]}
    assert described["feature_names"] == ["age", "city", "member", "vip"]
    with pytest.raises(DataError, match="column 'city' holds 'lima', which the model never saw in training"):
        trainer.predict(val.assign(city="lima"))
    wrong = Trainer(nn.Linear(4, 2), epochs=1, lr=1e-2, run_dir=tmp_path / "w", progress=False, report=False)
    with pytest.raises(DataError, match=r"the table's 7 features after one-hot encoding its text columns: age, "
                                        r"city=oslo, city=paris, city=rome, member=no, member=yes, vip\)"):
        wrong.fit(train, labels)
