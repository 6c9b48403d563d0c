"""Per-token and per-pixel targets: the class axis, ignore_index, sum/count normalisation over a whole
optimizer step, label smoothing, soft labels, and the metrics of token tasks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainwise import Trainer
from trainwise.errors import DataError
from trainwise.losses import cross_entropy_sum

V, T = 7, 6


class TinyLM(nn.Module):
    """Embedding → linear: logits (N, T, V), the shape every language model returns."""

    def __init__(self, vocab=V, width=8):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab, width), nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.embed(ids))


class GRULM(nn.Module):
    def __init__(self, vocab=V, width=32):
        super().__init__()
        self.embed, self.gru, self.head = nn.Embedding(vocab, width), nn.GRU(width, width, batch_first=True), \
            nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.gru(self.embed(ids))[0])


def ragged(n=10, seed=0):
    """Token ids and next-token targets, each sequence padded with -100 after its own length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n, T), generator=g)
    targets = torch.randint(0, V, (n, T), generator=g)
    lengths = torch.randint(1, T + 1, (n,), generator=g)
    targets[torch.arange(T)[None, :] >= lengths[:, None]] = -100
    return ids, targets


def quiet(tmp_path, **kwargs):
    return dict(run_dir=tmp_path / "run", progress=False, report=False, **kwargs)


def hand_loss(model, ids, targets, **kwargs):
    logits = model(ids)
    total = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="sum", **kwargs)
    return total / (targets != -100).sum()


@pytest.mark.parametrize("batch_size, accumulate", [(10, 1), (4, 3), (3, 4)])
def test_one_step_over_ragged_micro_batches_is_the_gradient_of_sum_over_count(tmp_path, batch_size, accumulate):
    torch.manual_seed(0)
    ids, targets = ragged()
    model, reference = TinyLM(), TinyLM()
    reference.load_state_dict(model.state_dict())
    lr = 0.5
    expected_loss = hand_loss(reference, ids, targets)
    expected_loss.backward()
    with torch.no_grad():
        expected = {name: p - lr * p.grad for name, p in reference.named_parameters()}
    trainer = Trainer(model, loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=lr), epochs=1,
                      batch_size=batch_size, accumulate=accumulate, **quiet(tmp_path))
    result = trainer.fit((ids, targets))
    assert result.summary["steps"] == 1  # every uneven micro-batch in one optimizer step
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=1e-5, atol=1e-6)
    assert result.history[0]["train_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)


def test_evaluation_counts_tokens_not_padding(tmp_path):
    torch.manual_seed(1)
    ids, targets = ragged(n=23, seed=3)
    model = TinyLM()
    trainer = Trainer(model, loss="cross_entropy", eval_batch_size=5, **quiet(tmp_path))
    figures = trainer.evaluate((ids, targets))
    with torch.no_grad():
        logits = model(ids)
        loss = hand_loss(model, ids, targets).item()
    counted = targets != -100
    accuracy = ((logits.argmax(-1) == targets) & counted).sum().item() / counted.sum().item()
    assert figures["loss"] == pytest.approx(loss, rel=1e-6)
    assert figures["accuracy"] == pytest.approx(accuracy)
    assert figures["perplexity"] == pytest.approx(math.exp(loss), rel=1e-6)


def test_label_smoothing_masks_both_terms_and_matches_torch_without_padding():
    torch.manual_seed(2)
    logits = torch.randn(4, T, V)
    targets = torch.randint(0, V, (4, T))
    total, count = cross_entropy_sum(logits, targets, class_axis=-1, label_smoothing=0.2)
    reference = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), label_smoothing=0.2)
    assert (total / count).item() == pytest.approx(reference.item(), rel=1e-6)
    padded = targets.clone()
    padded[:, 3:] = -100
    total, count = cross_entropy_sum(logits, padded, class_axis=-1, label_smoothing=0.2)
    kept = F.cross_entropy(logits[:, :3].reshape(-1, V), targets[:, :3].reshape(-1), label_smoothing=0.2)
    assert count.item() == 12 and (total / count).item() == pytest.approx(kept.item(), rel=1e-6)


def test_pixels_take_the_class_axis_at_one(tmp_path):
    torch.manual_seed(3)
    model = nn.Conv2d(2, 4, 3, padding=1)  # (N, 4, H, W) scores for 4 classes per pixel
    x, y = torch.randn(12, 2, 5, 5), torch.randint(0, 4, (12, 5, 5))
    y[:, 0, :] = -100
    trainer = Trainer(model, loss="cross_entropy", epochs=1, lr=1e-2, **quiet(tmp_path))
    result = trainer.fit((x, y))
    assert trainer.loss_rule.class_axis == 1 and result.status == "completed"
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, ignore_index=-100).item()
    assert trainer.evaluate((x, y))["loss"] == pytest.approx(expected, rel=1e-5)
    import json
    rule = json.loads((tmp_path / "run" / "data.json").read_text())["loss_rule"]
    assert rule["class_axis"] == 1 and rule["positions"] is True


