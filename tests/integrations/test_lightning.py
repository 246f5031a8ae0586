"""PyTorch Lightning trains a small model on the CPU with TracklogLogger; the store holds what it logged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integrations.conftest import Trained
from tracklog._api import ApiRun

pytestmark = pytest.mark.slow

# 32 random samples in batches of 8: 4 optimizer steps per epoch; validation on the same 32 samples.
MODULE = """
import sys
import warnings

# Lightning 2.6 on torch 2.13 checks isinstance(spec, LeafSpec), which torch deprecated; not ours to fix.
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated", category=FutureWarning)

import torch
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl

import tracklog
from tracklog.integrations.lightning import TracklogLogger


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, stop_at: int = -1):
        super().__init__()
        self.save_hyperparameters()
        layers = [torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)]
        self.net = torch.nn.Sequential(*layers)

    def training_step(self, batch, index):
        if self.global_step == self.hparams.stop_at:
            raise KeyboardInterrupt  # what Ctrl+C raises in the training loop
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
x = torch.randn(32, 4)
y = x.sum(1, keepdim=True)


def loader():
    return DataLoader(TensorDataset(x, y), batch_size=8)


def trainer(logger, epochs=2):
    return pl.Trainer(
        max_epochs=epochs, logger=logger, log_every_n_steps=1, accelerator="cpu", devices=1,
        enable_progress_bar=False, enable_model_summary=False,
    )
"""


def test_lightning_logs_hyperparameters_and_train_and_val_metrics_at_the_trainers_steps(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun], tmp_path: Path
) -> None:
    out = train(
        MODULE
        + """
logger = TracklogLogger(project="lightning", log_model=True, tags=["tiny"])
t = trainer(logger)
t.fit(Regressor(), loader(), loader())
print("RUN", logger.experiment.path)
print("GLOBAL_STEP", t.global_step)
print("CKPT", t.checkpoint_callback.best_model_path)
"""
    )
    assert out.returncode == 0, out.stderr
    assert "GLOBAL_STEP 8" in out.stdout
    run = stored(out.path)
    assert run.config == {"lr": 0.05, "hidden": 8, "stop_at": -1}
    assert run.tags == ["tiny"]
    rows = run.history(pandas=False)
    # One row per optimizer step (log_every_n_steps=1); the validation at each epoch's end shares the
    # row of that epoch's last step, and no row was dropped for going backwards.
    assert [r["_step"] for r in rows] == list(range(8))
    assert all(isinstance(r["train_loss"], float) for r in rows)
    assert [r["_step"] for r in rows if "val_loss" in r] == [3, 7]
    assert [r["epoch"] for r in rows] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert "below the current step" not in out.stderr
    assert run.summary["val_loss"] == rows[7]["val_loss"]
    # log_model=True: the checkpoint ModelCheckpoint kept is a run file, byte for byte.
    (ckpt_line,) = [line for line in out.stdout.splitlines() if line.startswith("CKPT ")]
    checkpoint = Path(tmp_path, ckpt_line[5:].strip())
    assert checkpoint.parent.parts[-3:] == ("lightning", run.id, "checkpoints")
    names = [f.name for f in run.files()]
    assert checkpoint.name in names
    restored = run.file(checkpoint.name).download(tmp_path / "restored")
    assert restored.read_bytes() == checkpoint.read_bytes()


def test_lightning_without_log_model_stores_no_checkpoint_and_a_later_test_joins_the_same_run(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(
        MODULE
        + """
class Tested(Regressor):
    def test_step(self, batch, index):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))


logger = TracklogLogger(project="lightning")
t = trainer(logger, epochs=1)
model = Tested(lr=0.01)
t.fit(model, loader(), loader())
t.test(model, loader())
print("RUN", logger.experiment.path)
"""
    )
    assert out.returncode == 0, out.stderr
    run = stored(out.path)
    assert run.config["lr"] == 0.01
    rows = run.history(pandas=False)
    # trainer.test() after fit() logs into the same run, at the trainer's global step after fit (4):
    # after the training rows, so nothing is dropped.
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["_step"] for r in rows if "train_loss" in r] == [0, 1, 2, 3]
    assert [r["_step"] for r in rows if "test_loss" in r] == [4]
    assert not [f.name for f in run.files() if f.name.endswith(".ckpt")]


def test_lightning_with_log_model_all_stores_every_checkpoint_it_writes(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(
        MODULE
        + """
from lightning.pytorch.callbacks import ModelCheckpoint

logger = TracklogLogger(project="lightning", log_model="all")
every_epoch = ModelCheckpoint(save_top_k=-1, filename="{epoch}")
t = pl.Trainer(
    max_epochs=2, logger=logger, callbacks=[every_epoch], accelerator="cpu", devices=1,
    enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
)
t.fit(Regressor(), loader(), loader())
print("RUN", logger.experiment.path)
"""
    )
    assert out.returncode == 0, out.stderr
    run = stored(out.path)
    assert sorted(f.name for f in run.files() if f.name.endswith(".ckpt")) == ["epoch=0.ckpt", "epoch=1.ckpt"]


def test_ctrl_c_in_lightning_ends_the_run_killed_although_lightning_exits_with_code_1(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(
        MODULE
        + """
logger = TracklogLogger(project="lightning")
print("RUN", logger.experiment.path, flush=True)
trainer(logger).fit(Regressor(stop_at=5), loader(), loader())
"""
    )
    assert out.returncode == 1, out.stderr  # Lightning's graceful shutdown calls sys.exit(1)
    run = stored(out.path, state="killed")
    assert [r["_step"] for r in run.history(pandas=False)] == [0, 1, 2, 3, 4]


def test_lightning_ddp_on_two_cpu_processes_logs_one_run_from_rank_zero_only(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun], tmp_path: Path
) -> None:
    # Lightning's "ddp" strategy runs this script again for rank 1 (LOCAL_RANK=1); gloo on loopback.
    out = train(
        MODULE
        + """
import os, sys
logger = TracklogLogger(project="lightning")
t = pl.Trainer(
    max_epochs=1, logger=logger, log_every_n_steps=1, accelerator="cpu", devices=2, strategy="ddp",
    enable_progress_bar=False, enable_model_summary=False,
)
t.fit(Regressor(), loader(), loader())
# One write per line: both ranks share this stdout, and print() writes its pieces separately.
kind = type(logger.experiment).__name__
sys.stdout.write(f"RANK {t.global_rank} EXPERIMENT {kind} CURRENT {tracklog.run}\\n")
sys.stdout.flush()
if t.global_rank == 0:
    sys.stdout.write(f"RUN {logger.experiment.path}\\n")
"""
    )
    assert out.returncode == 0, out.stderr
    # Rank 1 ran the whole fit with Lightning's dummy experiment and never started a run.
    assert "RANK 1 EXPERIMENT _DummyExperiment CURRENT None" in out.stdout
    assert "RANK 0 EXPERIMENT Run" in out.stdout
    run = stored(out.path)
    assert len(list((tmp_path / "tracklog").glob("run-*"))) == 1
    # Each rank sees half of the 32 samples: 2 steps of 8, and the synced val_loss at the last one.
    rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == [0, 1]
    assert [r["_step"] for r in rows if "val_loss" in r] == [1]
