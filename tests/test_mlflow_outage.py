"""The MLflow logger and a tracking server that is down: its calls are bounded (a few attempts,
not MLflow's minutes of retries), the first failure switches it off with one warning in the run's
summary, training goes on and what reached the server stays.

The time lost is measured in HTTP attempts (each urllib3 request counted), never in seconds.
Real processes: a real ``mlflow server`` killed with SIGKILL mid-run, and a port where nothing listens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from trainwise import Trainer
from trainwise.callbacks import Callback

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")
HTTP_VARIABLES = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture
def attempts(monkeypatch) -> list[str]:
    """Every HTTP attempt this process makes (MLflow's retries included), as its URL path."""
    import urllib3.connectionpool as pool

    made: list[str] = []
    real = pool.HTTPConnectionPool._make_request

    def counted(self, conn, method, url, *args, **kwargs):
        made.append(url)
        return real(self, conn, method, url, *args, **kwargs)

    monkeypatch.setattr(pool.HTTPConnectionPool, "_make_request", counted)
    for name in HTTP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return made


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fit(run_dir: Path, callbacks, epochs: int = 4):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    trainer = Trainer(model, optimizer="sgd", lr=0.05, epochs=epochs, batch_size=16, progress=False, report=False,
                      run_dir=run_dir, name="logged", callbacks=callbacks)
    return trainer, trainer.fit((x, y), (x, y))


def switched_off(event: str, uri: str, attempts: int) -> str:
    kept = "" if event == "on_fit_start" else " (what it logged before stays)"
    return (f"MLflowLogger switched off in {event}: MLflow tracking server {uri} cannot be reached "
            f"(Connection refused; {attempts} attempt{'s' if attempts > 1 else ''}); training goes on without it{kept}")


def test_a_server_where_nothing_listens_costs_three_attempts_and_the_run_completes(tmp_path, attempts):
    from trainwise.callbacks.loggers import MLflowLogger
    from trainwise.callbacks.mlflow_calls import ATTEMPTS_PER_CALL

    uri = f"http://127.0.0.1:{free_port()}"
    _, result = fit(tmp_path / "run", [MLflowLogger(tracking_uri=uri, experiment="nowhere")])
    assert result.status == "completed" and len(result.history) == 4
    assert len(attempts) == ATTEMPTS_PER_CALL == 3  # one call at the start, then never again
    warning = switched_off("on_fit_start", uri, 3)
    assert result.warnings == [warning]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["warnings"] == [warning]
    assert [(e["kind"], e["message"]) for e in summary["events"] if e["kind"].startswith("logger")] == \
        [("logger_disabled", "MLflowLogger switched off in on_fit_start")]
    assert not [name for name in HTTP_VARIABLES if name in os.environ]  # the bounds were for its calls only


def test_the_users_own_retry_setting_wins(tmp_path, attempts, monkeypatch):
    from trainwise.callbacks.loggers import MLflowLogger

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    _, result = fit(tmp_path / "run", [MLflowLogger(tracking_uri=uri)], epochs=1)
    assert result.status == "completed" and len(attempts) == 1
    assert result.warnings == [switched_off("on_fit_start", uri, 1)]
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_a_server_that_accepts_and_never_answers_costs_three_timeouts(tmp_path, attempts, monkeypatch):
    """A hung server (the port open, nothing answering): each attempt ends at the timeout, here
    the user's own 1 s (which wins over trainwise's 10 s), and the retries stay bounded."""
    from trainwise.callbacks.loggers import MLflowLogger
    from trainwise.callbacks.mlflow_calls import ATTEMPTS_PER_CALL

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts the connections; nobody reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        _, result = fit(tmp_path / "run", [MLflowLogger(tracking_uri=uri)], epochs=1)
    assert result.status == "completed" and len(attempts) == ATTEMPTS_PER_CALL
    assert result.warnings == [f"MLflowLogger switched off in on_fit_start: MLflow tracking server {uri} cannot be "
                               "reached (no answer in time; 3 attempts); training goes on without it"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"


def test_errors_other_than_an_outage_are_not_mistaken_for_one():
    from mlflow.exceptions import MlflowException, RestException

    from trainwise.callbacks.mlflow_calls import unreachable_reason

    assert unreachable_reason(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})) is None
    assert unreachable_reason(MlflowException("API request failed with exception ValueError")) is None
    assert unreachable_reason(ValueError("x")) is None


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a free port, in its own process group (killed whole at the end)."""
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job workers: a quicker start
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # migrations on a busy machine take a while (a guard, not a check)
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield server, uri
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()


@pytest.mark.slow
def test_a_server_killed_mid_run_costs_one_calls_attempts_and_keeps_what_it_received(tmp_path, mlflow_server,
                                                                                     attempts):
    from mlflow.tracking import MlflowClient

    from trainwise.callbacks.loggers import MLflowLogger
    from trainwise.callbacks.mlflow_calls import ATTEMPTS_PER_CALL

    server, uri = mlflow_server
    killed_at: list[int] = []

    class KillServer(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.state.epoch == 2:  # after the logger sent epoch 2 (it comes first in the list)
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=60)
                killed_at.append(len(attempts))

    _, result = fit(tmp_path / "run", [MLflowLogger(tracking_uri=uri, experiment="killed"), KillServer()])
    assert result.status == "completed" and len(result.history) == 4
    assert len(attempts) - killed_at[0] == ATTEMPTS_PER_CALL  # epoch 3's call, then switched off
    warning = switched_off("on_epoch_end", uri, ATTEMPTS_PER_CALL)
    assert result.warnings == [warning]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["warnings"] == [warning]
    # What reached the server before it died is there: the run, its params, epochs 1 and 2.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [4, 8]
    assert run.data.params["optimizer.name"] == "sgd" and run.data.params["train.epochs"] == "4"
    assert run.info.status == "RUNNING"  # the server was gone before the end could be told
