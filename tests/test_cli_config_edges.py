"""Command-line edges that were accepted in silence or refused with a misleading line: an empty
config file, a key written twice, a CSV with another delimiter, a folder as data.path, the
schedule of an lr that is auto, a study's interval past [0, 1], an option given an empty value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli_in_process

from trainwise.config.schema import load_config
from trainwise.data import tabular
from trainwise.data.tabular import load_csv
from trainwise.errors import ConfigError, DataError
from trainwise.studies import verdict
from trainwise.studies.output import study_markdown
from trainwise.studies.verdict import mean_interval

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")
EMPTY_FIX = ("write its sections (data:, model:, optimizer:, train:) as in examples/digits.yaml; examples/ holds "
             "one config per data set")
MERGE = "YAML would keep only the last one: merge them into one"


def trainwise(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# -- config files: empty, a key twice ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "what"), [("", "empty"), ("\n\n", "empty"),
                                            ("# settings to come\n\n# data: {}\n", "empty (only comments)")])
def test_an_empty_config_file_is_refused_instead_of_training_the_defaults(tmp_path, text, what) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    proc = cli_in_process("train", str(config), "train.epochs=1", "--run-dir", "run", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, f"error: config file {config} is {what}; {EMPTY_FIX}\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("data: {dataset: digits}\ntrain:\n  epochs: 1\nmodel: {name: mlp}\ntrain:\n  grad_clip: 0.5\n",
     f"key 'train' is written twice, at line 2 and line 5; {MERGE}"),
    ("optimizer:\n  name: sgd\n  lr: 0.01\n  momentum: 0.9\n  lr: 0.1\n",
     f"key 'optimizer.lr' is written twice, at line 3 and line 5; {MERGE}"),
    ("train: {epochs: 1, epochs: 2}\n", f"key 'train.epochs' is written twice on line 1; {MERGE}"),
])
def test_a_key_written_twice_is_refused_with_both_lines(tmp_path, text, message) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text(text)
    proc = cli_in_process("train", str(config), "--run-dir", "run", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, f"error: config file {config}: {message}\n")
    assert not (tmp_path / "run").exists()


def test_merge_keys_still_work_and_a_python_tag_runs_nothing(tmp_path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &base {epochs: 2, grad_clip: 0.5}\n")  # `base` is not a section: refused after
    with pytest.raises(ConfigError, match="unknown key 'base'"):  # the YAML was read, merge and all
        load_config(merged)
    merged.write_text("train:\n  <<: {epochs: 2, grad_clip: 0.5}\n  epochs: 3\n")  # an explicit key beats a merged one
    assert (load_config(merged).train.epochs, load_config(merged).train.grad_clip) == (3, 0.5)
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="is not valid YAML: could not determine a constructor"):
        load_config(evil)
    assert not marker.exists()


# -- CSV: the delimiter, a folder ----------------------------------------------------------------------

ROWS = [("1.5", "2", "x"), ("2.5", "3", "y"), ("3", "4", "x"), ("4", "5", "y"), ("5", "1", "x"), ("6", "2", "y"),
        ("7", "3", "x"), ("8", "1", "y"), ("9", "2", "x"), ("10", "3", "y"), ("11", "4", "x"), ("12", "5", "y")]


def write_table(path: Path, delimiter: str) -> Path:
    path.write_text("\n".join(delimiter.join(row) for row in [("a", "b", "label"), *ROWS]) + "\n")
    return path


@pytest.mark.parametrize(("name", "delimiter"), [("semi.csv", ";"), ("tabs.csv", "\t"), ("pipes.csv", "|"),
                                                 ("comma.csv", ","), ("tabs.tsv", "\t")])
def test_the_delimiter_is_read_from_the_first_lines(tmp_path, name, delimiter) -> None:
    path = write_table(tmp_path / name, delimiter)
    assert tabular.csv_delimiter(path) == delimiter
    raw = load_csv(path, target="label", task=None)
    assert raw.details["feature_names"] == ["a", "b"] and raw.class_names == ["x", "y"]
    assert raw.x[:2].tolist() == [[1.5, 2.0], [2.5, 3.0]]


def test_in_doubt_the_comma_stays(tmp_path) -> None:
    texts = tmp_path / "texts.csv"  # commas split it evenly; the ';' inside values are text
    texts.write_text("name,note,label\nfoo,a;b;c,x\nbar,d;e;f,y\n")
    assert tabular.csv_delimiter(texts) == ","
    one = tmp_path / "one.csv"  # one column: nothing splits it evenly
    one.write_text("label\nx\ny\n")
    assert tabular.csv_delimiter(one) == ","


def test_a_semicolon_csv_trains_and_predicts(tmp_path) -> None:
    write_table(tmp_path / "semi.csv", ";")
    (tmp_path / "c.yaml").write_text("data: {dataset: csv, path: semi.csv, target: label}\n"
                                     "optimizer: {lr: 0.01}\ntrain: {epochs: 1}\n")
    proc = trainwise("train", "c.yaml", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "semi.csv: columns separated by ';'" in proc.stderr + proc.stdout
    assert json.loads((tmp_path / "run" / "data.json").read_text())["feature_names"] == ["a", "b"]
    proc = trainwise("predict", "run", "semi.csv", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == len(ROWS) + 1


def test_a_header_split_by_another_delimiter_is_named_when_the_rows_do_not_split(tmp_path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a;b;label\n1;2;x\n2;3\n3;4;x\n")  # ';' splits the header but not line 3
    with pytest.raises(ConfigError) as error:
        load_csv(path, target="label", task=None)
    assert str(error.value) == (
        f"target column 'label' is not in {path}; columns: a;b;label; the header looks like it uses ';' between "
        "columns, but the lines do not all split into as many values with it: give every line one value per column")


def test_a_decimal_comma_is_named_as_such(tmp_path) -> None:
    path = tmp_path / "decimal.csv"
    path.write_text("a;b;label\n1,5;2;x\n2,5;3;y\n3;4;x\n4;5;y\n")
    with pytest.raises(DataError) as error:
        load_csv(path, target="label", task=None)
    assert str(error.value) == (
        f"csv file {path}, line 2: column 'a' holds '1,5', a number with a comma, which reads as text; write numbers "
        "with a decimal point and no thousands separator (1.5, 1000), e.g. pandas.read_csv(path, sep=';', "
        "decimal=',').to_csv(new_path, index=False)")


@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_a_folder_as_data_path_is_named_a_folder(tmp_path, kind) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "c.yaml").write_text(f"data: {{dataset: {kind}, path: folder}}\ntrain: {{epochs: 1}}\n")
    proc = cli_in_process("train", "c.yaml", "--run-dir", "run", cwd=tmp_path)
    message = (f"{kind} file {folder} is a folder, not a file; give the .{kind} file inside it (or data.dataset: "
               "imagefolder for a folder of images)")
    assert (proc.returncode, proc.stderr) == (2, f"error: {message}\n")
    with pytest.raises(ConfigError) as error:  # the loader itself says the same
        load_csv(folder, target=None, task=None)
    assert str(error.value) == message.replace(f"{kind} file", "csv file").replace(f".{kind} file", ".csv file")


# -- schedule with lr auto -----------------------------------------------------------------------------

def test_schedule_says_the_lr_is_a_placeholder_when_lr_is_auto(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    titles = []
    original = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: titles.append(text) or original(self, text, **kw))
    proc = cli_in_process("schedule", DIGITS, "train.epochs=2", "optimizer.lr=auto", "--out", "s.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "42 optimizer steps (2 epochs x 21 steps), lr 0.001 (a placeholder: optimizer.lr is auto)"
    assert lines[1] == (f"note: optimizer.lr is auto, so train sets the lr with the LR range test; lr 0.001 here is "
                        f"a placeholder and only the schedule's shape is shown. trainwise lr-find {DIGITS} "
                        "train.epochs=2 optimizer.lr=auto prints the lr train would use; or set optimizer.lr")
    assert titles == ["Learning-rate schedule over 42 steps\nlr 0.001 is a placeholder (optimizer.lr is auto): the "
                      "shape is what is shown;\ntrainwise lr-find CONFIG gives the lr train would use"]
    titles.clear()
    proc = cli_in_process("schedule", DIGITS, "train.epochs=2", "optimizer.lr=0.01", "--out", "s.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "42 optimizer steps (2 epochs x 21 steps), lr 0.01"
    assert "placeholder" not in proc.stdout and titles == ["Learning-rate schedule over 42 steps"]


# -- a study's interval of a share ---------------------------------------------------------------------

def test_the_interval_of_a_share_is_cut_at_0_and_1_and_a_loss_keeps_its_own() -> None:
    assert [verdict.metric_bounds(m) for m in ("val_accuracy", "val_macro_f1", "val_loss", "val_dice_loss")] == \
        [(0.0, 1.0), (0.0, 1.0), None, None]
    finals = [0.6, 1.0, 1.0]
    low, high = mean_interval(finals)
    assert high > 1.4  # the t-interval itself
    assert verdict.bounded_interval(finals, (0.0, 1.0)) == ([low, 1.0], True)
    assert verdict.bounded_interval(finals, None) == ([low, high], False)
    assert verdict.bounded_interval([0.5, 0.52, 0.51], (0.0, 1.0)) == (mean_interval([0.5, 0.52, 0.51]), False)


def test_study_md_json_and_the_printout_show_the_clipped_interval(tmp_path) -> None:
    out = tmp_path / "dropout"
    proc = trainwise("study", "dropout", DIGITS, "model.hidden=[8]", "optimizer.lr=0.003", "schedule.name=constant",
                     "--seeds", "2", "--epochs", "1", "--train-samples", "64", "--workers", "1", "--out", str(out),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "study.json").read_text())
    md = (out / "study.md").read_text()
    clipped = 0
    for variant in saved["variants"]:
        final = variant["final"]
        raw = mean_interval(list(variant["finals"].values()))  # 2 seeds: t = 12.7, wide
        low, high = final["ci"]
        assert 0.0 <= low <= high <= 1.0
        assert final["ci_clipped"] == (raw[0] < 0 or raw[1] > 1)
        assert [low, high] == [max(raw[0], 0.0), min(raw[1], 1.0)]
        cell = f"[{low:.4f}, {high:.4f}]" + (" clipped to [0, 1]" if final["ci_clipped"] else "")
        assert f"| {cell} |" in md and cell in proc.stdout
        clipped += final["ci_clipped"]
    assert clipped, "two seeds of 64 samples: some interval reaches past [0, 1]"
    assert ("An interval marked clipped reached past [0, 1], where no val_accuracy can be: the t-interval of a few "
            "seeds' mean is cut at the bound.") in md


def test_study_md_of_a_loss_keeps_the_t_interval() -> None:
    variant = {"label": "a", "final": {"mean": 0.5, "std": 0.5, "ci": [-3.0, 4.0], "ci_clipped": False},
               "best": {"mean": None}, "test": {"mean": None}, "steps_to_target": {"mean": None, "of": 2},
               "wall_seconds": {"mean": None}, "failures": [], "statuses": ["completed"] * 2,
               "grad_norms_init": {}, "activations_init": {}, "activations_end": {}, "nonfinite_rollbacks": 0}
    results = {"study": "s", "question": "q", "claim": "c", "metric": "val_loss", "mode": "min", "target": None,
               "test": "t", "verdict": [], "comparisons": [], "variants": [variant], "lrs": {}, "data_seed": 0,
               "budget": {"seeds": 2, "epochs": 1, "steps": None, "train_samples": None}, "cpu_seconds": 1.0}
    md = study_markdown(results)
    assert "| [-3.0000, 4.0000] |" in md and "clipped" not in md


# -- an option given an empty value --------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("generate", "run", "--prompt", ""), "--prompt is empty; give the text to continue, at least one character"),
    (("generate", "run", "--prompt="), "--prompt is empty; give the text to continue, at least one character"),
    (("schedule", DIGITS, "--compare", ""), "--compare is empty; give comma-separated schedule names to overlay, "
                                            "e.g. --compare cosine,onecycle,step, or leave --compare out"),
    (("schedule", DIGITS, "--compare", " , "), "--compare names no schedule, got ' , '; give comma-separated "
                                               "schedule names to overlay, e.g. --compare cosine,onecycle,step, or "
                                               "leave --compare out"),
    (("train", DIGITS, "--run-dir", ""), "--run-dir is empty; give a value, or leave --run-dir out (trainwise train "
                                         "--help says what it takes)"),
])
def test_an_empty_option_value_gets_one_line_saying_so(tmp_path, args, message) -> None:
    proc = cli_in_process(*args, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, f"error: {message}\n")
    assert proc.stdout == ""
