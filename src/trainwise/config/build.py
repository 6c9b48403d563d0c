"""Config → objects: the one place where a ``RunConfig`` becomes data, a model and a Trainer (used by
the CLI, search and studies alike)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from trainwise.config.disk_data import load_disk_bundle, num_workers_of
from trainwise.config.schema import RunConfig
from trainwise.data import DataBundle, build_augment, load_data
from trainwise.callbacks import CheckpointSaver
from trainwise.engine.nonfinite import NonFiniteGuard
from trainwise.errors import ConfigError
from trainwise.models.init import initialize
from trainwise.models import activation_of, build_model
from trainwise.optim import build_optimizer, scale_lr
from trainwise.trainer import Trainer, resolve_device

log = logging.getLogger(__name__)
DISK_DATASETS = ("text", "imagefolder")  # read by trainwise.config.disk_data


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_bundle(cfg: RunConfig) -> DataBundle:
    d = cfg.data
    if d.dataset in DISK_DATASETS:
        return load_disk_bundle(cfg, pin_memory=device_of(cfg).type == "cuda")
    return load_data(d.dataset, root=d.root, path=d.path, target=d.target, task=d.task,
                     drop_columns=d.drop_columns or None, missing=d.missing,
                     val_fraction=d.val_fraction, test_fraction=d.test_fraction, normalize=d.normalize,
                     standardize_target=d.standardize_target, seed=cfg.seed)


def make_model(cfg: RunConfig, bundle: DataBundle) -> torch.nn.Module:
    """The config's model, seeded and initialized (LSUV sees a batch of training inputs)."""
    m = cfg.model
    model = make_bare_model(cfg, tuple(bundle.input_shape), bundle.num_outputs)
    if m.init == "lsuv" and not bundle.in_memory:
        raise ConfigError(f"model.init=lsuv needs data held in memory, got data.dataset={cfg.data.dataset!r} read "
                          "from disk; choose another model.init")
    sample = bundle.train[0][:512] if m.init == "lsuv" else None
    scheme = "gpt" if m.name == "gpt" and m.init == "auto" else m.init  # GPT-2's init, scaled residuals
    initialize(model, scheme, activation=activation_of(model), sample_input=sample)
    return model


def make_bare_model(cfg: RunConfig, input_shape: tuple[int, ...], num_outputs: int) -> torch.nn.Module:
    """The config's model before initialization: for loading a checkpoint into."""
    m = cfg.model
    seed_everything(cfg.seed)
    return build_model(m.name, input_shape=input_shape, num_outputs=num_outputs, hidden=m.hidden, norm=m.norm,
                       dropout=m.dropout, activation=m.activation, channels=m.channels,
                       kernel_size=m.kernel_size, pool=m.pool, args=m.args, checkpointing=m.checkpointing,
                       layers=m.layers, heads=m.heads, width=m.width, norm_position=m.norm_position)


def loss_name(cfg: RunConfig, bundle: DataBundle) -> str:
    if cfg.loss.name is not None:
        return cfg.loss.name
    if cfg.train.loss is not None:
        return cfg.train.loss
    return "cross_entropy" if bundle.task == "classification" else "mse"


def class_weights_of_config(cfg: RunConfig) -> Any:
    """``loss.class_weights``, else the older ``data.class_weights``."""
    return cfg.loss.class_weights if cfg.loss.class_weights is not None else cfg.data.class_weights


def scaled_lr(cfg: RunConfig, lr: float) -> float:
    o = cfg.optimizer
    if o.lr_scaling == "none":
        return lr
    if o.base_batch_size is None:
        raise ConfigError(f"optimizer.lr_scaling={o.lr_scaling} needs optimizer.base_batch_size, "
                          "the batch size the lr was tuned for")
    effective = cfg.data.batch_size * cfg.train.accumulate
    return scale_lr(lr, batch_size=effective, base_batch_size=o.base_batch_size, rule=o.lr_scaling)


