"""Edges of ``export`` and ``predict`` from the command line: a language-model run exported to every
format (token ids in, logits out), an exported image model given a folder or one image, and what a
checkpoint that fails its checksum tells a command-line user (and a Python one)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import cli_in_process
from trainwise import checkpoint as ckpt
from trainwise.export import load_artifact
from trainwise.runfolder.saved import load_saved_run, rebuild_model

BLOCK = 16


def _train(folder: Path, config: str, *extra: str) -> None:
    (folder / "c.yaml").write_text(config)
    done = cli_in_process("train", "c.yaml", "--run-dir", "run", *extra, cwd=folder)
    assert done.returncode == 0, done.stderr


# --- a language-model run: export to every format --------------------------------------------------


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpt")
    words = np.random.default_rng(0).choice(["alpha", "beta", "gamma", "delta", "token", "model", "export"], 700)
    (folder / "corpus.txt").write_text(" ".join(words) + "\n")
    _train(folder, f"data: {{dataset: text, path: corpus.txt, block_size: {BLOCK}, batch_size: 8}}\n"
                   "model: {name: gpt, layers: 1, heads: 2, width: 16}\noptimizer: {lr: 0.003}\n"
                   "train: {epochs: 1, max_steps: 4, report: false}\n")
    return folder


@pytest.mark.parametrize("fmt, name, load_as", [("onnx", "model.onnx", None), ("pt2", "model.pt2", "pt2"),
                                                ("torchscript", "model.pt", "torchscript"),
                                                ("safetensors", "model.safetensors", None)])
def test_a_language_model_run_exports_token_ids_in_and_logits_out(gpt_run, fmt, name, load_as):
    out = gpt_run / f"export-{fmt}"
    out.mkdir()
    done = cli_in_process("export", "run", "--format", fmt, "--out", str(out), cwd=gpt_run)
    assert done.returncode == 0, done.stderr
    figures = json.loads((out / "export.json").read_text())
    row = figures["formats"][fmt]
    assert figures["source"]["verified_on"] == "test" and figures["source"]["samples"] >= 8
    assert row["artifact_accuracy"] == row["pytorch_accuracy"]  # next-token accuracy on the test windows
    runner, meta = load_artifact(out / name, format=load_as)
    vocab = json.loads((gpt_run / "run" / "data.json").read_text())["vocab_size"]
    assert meta["data"]["vocab_size"] == vocab and meta["tokenizer"]["kind"] == "char"
    model = rebuild_model(load_saved_run(str(gpt_run / "run"), "best.pt"))
    generator = torch.Generator().manual_seed(1)
    for shape in [(1, BLOCK), (3, 5), (1, 1)]:  # both axes dynamic: any batch, any length up to the block
        ids = torch.randint(0, vocab, shape, generator=generator)
        with torch.inference_mode():
            got, want = runner(ids).float(), model(ids)
        assert got.shape == (*shape, vocab)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)


def test_a_language_model_is_refused_by_predict_and_checked_on_export_data(gpt_run):
    np.savez(gpt_run / "ids.npz", x=np.zeros((2, BLOCK), dtype=np.int64), y=np.zeros((2, BLOCK), dtype=np.int64))
    done = cli_in_process("predict", "run", "ids.npz", "--out", "p.csv", cwd=gpt_run)
    assert (done.returncode, done.stderr) == (2, "error: run is a language model (token ids in, next-token logits "
                                                 "out); predict takes rows of features or images: continue text "
                                                 "with trainwise generate run --prompt TEXT\n")
    np.savez(gpt_run / "long.npz", x=np.zeros((2, BLOCK + 4), dtype=np.int64), y=np.zeros((2, BLOCK + 4)))
    done = cli_in_process("export", "run", "--format", "safetensors", "--data", "long.npz", "--out", "x.safetensors",
                          cwd=gpt_run)
    vocab = json.loads((gpt_run / "run" / "data.json").read_text())["vocab_size"]
    assert (done.returncode, done.stderr) == (2, f"error: a language model's inputs are token ids: integers in [0, "
                                                 f"{vocab}) shaped (N, T) with 1 <= T <= {BLOCK}, got a torch.int64 "
                                                 f"tensor of shape (2, {BLOCK + 4}); pass --data FILE (.npz with x "
                                                 "and y) holding such ids\n")
    assert not (gpt_run / "x.safetensors").exists()


# --- an exported image model: a folder of images, one image -----------------------------------------

IMAGE_CONFIG = ("data: {{dataset: imagefolder, root: pets, image_size: [12, 12], batch_size: 8, cache: {cache}, "
                "num_workers: 0}}\nmodel: {{name: cnn, channels: [4], hidden: [8]}}\noptimizer: {{lr: 0.003}}\n"
                "train: {{epochs: 1, report: false}}\n")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("cat", "dog")):
        (folder / "pets" / name).mkdir(parents=True)
        for i in range(12):
            pixels = (40 + 160 * label + rng.integers(0, 40, (12, 12, 3))).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "pets" / name / f"{i}.png")
    _train(folder, IMAGE_CONFIG.format(cache="true"))
    done = cli_in_process("export", "run", "--format", "onnx", cwd=folder)
    assert done.returncode == 0, done.stderr
    (folder / "photos").mkdir()
    for source in ("pets/cat/3.png", "pets/dog/5.png"):
        (folder / "photos" / Path(source).name.replace(".png", f"-{Path(source).parent.name}.png")).write_bytes(
            (folder / source).read_bytes())
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def test_an_image_run_read_from_disk_exports_verified_on_its_test_files(image_run):
    # cache: false: the test split is a Dataset of files, not tensors; export samples it and verifies on it
    (image_run / "c.yaml").write_text(IMAGE_CONFIG.format(cache="false"))
    assert cli_in_process("train", "c.yaml", "--run-dir", "disk", cwd=image_run).returncode == 0
    done = cli_in_process("export", "disk", "--format", "torchscript", cwd=image_run)
    assert done.returncode == 0, done.stderr
    figures = json.loads((image_run / "disk" / "export" / "export.json").read_text())
    assert figures["source"]["verified_on"] == "test" and figures["source"]["samples"] == 5  # 20% of 24 images
    row = figures["formats"]["torchscript"]
    assert row["artifact_accuracy"] == row["pytorch_accuracy"]


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def _same_predictions(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [(row["file"], row["prediction"]) for row in got] == [(row["file"], row["prediction"]) for row in want]
    for mine, theirs in zip(got, want):
        for key in ("probability_cat", "probability_dog"):
            assert float(mine[key]) == pytest.approx(float(theirs[key]), abs=1e-5)


def test_an_exported_image_model_predicts_a_folder_and_one_image_like_its_run(image_run):
    assert cli_in_process("predict", "run", "photos", "--out", "run.csv", cwd=image_run).returncode == 0
    done = cli_in_process("predict", "run/export/model.onnx", "photos", "--out", "onnx.csv", cwd=image_run)
    assert (done.returncode, done.stdout) == (0, "wrote 2 predictions to onnx.csv\n"), done.stderr
    from_run = _rows(image_run / "run.csv")
    assert [row["file"] for row in from_run] == ["photos/3-cat.png", "photos/5-dog.png"]
    _same_predictions(_rows(image_run / "onnx.csv"), from_run)
    for model in ("run", "run/export/model.onnx"):  # one image file, from the run and from the artifact
        done = cli_in_process("predict", model, "photos/5-dog.png", "--out", "one.csv", cwd=image_run)
        assert (done.returncode, done.stdout) == (0, "wrote 1 predictions to one.csv\n"), done.stderr
        _same_predictions(_rows(image_run / "one.csv"), from_run[1:])


def test_an_exported_image_model_names_the_inputs_it_takes(image_run):
    takes = ("a folder of images, an image file (.png, .jpg, .jpeg, .bmp, .webp, .gif, .tif, .tiff) or an .npz "
             "with x shaped (N, C, H, W)")
    for given, message in [("notes.txt", f"this image model takes {takes}, got 'notes.txt'"),
                           ("nowhere", f"input not found: nowhere; pass {takes}")]:
        done = cli_in_process("predict", "run/export/model.onnx", given, "--out", "p.csv", cwd=image_run)
        assert (done.returncode, done.stderr) == (2, f"error: {message}\n")


# --- a checkpoint that fails its checksum -----------------------------------------------------------


@pytest.fixture()
def damaged_run(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    rows = [f"{a:.4f},{b:.4f},{'yes' if a + b > 0 else 'no'}" for a, b in x]
    (tmp_path / "d.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    _train(tmp_path, "data: {dataset: csv, path: d.csv, target: label, batch_size: 16}\n"
                     "model: {name: mlp, hidden: [8]}\noptimizer: {lr: 0.01}\ntrain: {epochs: 3, report: false}\n")
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 1  # best.pt is a hard link: its step file fails with it
    best.write_bytes(bytes(data))
    return tmp_path


def test_a_damaged_checkpoint_names_what_the_command_line_can_do(damaged_run):
    done = cli_in_process("evaluate", "run", cwd=damaged_run)
    match = re.fullmatch(r"error: checkpoint run/checkpoints/best\.pt failed verification: checksum mismatch: sha256 "
                         r"[0-9a-f]{16}\.\.\. on disk, manifest\.json says [0-9a-f]{16}\.\.\.; pass --checkpoint "
                         r"(step-\d{8}\.pt|last\.pt), the newest checkpoint of the run that verifies\n",
                         done.stderr.splitlines(keepends=True)[-1])
    assert done.returncode == 2 and match, done.stderr
    assert cli_in_process("evaluate", "run", "--checkpoint", match.group(1), cwd=damaged_run).returncode == 0
    # From Python the loader cannot tell who called it: both ways out, Python's included.
    with pytest.raises(ckpt.CheckpointVerificationError, match=r"failed verification: checksum mismatch: .*; use "
                       r"another checkpoint of the run that verifies \(command line: --checkpoint FILE for evaluate, "
                       r"predict, export and generate; train --resume auto takes the newest one that verifies; "
                       r"Python: find_resumable\(folder\) finds it\); only for a file you trust, Python's "
                       r"load_checkpoint\(path, verify=False\) skips the check"):
        ckpt.load_checkpoint(damaged_run / "run" / "checkpoints" / "best.pt")


def test_resume_auto_names_each_skipped_checkpoint_once(damaged_run):
    folder = damaged_run / "run" / "checkpoints"
    with open(folder / "last.pt", "r+b") as handle:
        handle.truncate(1000)
    good, skipped = ckpt.find_resumable(folder)
    assert good is not None and len(skipped) >= 2
    # a real process: the CLI's own logging prints the lines (pytest's capture would take them in-process)
    done = subprocess.run([sys.executable, "-m", "trainwise", "train", "c.yaml", "train.epochs=4", "--run-dir", "run",
                           "--resume", "auto", "--resume-changed"], cwd=damaged_run, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("skipping checkpoint")]
    assert lines == [f"skipping checkpoint run/checkpoints/{path.name}: {reason}" for path, reason in skipped]
    assert f"resuming from run/checkpoints/{good.name}, the newest checkpoint that verifies" in done.stderr
