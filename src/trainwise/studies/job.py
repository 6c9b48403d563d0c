"""One run of a study (a variant at a seed), as a worker process runs it.

The worker builds everything from the run's resolved config through ``trainwise.config.build``; the data
split comes from the study's data seed, the same for every run, and the model, its initialization
and the batch order from the run's own seed. What the study measures besides the run folder's own
files goes into ``study_measurements.json`` beside them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import torch

from trainwise.config import build
from trainwise.config.schema import RunConfig, config_from_dict
from trainwise.data import DataBundle
from trainwise.data.loader import main_output
from trainwise.errors import ConfigError
from trainwise.runfolder.files import write_json
from trainwise.studies.probes import GradNormRecorder, activation_stats, grad_norms_at_init

log = logging.getLogger(__name__)

MEASUREMENTS = "study_measurements.json"
PROBE_SAMPLES = 256
_BUNDLES: dict[str, DataBundle] = {}


def study_bundle(cfg: RunConfig, data_seed: int, train_samples: Optional[int]) -> DataBundle:
    """The data every run of a study shares: split with ``data_seed``; with ``train_samples``, the
    first that many of one seeded shuffle of the train split. Cached per process."""
    key = f"{cfg.data.model_dump_json()}|{data_seed}|{train_samples}"
    if key not in _BUNDLES:
        bundle = build.load_bundle(cfg.model_copy(update={"seed": data_seed}))
        if train_samples is not None and not bundle.in_memory:
            raise ConfigError(f"--train-samples applies to data held in memory, got data.dataset={cfg.data.dataset!r}; "
                              "leave it out (a text data set's epoch is set by its windows)")
        if train_samples is not None and train_samples < len(bundle.train[0]):
            order = torch.randperm(len(bundle.train[0]), generator=torch.Generator().manual_seed(data_seed))
            keep = order[:train_samples]
            bundle.train = (bundle.train[0][keep], bundle.train[1][keep])
        _BUNDLES.clear()
        _BUNDLES[key] = bundle
    return _BUNDLES[key]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one run: ``job`` holds ``config`` (resolved, as a dict), ``run_dir``, ``data_seed``,
    ``train_samples``, ``measure``, ``grad_every`` and ``resume`` (True: continue from the newest
    checkpoint that verifies). Returns the run's status, folder and wall seconds."""
    start, cpu_start = time.perf_counter(), time.process_time()
    cfg = config_from_dict(job["config"])
    run_dir = Path(job["run_dir"])
    bundle = study_bundle(cfg, job["data_seed"], job["train_samples"])
    model = build.make_model(cfg, bundle)
    measure = set(job["measure"])
    recorder = GradNormRecorder(job["grad_every"]) if "grad_norms" in measure else None
    trainer = build.make_trainer(cfg, bundle, model, run_dir, progress=False,
                                 callbacks=[recorder] if recorder else [])
    measurements: dict[str, Any] = _load_measurements(run_dir) if job["resume"] else {}
    device = trainer.device
    probe = (bundle.val or bundle.train)[0][:PROBE_SAMPLES].to(device) if bundle.in_memory else None
    if not job["resume"] and measure and not bundle.in_memory:
        raise ConfigError(f"study measurements ({', '.join(sorted(measure))}) need data held in memory, got "
                          f"data.dataset={cfg.data.dataset!r}")
    if not job["resume"] and bundle.in_memory:
        x, y = (part[: cfg.data.batch_size].to(device) for part in bundle.train)
        if recorder is not None:
            loss = lambda outputs, targets: trainer.loss_of(main_output(outputs), targets, None)  # noqa: E731
            measurements["grad_norms_init"] = grad_norms_at_init(model, loss, x, y)
        if "activations" in measure:
            measurements["activations_init"] = activation_stats(model, probe)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / MEASUREMENTS, measurements)  # the step-0 figures survive a kill
    build.write_data_description(run_dir, bundle)
    result = trainer.fit(bundle.train, bundle.val, test=bundle.test, resume="auto" if job["resume"] else None)
    if recorder is not None:
        measurements["grad_norms"] = recorder.rows
    if "activations" in measure:
        measurements["activations_end"] = activation_stats(trainer.model, probe)
    # CPU seconds of this process (all its threads) for this call: on a shared machine wall time
    # is inflated by other work, CPU time is what the run itself cost
    measurements["cpu_seconds"] = measurements.get("cpu_seconds", 0.0) + time.process_time() - cpu_start
    write_json(run_dir / MEASUREMENTS, measurements)
    return {"run_dir": str(run_dir), "status": result.status, "seconds": time.perf_counter() - start}


def _load_measurements(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / MEASUREMENTS
    return json.loads(path.read_text()) if path.is_file() else {}


def init_worker(threads: int, parent_pid: int) -> None:
    """A worker process: its share of the cores, and an exit when the study process is gone (a
    killed study leaves no orphan writing into a run folder that a resumed study trains again)."""
    torch.set_num_threads(threads)
    logging.getLogger("trainwise").setLevel(logging.WARNING)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
