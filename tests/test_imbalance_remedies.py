"""The class-imbalance remedies the doctor names as fixes: class weights, the balanced sampler and
the focal loss, in Python and in config, each raising minority recall on a 1:20 set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from trainwise import Trainer
from trainwise.callbacks import CheckpointSaver
from trainwise.config.schema import load_config
from trainwise.data.loader import InMemoryBatches, balanced_sample_weights
from trainwise.metrics import FocalLoss, focal_loss


def one_to_twenty(seed=0, n_major=2000, n_minor=100):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n_major, 2, generator=g), torch.randn(n_minor, 2, generator=g) + 1.5])
    y = torch.cat([torch.zeros(n_major, dtype=torch.long), torch.ones(n_minor, dtype=torch.long)])
    return x, y


def minority_recall(tmp_path: Path, name: str, **kwargs) -> float:
    x, y = one_to_twenty()
    xv, yv = one_to_twenty(seed=1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    trainer = Trainer(model, lr=1e-2, epochs=5, batch_size=128, schedule="constant", early_stopping=False,
                      run_dir=tmp_path / name, progress=False, report=False, checkpoint=CheckpointSaver(every_epoch=False), **kwargs)
    trainer.fit((x, y))
    predicted = trainer.predict(xv).argmax(dim=1)
    return float((predicted[yv == 1] == 1).double().mean())


def test_each_remedy_raises_minority_recall_on_a_1_to_20_set(tmp_path):
    plain = minority_recall(tmp_path, "plain")
    remedies = {"class_weights=balanced": minority_recall(tmp_path, "weights", class_weights="balanced"),
                "sampler=balanced": minority_recall(tmp_path, "sampler", sampler="balanced"),
                "loss=focal": minority_recall(tmp_path, "focal", loss="focal", focal_gamma=2.0)}
    assert plain < 0.5  # the majority class wins almost everywhere
    # measured: plain 0.22; class weights 0.85, sampler 0.84, focal (gamma 2) 0.28 — focal alone helps least
    for name, margin in (("class_weights=balanced", 0.3), ("sampler=balanced", 0.3), ("loss=focal", 0.05)):
        assert remedies[name] > plain + margin, (name, remedies[name], plain)


def test_focal_loss_is_cross_entropy_at_gamma_0_and_down_weights_easy_samples():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    ce = nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0, reduction="none"), ce)
    p = torch.softmax(logits, 1)[torch.arange(3), targets]
    assert torch.allclose(focal_loss(logits, targets, gamma=2.0, reduction="none"), (1 - p) ** 2 * ce)
    weight = torch.tensor([1.0, 3.0])
    expected = ((1 - p) ** 2 * ce * weight[targets]).sum() / weight[targets].sum()
    assert torch.allclose(FocalLoss(2.0, weight=weight)(logits, targets), expected)
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)


def test_balanced_sampler_draws_classes_equally_and_is_a_function_of_seed_and_epoch():
    x, y = one_to_twenty()
    weights = balanced_sample_weights(y)
    assert weights[0] == pytest.approx(1 / 2000) and weights[-1] == pytest.approx(1 / 100)
    batches = InMemoryBatches(x, y, batch_size=2100, shuffle=True, seed=3, sample_weights=weights)
    batches.set_epoch(4)
    drawn = next(iter(batches))[1]
    assert 0.45 < float(drawn.double().mean()) < 0.55  # each class about half the draws
    again = InMemoryBatches(x, y, batch_size=2100, shuffle=True, seed=3, sample_weights=weights)
    again.set_epoch(4)
    assert torch.equal(next(iter(again))[1], drawn)


def test_config_keys_reach_the_trainer_and_the_old_keys_still_work(tmp_path):
    from trainwise.config import build

    cfg = load_config(None, ["data.dataset=digits", "loss.name=focal", "loss.gamma=3", "loss.class_weights=balanced",
                             "data.sampler=balanced"])
    bundle = build.load_bundle(cfg)
    trainer = build.make_trainer(cfg, bundle, build.make_model(cfg, bundle), tmp_path / "a", progress=False)
    assert (trainer.loss_spec, trainer.focal_gamma, trainer.class_weights, trainer.sampler) == (
        "focal", 3.0, "balanced", "balanced")
    listed = load_config(None, ["loss.class_weights=[1.0, 2.0]"])
    assert listed.loss.class_weights == [1.0, 2.0]
    old = load_config(None, ["data.class_weights=balanced", "train.loss=cross_entropy"])
    assert build.class_weights_of_config(old) == "balanced" and old.train.loss == "cross_entropy"
    from trainwise.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.name"):
        load_config(None, ["loss.name=focall"])
    with pytest.raises(ConfigError, match="sampler"):
        load_config(None, ["data.sampler=weighted"])
