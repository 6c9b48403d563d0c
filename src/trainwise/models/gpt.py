"""A small GPT (nanoGPT-class decoder): token and position embeddings, causal self-attention
blocks, a final LayerNorm and a head tied to the token embedding.

Blocks are pre-norm by default (``x + attn(ln(x))``, GPT-2's and the guides' "modern standard");
``norm_position="post"`` gives the original Transformer's ``ln(x + attn(x))`` for comparison.
Attention goes through ``F.scaled_dot_product_attention`` with ``is_causal=True`` (a fused
kernel where there is one). The model owns no init: ``init: gpt`` (``trainwise.models.init``) sets
every weight normal(0, 0.02) and the residual projections (``c_proj``) 0.02/sqrt(2·layers).

Example:
    >>> model = GPT(vocab_size=65, block_size=32, layers=2, heads=2, width=64)
    >>> model(torch.zeros(3, 32, dtype=torch.long)).shape
    torch.Size([3, 32, 65])
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainwise.checks import check_choice, check_int
from trainwise.errors import ConfigError, DataError

NORM_POSITIONS = ("pre", "post")


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)  # ends a residual branch: scaled by init gpt
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (part.view(n, t, self.heads, c // self.heads).transpose(1, 2) for part in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(n, t, c)))


class MLP(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, norm_position: str) -> None:
        super().__init__()
        self.pre_norm = norm_position == "pre"
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """A decoder-only transformer over token ids ``(N, T)`` returning logits ``(N, T, vocab_size)``.

    Args:
        vocab_size: ids in the vocabulary (the data's tokenizer).
        block_size: the longest context; ``T`` may be shorter (generation grows from a prompt).
        layers, heads, width: blocks, attention heads, embedding width (``width % heads == 0``).
        dropout: on embeddings, attention weights and residual branches.
        norm_position: ``pre`` (LayerNorm before each branch, and a final LayerNorm) or ``post``.
        tie_weights: share the token embedding with the output head (GPT-2; fewer parameters).
    """

    trainwise_activation = "gelu"

    def __init__(self, vocab_size: int, block_size: int, *, layers: int = 4, heads: int = 4, width: int = 128,
                 dropout: float = 0.0, norm_position: str = "pre", tie_weights: bool = True) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("block_size", block_size), ("model.layers", layers),
                            ("model.heads", heads), ("model.width", width)):
            check_int(name, value, 1)
        check_choice("model.norm_position", norm_position, NORM_POSITIONS)
        if width % heads:
            raise ConfigError(f"model.width must be a multiple of model.heads, got width {width} and heads {heads}; "
                              f"try width {heads * max(1, round(width / heads))}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block_size, width)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(width, heads, dropout, norm_position) for _ in range(layers))
        # Post-norm blocks end in a LayerNorm already; pre-norm ones need one before the head.
        self.ln_f = nn.LayerNorm(width) if norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.is_floating_point():
            raise DataError(f"GPT takes integer token ids of shape (N, T), got {tuple(ids.shape)} {ids.dtype}")
        t = ids.shape[1]
        if t > self.block_size:
            raise DataError(f"a sequence of {t} tokens is longer than the model's block size {self.block_size}; "
                            "crop it to the last block_size tokens")
        positions = torch.arange(t, device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, new_tokens: int, *, temperature: float = 1.0, top_k: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``ids`` ``(N, T)`` followed by ``new_tokens`` sampled ids, each from the last block's logits
        divided by ``temperature`` (0: the most likely id), among the ``top_k`` most likely ones."""
        for _ in range(new_tokens):
            logits = self(ids[:, -self.block_size:])[:, -1, :].float()
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probabilities = F.softmax(logits, dim=-1)
                next_id = torch.multinomial(probabilities.cpu(), 1, generator=generator).to(ids.device)
            ids = torch.cat([ids, next_id], dim=1)
        return ids
