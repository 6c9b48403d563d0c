"""Causal LM labels (``labels == input_ids``, Hugging Face's way): the output at position t is scored
against the target at t + 1 in the metrics, trainwise's own loss and the token counts
(``shift_labels``). The models here are tiny causal LMs returning HF-like outputs (``.logits`` and
``.loss``); every accuracy and loss is computed by hand from the data."""

import json
import math
from dataclasses import dataclass
from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from trainwise import Trainer
from trainwise.config.schema import load_config
from trainwise.engine.label_shift import shift_targets
from trainwise.errors import ConfigError, DataError

V = 8  # vocabulary
PAD = -100


@dataclass
class CausalLMOutput:  # what transformers' CausalLMOutput gives: .loss and .logits
    logits: torch.Tensor
    loss: Optional[torch.Tensor] = None


class NextTokenOracle(nn.Module):
    """Predicts token + 1 (mod V) with a margin of 5 logits; its own loss is HF's shifted one
    (``logits[:, :-1]`` against ``labels[:, 1:]``) unless ``shift_in_loss`` is False."""

    def __init__(self, shift_in_loss=True, extra_loss=0.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(V))
        self.shift_in_loss, self.extra_loss = shift_in_loss, extra_loss

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = 5.0 * F.one_hot((input_ids + 1) % V, V).float() + self.bias
        loss = None
        if labels is not None:
            scored, targets = (logits[:, :-1], labels[:, 1:]) if self.shift_in_loss else (logits, labels)
            loss = F.cross_entropy(scored.reshape(-1, V), targets.reshape(-1), ignore_index=PAD) + self.extra_loss
        return CausalLMOutput(logits=logits, loss=loss)


class LogitsOnly(NextTokenOracle):
    def forward(self, input_ids, attention_mask=None):
        return super().forward(input_ids).logits


class TokenDicts(Dataset):
    """HF-style samples: input_ids, attention_mask, labels = input_ids with padding set to -100."""

    def __init__(self, rows, lengths):
        self.ids = torch.tensor(rows)
        self.mask = (torch.arange(self.ids.shape[1]) < torch.tensor(lengths)[:, None]).long()
        self.labels = torch.where(self.mask.bool(), self.ids, torch.tensor(PAD))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


# Row 0: transitions 0>1 1>2 2>5 5>6 6>7, one of them not +1: 4 of 5 right when shifted.
# Row 1: two real tokens 3>4 (right), then padding: 1 of 1. Shifted: 5 of 6. Aligned: the oracle
# predicts token + 1 at the token's own position, never the token: 0 of 7.
ROWS, LENGTHS = [[0, 1, 2, 5, 6, 7], [3, 4, 0, 0, 0, 0]], [6, 2]
RIGHT = math.log(1 + (V - 1) * math.exp(-5))  # cross-entropy where the oracle is right
WRONG = math.log(math.exp(5) + V - 1)  # ... and where it puts its margin on another token


def quiet(tmp_path, name="run", **kwargs):
    return dict(run_dir=tmp_path / name, progress=False, report=False, eval_batch_size=1, **kwargs)


def test_shift_targets_pads_the_last_position_with_ignore_index():
    targets = torch.tensor([[1, 2, 3], [4, PAD, PAD]])
    assert shift_targets(targets, PAD).tolist() == [[2, 3, PAD], [PAD, PAD, PAD]]


