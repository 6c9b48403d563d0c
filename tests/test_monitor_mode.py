"""``mode="auto"``: the direction of a monitored metric read from the words of its name
(``trainwise.callbacks.monitor``), and the refusal of a name that does not say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from trainwise import Trainer
from trainwise.callbacks import CheckpointSaver, EarlyStopping
from trainwise.callbacks.monitor import direction_of, name_words, resolve_mode
from trainwise.cli import main
from trainwise.config.check import check_names
from trainwise.config.schema import load_config
from trainwise.errors import ConfigError
from trainwise.tune.settings import parse_settings

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")

LARGER = ["val_accuracy", "val_acc", "train_accuracy", "val_macro_f1", "val_top5_accuracy", "val_top2_accuracy",
          "val_top3_accuracy", "val_top2", "val_r2", "val_exact_match", "val_iou", "val/iou", "valid_dice_score",
          "val_dice", "val_map", "val_mAP", "mAP@0.5", "val_ap50", "val_auc", "val_auc_1", "val_auroc", "val_roc_auc",
          "val_precision", "val_recall", "val_f2", "val_fbeta", "val_jaccard", "val_bleu", "val_rouge1", "val_rougeL",
          "val_meteor", "val_mcc", "val_cohen_kappa", "val_spearman_correlation", "val_pearson_corr", "val_psnr",
          "val_ssim", "val_ms_ssim", "val_ndcg@10", "hits@10", "val_mrr", "val_score", "val_mean_io_u", "mIoU",
          "meanIoU", "val_cosine_similarity", "val_explained_variance", "val_sparse_categorical_accuracy",
          "val_MulticlassAccuracy", "BinaryF1Score", "R2Score", "train_samples_per_second", "tokens_per_second"]
SMALLER = ["val_loss", "train_loss", "test_loss", "val_rmse", "val_mae", "val_mse", "val_mape", "val_msle",
           "val_nll", "val_perplexity", "val_ppl", "val_bits_per_char", "val_cer", "val_wer", "val_ter",
           "val_error", "val_err", "val_distance", "val_time", "train_seconds", "val_latency", "val_dice_loss",
           "val_iou_loss", "top1_error", "val_categorical_crossentropy", "val_mean_absolute_error",
           "val_kl_divergence", "loss_per_token", "MeanSquaredError", "valLoss"]
UNDECIDED = ["val_foo", "val_custom", "lr", "grad_norm", "val_mse_score", "loss_accuracy", "neg_mean_squared_error",
             "val_loss_delta", "val_accuracy_gain", "val_loss_std", "tokens_per_step", "val_"]


@pytest.mark.parametrize("name", LARGER)
def test_larger_is_better_names_are_maximized(name: str) -> None:
    assert direction_of(name) == "max"
    assert resolve_mode(name, "auto") == "max"


@pytest.mark.parametrize("name", SMALLER)
def test_smaller_is_better_names_are_minimized(name: str) -> None:
    assert direction_of(name) == "min"
    assert resolve_mode(name, "auto") == "min"


@pytest.mark.parametrize("name", UNDECIDED)
def test_names_that_do_not_say_are_refused(name: str) -> None:
    assert direction_of(name) is None
    with pytest.raises(ConfigError, match="better higher or lower"):
        resolve_mode(name, "auto")


@pytest.mark.parametrize(("figure", "mode"), [
    ("loss", "min"), ("accuracy", "max"), ("macro_f1", "max"), ("top5_accuracy", "max"), ("exact_match", "max"),
    ("rmse", "min"), ("mae", "min"), ("r2", "max"), ("perplexity", "min"), ("bits_per_char", "min")])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_figure_trainwise_logs_keeps_its_direction(figure: str, mode: str, split: str) -> None:
    assert resolve_mode(f"{split}_{figure}", "auto") == mode


def test_words_are_whole_tokens_not_substrings() -> None:
    assert name_words("val/top5Acc") == ["val", "top5", "acc"]
    assert name_words("val_exact_match") == ["val", "exactmatch"]
    assert direction_of("val_heatmap_loss") == "min"  # 'map' inside 'heatmap' is not mAP
    assert direction_of("val_precisionish") is None


def test_an_explicit_mode_is_kept_whatever_the_name() -> None:
    assert resolve_mode("val_foo", "max") == "max"
    assert resolve_mode("val_accuracy", "min") == "min"
    with pytest.raises(ConfigError, match=r"unknown mode .maximize. \(valid: auto, min, max\)"):
        resolve_mode("val_loss", "maximize")


def test_the_refusal_is_one_line_with_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_mode("val_foo", "auto")
    assert str(caught.value) == ("cannot tell whether 'val_foo' is better higher or lower; "
                                 "pass mode='max' or mode='min'")
    with pytest.raises(ConfigError, match=r"'val_acuracy' is better .* \(did you mean 'val_accuracy'\?\); pass mode="):
        resolve_mode("val_acuracy", "auto")


def test_an_undecided_monitor_is_refused_when_the_trainer_is_built(tmp_path: Path) -> None:
    quiet = dict(run_dir=tmp_path / "run", progress=False, report=False)
    message = r"^cannot tell whether 'val_foo' is better higher or lower; pass mode='max' or mode='min'$"
    with pytest.raises(ConfigError, match=message):
        Trainer(nn.Linear(4, 2), monitor="val_foo", **quiet)
    with pytest.raises(ConfigError, match=message):
        EarlyStopping("val_foo")
    with pytest.raises(ConfigError, match=message):
        CheckpointSaver(monitor="val_foo")
    assert EarlyStopping("val_foo", mode="max").mode == "max"
    Trainer(nn.Linear(4, 2), monitor="val_foo", mode="max", **quiet)


def test_a_config_names_its_own_key() -> None:
    cfg = load_config(DIGITS, ["train.early_stopping.monitor=val_foo"])
    with pytest.raises(ConfigError, match="'val_foo' is better higher or lower; set train.early_stopping.mode to max"):
        check_names(cfg)
    check_names(load_config(DIGITS, ["train.early_stopping.monitor=val_foo", "train.early_stopping.mode=max"]))


def test_the_cli_refuses_an_undecided_monitor_before_anything_runs(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", DIGITS, "train.early_stopping.monitor=val_iou_custom", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["train", DIGITS, "train.early_stopping.monitor=val_foo", "--dry-run"]) == 2
    _, err = capsys.readouterr()
    assert "cannot tell whether 'val_foo' is better higher or lower; set train.early_stopping.mode" in err


def test_a_search_direction_follows_the_same_words() -> None:
    space = {"model.dropout": {"uniform": [0, 0.5]}}
    assert parse_settings({"space": space, "metric": "val_iou"}).optuna_direction == "maximize"
    assert parse_settings({"space": space, "metric": "val_top2_accuracy"}).optuna_direction == "maximize"
    assert parse_settings({"space": space, "metric": "val_rmse"}).optuna_direction == "minimize"
    assert parse_settings({"space": space, "metric": "val_foo", "direction": "maximize"}).maximize
    with pytest.raises(ConfigError, match="'val_foo' is better higher or lower; set tune.direction to maximize"):
        parse_settings({"space": space, "metric": "val_foo"})


def test_a_rising_user_iou_makes_the_last_epoch_the_best(tmp_path: Path) -> None:
    """The defect: ``val_iou`` was minimized, so early stopping stopped at epoch 3 with epoch 1 as
    "best" (best.pt and the restored weights the worst epoch)."""
    scores = [0.55, 0.80, 0.94, 0.97]
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))

    def iou(outputs: torch.Tensor, targets: torch.Tensor) -> float:  # validation after epoch e: state.epoch e - 1
        return scores[min(trainer.state.epoch, len(scores) - 1)]

    trainer = Trainer(nn.Linear(4, 2), lr=1e-2, epochs=len(scores), patience=2, batch_size=16, monitor="val_iou",
                      metrics={"iou": iou}, run_dir=tmp_path / "run", progress=False, report=False)
    result = trainer.fit((x[:48], y[:48]), (x[48:], y[48:]))
    assert [row["val_iou"] for row in result.history] == pytest.approx(scores)
    assert result.best_epoch == len(scores)
    assert result.status == "completed"
    assert result.summary["best_value"] == pytest.approx(scores[-1])
    assert trainer.state.best.mode == "max"
