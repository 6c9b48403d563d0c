"""Files from a stranger: sizes, shapes and fields edited into a run folder, a safetensors file or a
CSV are refused in one line naming the file, before anything is allocated for them.

A model whose config.yaml (or data.json, or safetensors metadata) asks for ``hidden: [1e9, 1e9]``
is built on the meta device first and compared with the checkpoint's tensors; a damaged data.json
is named instead of the user's inputs; a CSV cell over the csv module's field limit is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_helpers import cli_in_process
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_cli import DIGITS, trainwise
from test_cli_inference import assert_one_error

from trainwise.errors import CheckpointError
from trainwise.export import load_model

BILLION = 10**9


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small digits MLP (hidden [16]), its safetensors export, and inputs shaped like its data."""
    work = tmp_path_factory.mktemp("hostile")
    proc = trainwise("train", DIGITS, "train.epochs=1", "model.hidden=[16]", "--quiet", "--run-dir", "run", cwd=work)
    assert proc.returncode == 0, proc.stderr
    proc = trainwise("export", "run", "--format", "safetensors", cwd=work)
    assert proc.returncode == 0, proc.stderr
    np.savez(work / "x.npz", x=np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32) * 16)
    return work


def copy_run(trained: Path, tmp_path: Path) -> Path:
    run = Path(shutil.copytree(trained / "run", tmp_path / "run", ignore=shutil.ignore_patterns("export")))
    shutil.copy(trained / "x.npz", tmp_path / "x.npz")
    return run


def edit_config(run: Path, **model: object) -> None:
    path = run / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["model"].update(model)
    path.write_text(yaml.safe_dump(config))


def edit_data_json(run: Path, **fields: object) -> None:
    path = run / "data.json"
    description = json.loads(path.read_text())
    for key, value in fields.items():
        if value is KeyError:
            del description[key]
        else:
            description[key] = value
    path.write_text(json.dumps(description))


def predict(run: Path, cwd: Path) -> subprocess.CompletedProcess:
    return cli_in_process("predict", str(run), "x.npz", "--out", "p.npz", cwd=cwd)


def evaluate(run: Path, cwd: Path) -> subprocess.CompletedProcess:
    return cli_in_process("evaluate", str(run), "--split", "test", cwd=cwd)


# --- sizes: the model is compared with the file's tensors on the meta device ----------------------


@pytest.mark.parametrize("hidden", [[BILLION, BILLION], [16000, 16000]])
def test_absurd_hidden_sizes_in_config_yaml_are_refused_in_one_line(trained, tmp_path, hidden):
    run = copy_run(trained, tmp_path)
    edit_config(run, hidden=hidden)
    for proc in (evaluate(run, tmp_path), predict(run, tmp_path)):
        assert_one_error(proc, f"the weights in {run / 'checkpoints' / 'best.pt'} do not fit the model built by "
                               f"'mlp' from {run / 'config.yaml'} and data.json",
                         f"(layers.1.weight: expected shape ({hidden[0]}, 64), found (16, 64))",
                         "restore the run's config.yaml and data.json")
    assert not (tmp_path / "p.npz").exists()


def test_more_layers_than_the_checkpoint_has_tensors_are_refused_before_the_meta_build(trained, tmp_path):
    """The meta device makes one Python object per layer: a million layers would take minutes there."""
    run = copy_run(trained, tmp_path)
    edit_config(run, hidden=[1] * 1000)
    assert_one_error(evaluate(run, tmp_path), "model.hidden asks for 1000 layers, more than the file's 4 tensors")


