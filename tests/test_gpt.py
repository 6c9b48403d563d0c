"""The small GPT: loss at initialization, causality, init gpt, weight tying, AdamW groups, sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainwise.errors import ConfigError, DataError
from trainwise.models import build_model
from trainwise.models.gpt import GPT
from trainwise.models.init import initialize
from trainwise.optim import build_optimizer

VOCAB, BLOCK = 65, 16


def tiny(norm_position: str = "pre", layers: int = 2) -> GPT:
    torch.manual_seed(0)
    model = build_model("gpt", input_shape=(BLOCK,), num_outputs=VOCAB, layers=layers, heads=2, width=32,
                        norm_position=norm_position)
    initialize(model, "gpt")
    return model


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_loss_at_initialization_is_ln_vocabulary(norm_position):
    model = tiny(norm_position)
    ids = torch.randint(VOCAB, (64, BLOCK + 1), generator=torch.Generator().manual_seed(1))
    logits = model(ids[:, :-1])
    assert logits.shape == (64, BLOCK, VOCAB)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1)).item()
    assert loss == pytest.approx(math.log(VOCAB), rel=0.02)


def test_init_gpt_scales_the_residual_projections():
    model = tiny(layers=3)
    report = initialize(model, "gpt")
    assert report["residual_std"] == pytest.approx(0.02 / math.sqrt(2 * 3))
    projections = torch.cat([b.attn.c_proj.weight.flatten() for b in model.h] +
                            [b.mlp.c_proj.weight.flatten() for b in model.h])
    assert projections.std().item() == pytest.approx(0.02 / math.sqrt(6), rel=0.1)
    assert model.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.lm_head.weight is model.wte.weight  # tied


def test_attention_is_causal():
    model = tiny().eval()
    ids = torch.randint(VOCAB, (1, BLOCK))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % VOCAB
    with torch.no_grad():
        assert torch.allclose(model(ids)[0, :10], model(changed)[0, :10], atol=1e-6)
        assert not torch.allclose(model(ids)[0, 10:], model(changed)[0, 10:])
    assert model(ids[:, :5]).shape == (1, 5, VOCAB)  # a shorter context works


def test_adamw_groups_leave_biases_norms_and_embeddings_undecayed():
    model = tiny()
    optimizer = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1)
    groups = {g["name"]: g for g in optimizer.param_groups}
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.1
    assert {"wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.bias"} <= no_decay
    assert decay == {n for n in names.values() if n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))  # tied once


def test_generate_is_deterministic_under_a_seed():
    model = tiny().eval()
    prompt = torch.tensor([[1, 2, 3]])

    def sample(seed: int, **options) -> list[int]:
        return model.generate(prompt, 30, generator=torch.Generator().manual_seed(seed), **options)[0].tolist()

    assert sample(0) == sample(0) and sample(0) != sample(1)
    assert len(sample(0)) == 33 and sample(0)[:3] == [1, 2, 3]
    top1 = sample(5, top_k=1)
    assert top1 == sample(6, temperature=0)  # top-1 sampling is the greedy choice
    assert len(model.generate(prompt, 40)[0]) == 43  # longer than the block: the context is cropped


def test_bad_settings_and_inputs():
    with pytest.raises(ConfigError, match="model.width must be a multiple of model.heads, got width 30 and heads 4"):
        GPT(10, 8, heads=4, width=30)
    with pytest.raises(ConfigError, match="model gpt takes token windows of shape \\(block_size,\\)"):
        build_model("gpt", input_shape=(1, 8, 8), num_outputs=10)
    with pytest.raises(DataError, match="longer than the model's block size 16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(DataError, match="integer token ids"):
        tiny()(torch.zeros(1, 4))
