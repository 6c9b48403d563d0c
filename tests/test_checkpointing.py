"""Gradient checkpointing of the built-in models (``model.checkpointing: true``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainwise.errors import ConfigError
from trainwise.models import build_model
from trainwise.models.checkpointing import saved_activation_bytes

CASES = {
    "mlp": dict(input_shape=(1, 8, 8), hidden=[32, 32, 32], norm="batch", dropout=0.2),
    "cnn": dict(input_shape=(1, 12, 12), channels=[4, 8], hidden=[16], norm="batch", dropout=0.2),
    "resnet": dict(input_shape=(1, 12, 12), channels=[4, 8, 8], norm="batch", dropout=0.2),
}


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    models = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        models.append(build_model(name, num_outputs=5, checkpointing=checkpointing, **CASES[name]))
    return models[0], models[1]


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same dropout masks for both
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("name", sorted(CASES))
def test_checkpointing_gives_identical_losses_gradients_and_batch_norm_statistics(name):
    plain, checkpointed = _pair(name)
    x, y = torch.randn(16, *CASES[name]["input_shape"]), torch.randint(0, 5, (16,))
    assert torch.equal(_step(plain, x, y), _step(checkpointed, x, y))
    for (key, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=0, msg=key)
    plain_state, checkpointed_state = plain.state_dict(), checkpointed.state_dict()
    assert list(plain_state) == list(checkpointed_state)  # same names: checkpoints load either way
    for key, value in plain_state.items():
        assert torch.equal(value, checkpointed_state[key]), key  # running stats updated once, not twice


@pytest.mark.parametrize("name", sorted(CASES))
def test_checkpointing_keeps_less_for_backward(name):
    plain, checkpointed = _pair(name)
    x, y = torch.randn(32, *CASES[name]["input_shape"]), torch.randint(0, 5, (32,))
    assert saved_activation_bytes(checkpointed, x, y) < 0.7 * saved_activation_bytes(plain, x, y)


def test_evaluation_needs_no_checkpointing_and_gives_the_same_outputs():
    plain, checkpointed = _pair("resnet")
    plain.eval(), checkpointed.eval()
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(plain(x), checkpointed(x))


def test_checkpointing_a_model_it_does_not_apply_to_is_refused():
    with pytest.raises(ConfigError, match="model.checkpointing applies to the built-in mlp, cnn, resnet, got model "
                                          "'gru'"):
        build_model("gru", input_shape=(40,), num_outputs=10, checkpointing=True)