def test_equal_length_and_vocabulary_take_the_last_axis_with_a_warning_or_the_one_asked_for(tmp_path):
    ids = torch.randint(0, V, (8, V))
    targets = torch.randint(0, V, (8, V))  # T == V: both axes fit
    trainer = Trainer(TinyLM(), loss="cross_entropy", epochs=1, lr=1e-2, **quiet(tmp_path))
    result = trainer.fit((ids, targets))
    assert trainer.loss_rule.class_axis == -1
    assert any("class axis both last and at 1" in w for w in result.warnings)
    override = Trainer(TinyLM(), loss="cross_entropy", epochs=1, lr=1e-2, class_axis=1, **quiet(tmp_path / "b"))
    override.fit((ids, targets))
    assert override.loss_rule.class_axis == 1


def test_targets_that_fit_no_class_axis_fail_before_training_naming_both_shapes(tmp_path):
    ids, targets = torch.randint(0, V, (8, T)), torch.randint(0, V, (8, T - 1))
    with pytest.raises(DataError, match=r"targets of shape \(2, 5\) do not fit outputs of shape \(2, 6, 7\)"):
        Trainer(TinyLM(), loss="cross_entropy", lr=1e-2, **quiet(tmp_path)).fit((ids, targets))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_loss_callable_gets_outputs_and_targets_as_given_and_validation_works(tmp_path):
    seen = []

    def token_loss(outputs, targets):
        seen.append((tuple(outputs.shape), tuple(targets.shape)))
        return F.cross_entropy(outputs.transpose(1, 2), targets, ignore_index=-100)

    ids, targets = ragged(n=20)
    trainer = Trainer(TinyLM(), loss=token_loss, epochs=2, lr=1e-2, batch_size=10, **quiet(tmp_path))
    result = trainer.fit((ids, targets), (ids, targets))
    assert set(seen) == {((10, T, V), (10, T)), ((20, T, V), (20, T))}  # training and validation batches, as given
    assert result.history[-1]["val_accuracy"] >= 0 and trainer.task == "classification"


def test_soft_labels_train_against_class_probabilities(tmp_path):
    torch.manual_seed(4)
    x = torch.randn(40, 5)
    soft = torch.softmax(torch.randn(40, 3), dim=1)
    model = nn.Linear(5, 3)
    trainer = Trainer(model, loss="cross_entropy", epochs=1, lr=1e-2, **quiet(tmp_path))
    trainer.fit((x, soft))
    assert trainer.loss_rule.soft_labels
    with torch.no_grad():
        expected = F.cross_entropy(model(x), soft).item()
    assert trainer.evaluate((x, soft))["loss"] == pytest.approx(expected, rel=1e-5)


def test_ignored_labels_count_nowhere_in_per_sample_classification(tmp_path):
    torch.manual_seed(5)
    model = nn.Linear(4, 3)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    y[::3] = -100
    trainer = Trainer(model, loss="cross_entropy", **quiet(tmp_path))
    figures = trainer.evaluate((x, y))
    with torch.no_grad():
        logits = model(x)
    kept = y != -100
    assert figures["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert figures["accuracy"] == pytest.approx((logits.argmax(1)[kept] == y[kept]).float().mean().item())


def test_a_gru_language_model_learns_a_repeating_pattern(tmp_path):
    torch.manual_seed(6)
    pattern = torch.tensor([0, 3, 1, 4, 2, 5])
    starts = torch.randint(0, len(pattern), (160,))
    seq = pattern[(starts[:, None] + torch.arange(T + 1)[None, :]) % len(pattern)]
    ids, targets = seq[:, :-1].clone(), seq[:, 1:].clone()
    targets[::4, -2:] = -100  # some sequences end early
    train, val = (ids[:128], targets[:128]), (ids[128:], targets[128:])
    trainer = Trainer(GRULM(), loss="cross_entropy", epochs=6, lr=1e-2, batch_size=16, **quiet(tmp_path))
    before = trainer.evaluate(val)["loss"]
    result = trainer.fit(train, val)
    after = result.history[-1]["val_loss"]
    assert after < before / 2, (before, after)
    assert result.history[-1]["val_accuracy"] > 0.9 and "val_perplexity" in result.history[-1]