def make_optimizer(cfg: RunConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    o = cfg.optimizer
    return build_optimizer(model, o.name, lr=lr, weight_decay=o.weight_decay, momentum=o.momentum,
                           nesterov=o.nesterov, betas=tuple(o.betas), eps=o.eps, layer_lr_decay=o.layer_lr_decay,
                           param_groups=o.param_groups)


def make_trainer(cfg: RunConfig, bundle: DataBundle, model: torch.nn.Module, run_dir: Optional[Path], *,
                 progress: bool = True, callbacks: Sequence[Any] = ()) -> Trainer:
    """The config's Trainer. ``optimizer.lr: auto`` is resolved by the Trainer (the range test runs
    at the start of fit, and the lr it chose goes into config.yaml). ``callbacks`` are added to the
    config's own (a search's trial reporter, the profiler's; studies measure with them)."""
    finder = resolve_batch_size(cfg, bundle, model)
    t, d = cfg.train, cfg.data
    lr: Any = "auto" if cfg.optimizer.lr == "auto" else scaled_lr(cfg, float(cfg.optimizer.lr))
    augment = None  # data read from disk is augmented in its DataLoader workers (trainwise.config.disk_data)
    if d.augment and bundle.in_memory:
        augment = build_augment(d.augment, dataset=d.dataset, input_shape=bundle.input_shape)
    es = t.early_stopping
    early_stopping: Any = False
    if es.enabled and bundle.val is not None:
        from trainwise.callbacks import EarlyStopping

        early_stopping = EarlyStopping(es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta,
                                       restore_best=es.restore_best)
    callbacks = list(callbacks)
    if bundle.tokenizer is not None and bundle.val is not None:
        from trainwise.callbacks.token_figures import TokenFigures

        callbacks.append(TokenFigures(bundle.details.get("chars_per_token", 1.0)))
    if cfg.optimizer.freeze:
        from trainwise.callbacks import ModuleFreezer

        callbacks.append(ModuleFreezer(cfg.optimizer.freeze))
    schedule_params = cfg.schedule.params()
    schedule_params.update(warmup_mode=cfg.schedule.warmup_mode, warmup_start_factor=cfg.schedule.warmup_start_factor)
    classification = bundle.task == "classification"
    trainer = Trainer(
        model, loss=loss_name(cfg, bundle), optimizer=make_optimizer(cfg, model, 1e-3 if lr == "auto" else lr),
        lr=lr, lr_find=cfg.train.lr_find.model_dump(), schedule=cfg.schedule.name, schedule_params=schedule_params,
        warmup=cfg.schedule.warmup,
        schedule_monitor=cfg.schedule.monitor, cycle_momentum=True, epochs=t.epochs, max_steps=t.max_steps,
        batch_size=d.batch_size, eval_batch_size=d.eval_batch_size, accumulate=t.accumulate, grad_clip=t.grad_clip,
        grad_clip_mode=t.grad_clip_mode, precision=t.precision, device=t.device, early_stopping=early_stopping,
        callbacks=callbacks, monitor=es.monitor if bundle.val is not None else "train_loss", run_dir=run_dir,
        mode=es.mode if bundle.val is not None else "auto",
        name=cfg.name, seed=cfg.seed, label_smoothing=t.label_smoothing, shift_labels=t.shift_labels,
        class_weights=class_weights_of_config(cfg) if classification else None, augment=augment,
        sampler=d.sampler, focal_gamma=cfg.loss.gamma,
        target_normalization=getattr(bundle, "target_normalization", None),
        class_names=bundle.class_names if classification else None,
        checkpoint=CheckpointSaver(every_n_steps=t.checkpoint.every_n_steps, every_epoch=t.checkpoint.every_epoch,
                                   keep_last=t.checkpoint.keep_last), report=t.report,
        on_nonfinite=NonFiniteGuard(t.on_nonfinite, max_rollbacks=t.max_rollbacks, lr_factor=t.rollback_lr_factor),
        spike_factor=t.spike_factor, val_every_n_steps=t.val_every_n_steps,
        log_every_n_steps=t.log_every_n_steps, progress=progress, config=cfg.to_dict(), loggers=_loggers(cfg),
        sync_batchnorm=t.sync_batchnorm, compile=t.compile, channels_last=t.channels_last,
        num_workers=num_workers_of(cfg),
    )
    if finder is not None:
        trainer.summary_extra["batch_size_finder"] = finder
    for key in ("skipped_images", "skipped_files"):  # an image folder's corrupt files, named and counted
        if key in bundle.details:
            trainer.summary_extra[key] = bundle.details[key]
    return trainer


def resolve_batch_size(cfg: RunConfig, bundle: DataBundle, model: torch.nn.Module) -> Optional[dict[str, Any]]:
    """``data.batch_size: auto``: run the batch-size finder and write its answer into ``cfg``
    (``data.batch_size``, and ``train.accumulate`` when ``data.effective_batch_size`` is set, so the
    effective batch is the one asked for). Returns the finder's record, or None with a number."""
    d = cfg.data
    if d.batch_size == "auto" and not bundle.in_memory:
        raise ConfigError(f"data.batch_size=auto needs data held in memory, got data.dataset={d.dataset!r} read from "
                          "disk; run trainwise find-batch-size on a smaller copy, or give data.batch_size a number")
    if d.batch_size != "auto":
        if d.effective_batch_size is not None:
            raise ConfigError(f"data.effective_batch_size={d.effective_batch_size} applies with data.batch_size=auto; "
                              f"with data.batch_size={d.batch_size} set train.accumulate instead")
        return None
    from trainwise.distributed.world import env_world_size

    if env_world_size() > 1:  # every rank would measure its own size
        raise ConfigError("data.batch_size=auto does not run under DistributedDataParallel (--nproc, torchrun): run "
                          "trainwise find-batch-size CONFIG in one process and pass the size as data.batch_size=N")
    from trainwise.engine.batch_size import find_batch_size, with_accumulation
    from trainwise.trainer import PRECISIONS

    device = device_of(cfg)
    model.to(device)
    result = find_batch_size(model, lambda m: make_optimizer(cfg, m, 1e-3), bundle.train[:2],
                             loss_fn=training_loss(cfg, bundle), device=device,
                             autocast_dtype=PRECISIONS[cfg.train.precision])
    tested = [trial.batch_size for trial in result.trials if trial.fits]
    micro, accumulate = with_accumulation(result.batch_size, d.effective_batch_size, tested)
    d.batch_size = micro
    if d.effective_batch_size is not None:
        cfg.train.accumulate = accumulate
    log.info("batch size auto: %d (%s)%s", micro, result.rule,
             f"; accumulate {accumulate} for the effective batch {d.effective_batch_size}" if accumulate > 1 else "")
    return {**result.to_dict(), "micro_batch_size": micro, "accumulate": cfg.train.accumulate,
            "effective_batch_size": micro * cfg.train.accumulate}


def training_loss(cfg: RunConfig, bundle: DataBundle) -> Any:
    """``(outputs, targets) -> loss`` as the Trainer computes it, for steps outside a fit."""
    from trainwise.data.loader import main_output
    from trainwise.metrics import build_loss

    loss = build_loss(loss_name(cfg, bundle), label_smoothing=cfg.train.label_smoothing)
    regression = bundle.task != "classification"

    def compute(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        outputs = main_output(outputs)
        if regression and outputs.shape != targets.shape and outputs.numel() == targets.numel():
            targets = targets.reshape(outputs.shape)
        return loss(outputs, targets)

    return compute


def _loggers(cfg: RunConfig) -> list[Any]:
    """``train.loggers`` as names, MLflow with ``train.mlflow``'s tracking URI and experiment, W&B with
    ``train.wandb``'s project, mode and entity."""
    built: list[Any] = []
    for name in cfg.train.loggers:
        if name == "mlflow":
            from trainwise.callbacks.loggers import MLflowLogger

            built.append(MLflowLogger(tracking_uri=cfg.train.mlflow.tracking_uri, experiment=cfg.train.mlflow.experiment))
        elif name == "wandb":
            from trainwise.callbacks.wandb_logger import WandbLogger

            w = cfg.train.wandb
            built.append(WandbLogger(project=w.project, mode=w.mode, entity=w.entity))
        else:
            built.append(name)
    return built


def data_description(bundle: DataBundle) -> dict[str, Any]:
    """What ``predict`` needs to treat new inputs like the training data (stored as data.json)."""
    return {"dataset": bundle.name, "task": bundle.task, "input_shape": list(bundle.input_shape),
            "num_classes": bundle.num_classes, "num_outputs": bundle.num_outputs,
            "class_names": bundle.class_names, "normalization": bundle.normalization,
            "target_normalization": bundle.target_normalization,
            "train_samples": len(bundle.train[0]) if isinstance(bundle.train, tuple) else None,
            **bundle.details}


def write_data_description(run_dir: Path, bundle: DataBundle) -> None:
    (run_dir / "data.json").write_text(json.dumps(data_description(bundle), indent=2) + "\n")
    if bundle.tokenizer is not None:  # what generate needs to turn text into ids and back
        (run_dir / "tokenizer.json").write_text(json.dumps(bundle.tokenizer.to_dict(), ensure_ascii=False) + "\n")


def record_token_figures(result: Any, bundle: DataBundle) -> None:
    """Add the test split's bits per character to a text run's summary.json (the test pass has
    no callback event between it and the summary, so it is added once the fit is done)."""
    from trainwise.callbacks.token_figures import token_summary
    from trainwise.runfolder.files import write_json

    figures = token_summary(result.summary, bundle.details.get("chars_per_token", 1.0))
    if figures and (result.run_dir / "summary.json").is_file():
        result.summary.update(figures)
        write_json(result.run_dir / "summary.json", result.summary)


def pin_threads(cfg: RunConfig) -> None:
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)


def device_of(cfg: RunConfig) -> torch.device:
    return resolve_device(cfg.train.device)
