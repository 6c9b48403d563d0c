"""Figure 3 — against PyTorch Lightning: per-step time of ``lightning.Trainer`` over trainwise's.

The same model (same seed and init), AdamW in the same parameter groups and a 1cycle schedule
stepped every update, on MNIST, cases (a) MLP at batch 64 and (b) the CNN of
``examples/mnist.yaml`` at batch 128. Lightning gets the data as a Lightning user writes it, a
``DataLoader(TensorDataset(x, y), shuffle=True)``, a ``LightningModule`` whose
``training_step`` returns the loss and ``torch.optim.lr_scheduler.OneCycleLR`` at
``interval="step"``, and runs as Lightning's own parity benchmark does: ``logger=False``,
``enable_checkpointing=False``, ``enable_progress_bar=False``, ``enable_model_summary=False``.
trainwise runs with its defaults on (early stopping, checkpoints, the non-finite guard, metric
logging, the progress bar). The relay alternates them in blocks inside one epoch. Figure: median
over rounds of Lightning's block time / trainwise's. Target: >= 1.5 on (a), >= 1.0 on (b).

Needs ``pip install -r benchmarks/requirements.txt`` (lightning).

    .venv/bin/python benchmarks/vs_lightning.py             # writes results/vs_lightning.json
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import common  # noqa: E402

TARGETS = {"mlp": 1.5, "cnn": 1.0}
FULL = {"mlp": (500, 100, 10, 4), "cnn": (34, 4, 2, 4)}  # steps, warm-up, block, repeats
QUICK = {"mlp": (12, 2, 5, 1), "cnn": (12, 2, 5, 1)}


def lightning_fit(case: common.Case, loader: DataLoader, *, steps: int, tick: Any, device: torch.device,
                  precision: str) -> None:
    """Train ``case``'s model through ``lightning.Trainer`` for ``steps`` steps."""
    import lightning

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = case.build()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def configure_optimizers(self) -> Any:
            optimizer = common.make_optimizer(self.model)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=common.LR, total_steps=steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    class Tick(lightning.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            tick()

    trainer = lightning.Trainer(max_steps=steps, accelerator=device.type, devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                precision={"fp32": "32-true", "bf16": "bf16-mixed"}[precision], callbacks=[Tick()])
    trainer.fit(Classifier(), loader)


def measure_case(case: common.Case, bundle: Any, plan: tuple[int, int, int, int], device: torch.device,
                 precision: str) -> dict[str, Any]:
    steps, warmup, block, repeats = plan
    x, y = bundle.train
    val = tuple(t.to(device) for t in bundle.val)
    blocks: dict[str, list[common.StepTimes]] = {"lightning": [], "trainwise": []}

    def ticks(name: str) -> Any:
        return lambda: relay.tick(name)

    for repeat in range(repeats):
        names = ["lightning", "trainwise"] if repeat % 2 == 0 else ["trainwise", "lightning"]
        relay = common.Relay(names, block=block, steps=steps, warmup=warmup)
        loader = DataLoader(TensorDataset(x, y), batch_size=case.batch_size, shuffle=True,
                            pin_memory=device.type == "cuda")
        contestants = {
            "lightning": lambda: lightning_fit(case, loader, steps=steps, tick=ticks("lightning"),
                                               device=device, precision=precision),
            "trainwise": lambda: common.trainwise_fit(case.build(), (x.to(device), y.to(device)), val,
                                                      steps=steps, batch_size=case.batch_size, device=device,
                                                      precision=precision,
                                                      callbacks=[common.tick_callback(ticks("trainwise"))]),
        }
        for name, timed in relay.run(contestants).items():
            blocks[name] += timed
    ratios = common.compare(blocks, "lightning", "trainwise")
    figure = ratios[common.PRIMARY_ESTIMATOR]["median"]
    return {"case": case.description, "speedup": figure, "target": f">= {TARGETS[case.name]}",
            "meets_target": figure >= TARGETS[case.name], "ratios": ratios, "per_step": common.summarize_steps(blocks),
            "config": {"steps": steps, "warmup": warmup, "block": block, "repeats": repeats, "precision": precision}}


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(FULL), default=["mlp", "cnn"])
    args = parser.parse_args(argv)
    try:
        import lightning  # noqa: F401 - imported first: it sets up its loggers, quieted below
    except ImportError:
        print("vs_lightning needs lightning: .venv/bin/pip install -r benchmarks/requirements.txt", file=sys.stderr)
        return 2
    common.quiet_logs()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    common.pin_threads(args.threads)
    device = common.resolve_device(args.device)
    precision = "fp32" if device.type == "cpu" else "bf16"
    bundle = common.load_mnist(args.mnist_root)
    plans = QUICK if args.quick else FULL
    cases = {name: measure_case(common.CASES[name], bundle, plans[name], device, precision) for name in args.cases}
    threads_after = torch.get_num_threads()
    headline = "  ".join(f"({'a' if name == 'mlp' else 'b'}) {name} {case['speedup']:.2f}x"
                         for name, case in cases.items())
    payload = {"figure": "Lightning step time / trainwise step time (trainwise's speedup)", "headline": headline,
               "target": ">= 1.5 on (a) mlp, >= 1.0 on (b) cnn",
               "meets_target": all(case["meets_target"] for case in cases.values()), "cases": cases,
               "lightning_setup": "Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, "
                                  "enable_model_summary=False), DataLoader(TensorDataset, shuffle=True)",
               "torch_threads_after_lightning": threads_after,
               "machine": common.machine_info(), "quick": args.quick, "device": str(device)}
    common.write_result(args.out, common.result_name("vs_lightning", device), payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