def test_an_absurd_class_count_in_data_json_is_refused_in_one_line(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    edit_data_json(run, num_classes=BILLION, num_outputs=BILLION, class_names=None)
    assert_one_error(predict(run, tmp_path), "do not fit the model built by 'mlp'",
                     f"(layers.4.weight: expected shape ({BILLION}, 16), found (10, 16))")


# VmHWM, this process's own peak: ru_maxrss survives exec, so a child of a big pytest worker would
# report the worker's size
RSS_PROBE = """
import sys
from trainwise.cli import main
code = main(["evaluate", sys.argv[1], "--split", "test"])
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(code, peak_kb // 1024)
"""


@pytest.mark.parametrize("hidden", [[BILLION, BILLION], [16000, 16000]])
def test_the_refusal_of_absurd_sizes_allocates_nothing_for_them(trained, tmp_path, hidden):
    """[16000, 16000] is 1 GB of float32 weights for a 5 kB checkpoint: a process that built the
    model for real before comparing peaked at about 1.3 GB; on the meta device it stays at what
    importing torch and reading the data take (about 250 MB)."""
    run = copy_run(trained, tmp_path)
    edit_config(run, hidden=hidden)
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, str(run)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    code, peak_mb = (int(word) for word in proc.stdout.split()[-2:])
    assert code == 2 and "expected shape" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert peak_mb < 600, f"peak RSS {peak_mb} MB"


def test_a_config_yaml_with_a_negative_size_names_the_file_and_key(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    edit_config(run, hidden=[-1, 4])
    assert_one_error(evaluate(run, tmp_path), f"{run / 'config.yaml'}: invalid config: model.hidden",
                     "[-1, 4]", "the run folder is damaged")


# --- safetensors metadata: the same check against the file's header -------------------------------


def edited_safetensors(trained: Path, tmp_path: Path, edit) -> Path:
    source = trained / "run" / "export" / "model.safetensors"
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    meta = json.loads(metadata["trainwise.json"])
    edit(meta)
    metadata["trainwise.json"] = json.dumps(meta)
    path = tmp_path / "edited.safetensors"
    save_file(load_file(str(source)), str(path), metadata=metadata)
    shutil.copy(trained / "x.npz", tmp_path / "x.npz")
    return path


def test_absurd_sizes_in_safetensors_metadata_are_refused_in_one_line(trained, tmp_path):
    path = edited_safetensors(trained, tmp_path, lambda meta: meta["config"]["model"].update(hidden=[BILLION] * 2))
    with pytest.raises(CheckpointError, match=rf"the weights in .*edited.safetensors do not fit the model its "
                                              rf"metadata describes \(model.layers.1.weight: expected shape "
                                              rf"\({BILLION}, 64\), found \(16, 64\)\)"):
        load_model(path)
    assert_one_error(cli_in_process("predict", str(path), "x.npz", "--out", "p.npz", cwd=tmp_path),
                     "edited.safetensors do not fit the model its metadata describes", "--model package.module:factory")


def test_a_user_model_that_does_not_fit_a_safetensors_file_names_the_tensor(trained):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    with pytest.raises(CheckpointError, match=r"do not fit the model given \(model=\) \(model\.1\.weight: expected "
                                              r"shape \(16, 64\), not in the file\)"):
        load_model(trained / "run" / "export" / "model.safetensors", model=model)


def test_a_negative_input_shape_in_safetensors_metadata_names_the_key(trained, tmp_path):
    path = edited_safetensors(trained, tmp_path, lambda meta: meta["data"].update(input_shape=[-1, 8, 8]))
    assert_one_error(cli_in_process("predict", str(path), "x.npz", "--out", "p.npz", cwd=tmp_path),
                     "edited.safetensors: data.input_shape [-1, 8, 8] is not valid", "the file is damaged")


# --- data.json: checked when the run is loaded, named in the message ------------------------------


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"input_shape": [-1, 8, 8]}, "input_shape [-1, 8, 8] is not valid: it must be a list of integers > 0"),
    ({"input_shape": [1, 8.5, 8]}, "input_shape [1, 8.5, 8] is not valid"),
    ({"input_shape": "1x8x8"}, "input_shape '1x8x8' is not valid"),
    ({"num_outputs": 0}, "num_outputs 0 is not valid: it must be an integer > 0"),
    ({"num_outputs": KeyError}, "the key 'num_outputs' is missing"),
    ({"num_classes": 1e9}, "num_classes 1000000000.0 is not valid: it must be an integer > 0, or null"),
    ({"num_classes": 12}, "num_classes 12 is not valid: a classifier has one output per class, and num_outputs is 10"),
    ({"class_names": ["a", "b"]}, "class_names ['a', 'b'] is not valid: it must name num_classes=10 classes, got 2"),
    ({"class_names": "0123456789"}, "class_names '0123456789' is not valid: it must be a list of names"),
    ({"task": "ranking"}, "task 'ranking' is not valid: it must be one of classification, regression, binary"),
    ({"normalization": {"mean": [0.1, 0.2], "std": [1.0, 1.0]}}, "it must hold 1 means and as many stds, got 2 and 2"),
    ({"normalization": {"mean": [0.1], "std": [0.0]}}, "its means must be finite numbers and its stds finite "
                                                       "numbers > 0"),
    ({"normalization": [0.1, 0.3]}, "normalization [0.1, 0.3] is not valid: it must be {'mean': [...], 'std': [...]}"),
])
def test_a_damaged_data_json_is_named_not_the_users_inputs(trained, tmp_path, fields, fragment):
    run = copy_run(trained, tmp_path)
    edit_data_json(run, **fields)
    for proc in (predict(run, tmp_path), evaluate(run, tmp_path)):
        assert_one_error(proc, f"{run / 'data.json'}: ", fragment, "restore the data.json the run wrote")
        assert "inputs have shape" not in proc.stderr


def test_an_intact_copy_of_the_run_still_predicts(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    edit_data_json(run, target_normalization=KeyError)  # an older run folder: the key did not exist yet
    proc = predict(run, tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "p.npz") as got:
        assert got["predictions"].shape == (5,)


# --- CSV: a cell over the csv module's field limit ------------------------------------------------


@pytest.mark.parametrize(("text", "line"), [
    ("a,b,target\n" + "1,2,0\n" * 20 + "1," + "x" * 200_000 + ",1\n" + "3,4,1\n" * 20, 22),
    ("a,target\n" + "1" * 300_000 + ",0\n", 2),  # one enormous line
])
def test_a_csv_cell_over_the_field_limit_is_one_line_naming_the_file_and_line(tmp_path, text, line):
    (tmp_path / "big.csv").write_text(text)
    (tmp_path / "run.yaml").write_text("data: {dataset: csv, path: big.csv, target: target, batch_size: 4}\n"
                                       "model: {name: mlp}\noptimizer: {lr: 0.001}\ntrain: {epochs: 1}\n")
    proc = cli_in_process("train", "run.yaml", "--run-dir", "r", cwd=tmp_path)
    assert_one_error(proc, f"big.csv, line {line}: field larger than field limit (131072)",
                     "shorten that value or leave its column out of the file")


def test_predict_reads_a_csv_with_an_oversized_cell_as_one_line(trained, tmp_path):
    (tmp_path / "big.csv").write_text("a,b\n1,2\n1," + "x" * 200_000 + "\n")
    proc = cli_in_process("predict", str(trained / "run"), "big.csv", "--out", "p.npz", cwd=tmp_path)
    assert_one_error(proc, "big.csv", "field larger than field limit (131072)")