def test_a_causal_lm_with_its_own_loss_is_measured_on_shifted_positions(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(NextTokenOracle(), optimizer="sgd", lr=1e-9, epochs=1, batch_size=2, **quiet(tmp_path))
    result = trainer.fit(data, data)
    assert trainer.loss_rule.source == "model" and trainer.loss_rule.shift_labels is True
    assert result.history[-1]["val_accuracy"] == 5 / 6
    assert result.history[-1]["val_loss"] == pytest.approx((5 * RIGHT + WRONG) / 6, rel=1e-6)
    recorded = json.loads((tmp_path / "run" / "data.json").read_text())
    assert recorded["loss_rule"]["shift_labels"] is True
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert any(e["kind"] == "shift_labels" for e in summary["events"]), summary["events"]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "shift_labels: auto" in config


def test_trainwise_loss_of_a_logits_only_causal_lm_is_shifted_too(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", optimizer="sgd", lr=1e-9, epochs=1, batch_size=2,
                      **quiet(tmp_path))
    metrics = trainer.evaluate(data)
    assert trainer.loss_rule.source == "named" and trainer.loss_rule.shift_labels is True
    assert metrics["accuracy"] == 5 / 6
    assert metrics["loss"] == pytest.approx((5 * RIGHT + WRONG) / 6, rel=1e-6)


def test_shift_labels_false_scores_targets_as_given(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", shift_labels=False, lr=1e-9, optimizer="sgd",
                      **quiet(tmp_path))
    metrics = trainer.evaluate(data)
    assert trainer.loss_rule.shift_labels is False
    assert metrics["accuracy"] == 0.0  # 0 of 7: the oracle never predicts the token at its own position
    assert metrics["loss"] == pytest.approx(WRONG, rel=1e-6)


def test_data_already_shifted_is_not_shifted_again(tmp_path):
    """nanoGPT's way (y[t] = x[t + 1]): the targets do not repeat the inputs, so auto leaves them."""
    x = torch.tensor([[0, 1, 2, 5, 6], [3, 4, 5, 6, 0]])
    y = torch.tensor([[1, 2, 5, 6, 7], [4, 5, 6, 7, PAD]])  # 4 of 5 and 4 of 4 right: 8 of 9
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", lr=1e-9, optimizer="sgd", **quiet(tmp_path))
    metrics = trainer.evaluate((x, y))
    assert trainer.loss_rule.shift_labels is False
    assert metrics["accuracy"] == 8 / 9


def test_shift_labels_true_shifts_tuple_batches_and_refuses_one_target_per_sample(tmp_path):
    x = torch.tensor([[0, 1, 2, 5, 6], [3, 4, 5, 6, 0]])
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", shift_labels=True, lr=1e-9, optimizer="sgd",
                      **quiet(tmp_path))
    assert trainer.evaluate((x, x.clone()))["accuracy"] == 6 / 8  # 2>5 and 6>0 are not +1: 3 of 4 twice

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x)

    trainer = Trainer(Classifier(), shift_labels=True, **quiet(tmp_path, "classifier"))
    with pytest.raises(DataError, match=r"shift_labels=True needs integer targets of shape \(N, T\).*got \(\d+,\) \(torch.int64\)"):
        trainer.evaluate((torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])))


