"""``trainwise generate RUN --prompt TEXT --tokens N``: text sampled from a language-model run."""

from __future__ import annotations

import argparse
import json

import torch

from trainwise.data.text import tokenizer_from_dict
from trainwise.errors import ConfigError, DataError
from trainwise.runfolder.saved import load_saved_run, rebuild_model


def generate(args: argparse.Namespace) -> int:
    """Print the prompt followed by ``--tokens`` sampled tokens from the run's checkpoint."""
    if args.tokens < 0:
        raise ConfigError(f"--tokens must be >= 0, got {args.tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0 (0: always the most likely token), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if not args.prompt:
        raise ConfigError("--prompt is empty; give the text to continue, at least one character")
    run = load_saved_run(args.run_dir, args.checkpoint)
    saved = run.folder / "tokenizer.json"
    if not saved.is_file():
        raise DataError(f"{run.folder} has no tokenizer.json: generate continues text with a run trained on "
                        "data.dataset: text (model gpt)")
    tokenizer = tokenizer_from_dict(json.loads(saved.read_text(encoding="utf-8")))
    ids = torch.tensor([tokenizer.encode(args.prompt)], dtype=torch.long)
    model = rebuild_model(run)
    if not hasattr(model, "generate"):
        raise ConfigError(f"the run's model {run.cfg.model.name!r} cannot generate; generate needs model gpt")
    generator = torch.Generator().manual_seed(args.seed)
    out = model.generate(ids, args.tokens, temperature=args.temperature, top_k=args.top_k, generator=generator)
    print(tokenizer.decode(out[0].tolist()))
    return 0
