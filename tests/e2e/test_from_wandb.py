"""Done-when of issue 12: training scripts written for wandb, in the style of its quickstart, run
with only the import changed (``import tracklog as wandb``), and every value they log arrives in
the store: config, history at the right steps, summaries as define_metric asked, run fields."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import wait_for
from tracklog.testing import history_rows, read_records

pytestmark = pytest.mark.slow

# Written against wandb's API; the test changes only its import line.
QUICKSTART = """
import json, random
import wandb

random.seed(7)
run = wandb.init(
    "team-a",                      # entity, then project: wandb's positional order
    "quickstart",
    config={"learning_rate": 0.02, "architecture": "CNN", "dataset": "CIFAR-100", "epochs": 6},
    tags=["baseline"],
    notes="first try",
    group="sweep-1",
    job_type="train",
    reinit=True,
    save_code=True,
    settings=wandb.Settings(silent=True),
    sync_tensorboard=False,
)
wandb.config.update({"batch_size": 64})
wandb.config.update({"learning_rate": 0.01}, allow_val_change=True)   # as Lightning's logger does
wandb.define_metric("val/loss", summary="min")
wandb.define_metric("val/acc", summary="max")
wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch")
logged = []
offset = random.random() / 5
for epoch in range(2, run.config.epochs + 2):
    for batch in range(3):
        row = {"train/loss": 2**-epoch + random.random() / epoch + offset}
        wandb.log(row)
        logged.append(row)
    val = {"val/acc": 1 - 2**-epoch - random.random() / epoch - offset,
           "val/loss": 2**-epoch + random.random() / epoch + offset}
    wandb.log(val, step=epoch)       # the framework's own step: kept as "epoch", never dropped
    logged.append({**val, "epoch": epoch})
wandb.summary["best_note"] = "kept"
print("RUN", run.path, flush=True)
print("LOGGED", json.dumps(logged), flush=True)
wandb.finish()
"""

ARGPARSE_STYLE = """
import argparse, json
import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--token", default="do-not-store")
args = parser.parse_args([])
with wandb.init(project="argparse-style", config=args, config_exclude_keys=["token"]) as run:
    for step in range(5):
        wandb.log({"loss": 1.0 / (step + 1)}, commit=False)
        wandb.log({"acc": step / 5})
    wandb.log({"late": 1.0}, step=2)   # below the current step: dropped with one warning, as wandb
    print("RUN", run.path, flush=True)
"""

YAML_CONFIG = """
import wandb

run = wandb.init(project="yaml-style", config="config-defaults.yaml", mode="offline")
for step in range(4):
    run.log({"loss": 0.5 ** step})
print("RUN", run.path, flush=True)
print("DIR", run.dir, flush=True)
run.finish()
"""


def _run_as_tracklog(code: str, env: dict[str, str], cwd: Path, name: str) -> dict[str, str]:
    source = textwrap.dedent(code)
    assert source.count("import wandb\n") == 1
    script = cwd / name
    script.write_text(source.replace("import wandb\n", "import tracklog as wandb\n"))
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    lines["stderr"] = done.stderr
    return lines


def _finished(api: tracklog.Api, path: str) -> bool:
    try:
        return api.run(path).state == "finished"
    except tracklog.NotFoundError:
        return False


def test_the_quickstart_script_with_only_the_import_changed_stores_every_value(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = _run_as_tracklog(QUICKSTART, env, tmp_path, "quickstart.py")
    path, logged = out["RUN"], json.loads(out["LOGGED"])
    assert path.startswith("team-a/quickstart/")
    assert "not supported" not in out["stderr"]  # sync_tensorboard=False asks for nothing
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 60, "the run to be finished in the store")
        run = api.run(path)
        rows = run.history(samples=None, pandas=False)
        files = {f.name for f in run.files()}
    assert run.config == {
        "learning_rate": 0.01, "architecture": "CNN", "dataset": "CIFAR-100", "epochs": 6, "batch_size": 64,
    }  # fmt: skip
    assert (run.tags, run.notes, run.group, run.job_type) == (["baseline"], "first try", "sweep-1", "train")
    # Every row, in order, at consecutive steps; the epoch rows carry the framework's step as "epoch".
    assert [r["_step"] for r in rows] == list(range(len(logged)))
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows] == logged
    vals = [r for r in logged if "val/loss" in r]
    assert run.summary["val/loss"] == min(r["val/loss"] for r in vals)
    assert run.summary["val/acc"] == max(r["val/acc"] for r in vals)
    assert run.summary["train/loss"] == logged[-2]["train/loss"]
    assert run.summary["best_note"] == "kept"
    assert {(d.name, d.summary, d.step_metric) for d in run.metric_definitions} == {
        ("val/loss", ("min",), None), ("val/acc", ("max",), None), ("epoch", (), None),
        ("val/*", (), "epoch"),
    }  # fmt: skip
    assert "quickstart.py" in files  # save_code=True


def test_an_argparse_script_with_a_with_block_and_excluded_keys_stores_every_value(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = _run_as_tracklog(ARGPARSE_STYLE, env, tmp_path, "train_args.py")
    path = out["RUN"]
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 60, "the run to be finished in the store")
        run = api.run(path)
        rows = run.history(samples=None, pandas=False)
    assert run.config == {"lr": 0.1}
    assert [(r["_step"], r["loss"], r["acc"]) for r in rows] == [(s, 1.0 / (s + 1), s / 5) for s in range(5)]
    assert "log() at step 2 is below the current step 5" in out["stderr"]


def test_a_yaml_config_file_and_an_offline_run_arrive_after_tracklog_sync(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "config-defaults.yaml").write_text(
        "wandb_version: 1\nepochs:\n  desc: passes over the data\n  value: 4\nlr: 0.001\n"
    )
    out = _run_as_tracklog(YAML_CONFIG, env, tmp_path, "train_yaml.py")
    sync = subprocess.run(
        [sys.executable, "-m", "tracklog", "sync"],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    with tracklog.Api() as api:
        run = api.run(out["RUN"])
        assert (run.state, run.config) == ("finished", {"epochs": 4, "lr": 0.001})
        assert [r["loss"] for r in run.history(pandas=False)] == [1.0, 0.5, 0.25, 0.125]


def test_the_from_wandb_example_runs_and_keeps_its_epoch_rows(env: dict[str, str], tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "from_wandb.py"
    done = subprocess.run(
        [sys.executable, str(example)],
        env={**env, "TRACKLOG_MODE": "offline"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = (tmp_path / "tracklog").glob("offline-run-*")
    rows = history_rows(read_records(str(run_dir)))
    assert len(rows) == 55
    assert [r["epoch"] for r in rows if "val/loss" in r] == [0, 1, 2, 3, 4]
    assert "below the current step" not in done.stderr