def test_a_model_loss_scoring_positions_aligned_is_followed_with_a_warning(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(NextTokenOracle(shift_in_loss=False), lr=1e-9, optimizer="sgd", **quiet(tmp_path))
    metrics = trainer.evaluate(data)
    assert trainer.loss_rule.shift_labels is False and metrics["accuracy"] == 0.0
    assert any("learns to copy its input" in w for w in trainer.state.warnings)


def test_a_model_loss_matching_neither_is_refused_before_training(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(NextTokenOracle(extra_loss=0.5), lr=1e-9, optimizer="sgd", epochs=1, **quiet(tmp_path))
    with pytest.raises(DataError, match=r"matches neither the shifted cross-entropy .* pass shift_labels=True") as err:
        trainer.fit(data, data)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "metrics.csv").exists()
    trainer = Trainer(NextTokenOracle(extra_loss=0.5), shift_labels=True, lr=1e-9, optimizer="sgd", epochs=1,
                      **quiet(tmp_path, "told"))
    assert trainer.fit(data, data).history[-1]["val_accuracy"] == 5 / 6


def test_a_loss_callable_on_labels_equal_to_inputs_must_say_whether_to_shift(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)

    def token_loss(outputs, targets):
        return F.cross_entropy(outputs.reshape(-1, V), targets.reshape(-1), ignore_index=PAD)

    trainer = Trainer(LogitsOnly(), loss=token_loss, lr=1e-9, optimizer="sgd", **quiet(tmp_path))
    with pytest.raises(DataError, match=r"loss is your callable, which may shift them itself"):
        trainer.evaluate(data)
    trainer = Trainer(LogitsOnly(), loss=token_loss, task="classification", shift_labels=True, lr=1e-9,
                      optimizer="sgd", **quiet(tmp_path, "told"))
    metrics = trainer.evaluate(data)
    assert metrics["accuracy"] == 5 / 6
    # a callable's mean counts once per sample (batches of one here): row 0 (4 right, 1 wrong), row 1 (1 right)
    assert metrics["loss"] == pytest.approx(((4 * RIGHT + WRONG) / 5 + RIGHT) / 2, rel=1e-6)


class TinyCausalLM(nn.Module):
    """A real (trainable) causal LM: each position sees its token and the one before it."""

    def __init__(self):
        super().__init__()
        self.embed, self.prev = nn.Embedding(V, 16), nn.Embedding(V, 16)
        self.head = nn.Linear(16, V)

    def forward(self, input_ids, attention_mask=None, labels=None):
        before = F.pad(input_ids, (1, 0))[:, :-1]
        logits = self.head(torch.tanh(self.embed(input_ids) + self.prev(before)))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=PAD)
        return CausalLMOutput(logits=logits, loss=loss)


def test_a_trained_causal_lm_reports_the_accuracy_of_its_next_token_predictions(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, V, (64, 1), generator=g)
    rows = ((starts + torch.arange(7)) % V).tolist()  # counting sequences: the next token is token + 1
    lengths = torch.randint(2, 8, (64,), generator=g).tolist()
    data = TokenDicts(rows, lengths)
    model = TinyCausalLM()
    result = Trainer(model, lr=3e-2, epochs=12, batch_size=16, **quiet(tmp_path)).fit(data, data)
    model.eval()
    with torch.no_grad():
        logits = model(data.ids).logits
    counted = data.labels[:, 1:] != PAD
    by_hand = ((logits[:, :-1].argmax(-1) == data.labels[:, 1:]) & counted).sum().item() / counted.sum().item()
    assert result.history[-1]["val_accuracy"] == pytest.approx(by_hand, abs=1e-12)
    assert by_hand > 0.9  # learned: the accuracy is the next token's, not the copy's


def test_the_config_key_takes_true_false_or_auto(tmp_path):
    assert load_config(None, ["train.shift_labels=true"]).train.shift_labels is True
    assert load_config(None, []).train.shift_labels == "auto"
    with pytest.raises(ConfigError, match="shift_labels"):
        load_config(None, ["train.shift_labels=sometimes"])
    with pytest.raises(ConfigError, match=r"shift_labels must be true, false or 'auto', got 'yes'"):
        Trainer(nn.Linear(2, 2), shift_labels="yes")


def test_auto_does_not_shift_on_a_first_batch_that_cannot_tell(tmp_path):
    """Rows of one repeated token look the same shifted or not: auto does not shift on them."""
    x = torch.tensor([[2, 2, 2, 2], [5, 5, 5, 5]])
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", lr=1e-9, optimizer="sgd", **quiet(tmp_path))
    trainer.evaluate((x, x.clone()))
    assert trainer.loss_rule.shift_labels is False


def test_loss_of_scores_predictions_as_the_run_does(tmp_path):
    data = TokenDicts(ROWS, LENGTHS)
    trainer = Trainer(LogitsOnly(), loss="cross_entropy", lr=1e-9, optimizer="sgd", **quiet(tmp_path))
    trainer.evaluate(data)  # decides the rule: shifted
    logits = LogitsOnly()(data.ids)
    assert float(trainer.loss_of(logits, data.labels, None)) == pytest.approx((5 * RIGHT + WRONG) / 6, rel=1e-6)
