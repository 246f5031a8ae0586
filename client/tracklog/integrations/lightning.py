"""A PyTorch Lightning logger: ``Trainer(logger=TracklogLogger(project="mnist"))``.

Install with ``pip install "tracklog[lightning]"``. Importing this module imports Lightning.

- Hyperparameters (``save_hyperparameters()``, the datamodule's) become the run's config, flat.
- Metrics are logged at the trainer's step, so train and validation metrics of one step share a row:
  ``log(step=s)`` with ``s`` equal to the run's current step merges into that row, and Lightning's
  steps never go backwards within a run.
- Only rank zero starts a run or logs; the other ranks see Lightning's dummy experiment.
- ``log_model=True`` saves the checkpoints ``ModelCheckpoint`` kept as run files when training ends
  successfully; ``log_model="all"`` saves each checkpoint as it is written.
- The run is left open when ``fit`` returns (``trainer.test()`` may follow); it ends with the script or
  ``tracklog.finish()``, as any run does. Ctrl+C, which Lightning turns into ``sys.exit(1)``, still ends
  it ``killed``.
"""

from __future__ import annotations

import glob
import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any, Literal

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger
from lightning_utilities.core.rank_zero import rank_zero_only  # the object Lightning sets .rank on

import tracklog
from tracklog.integrations._common import flat_config, start_run

__all__ = ["TracklogLogger"]


class TracklogLogger(Logger):
    """Logs a Lightning ``Trainer``'s hyperparameters, metrics and (optionally) checkpoints to a run.

    ``run``: an existing run to log to; without it, the current run (``tracklog.run``) or a new one
    started with ``tracklog.init(project=..., name=..., **init_kwargs)`` the first time the trainer
    needs it. ``save_dir``: where Lightning's ``ModelCheckpoint`` writes checkpoints by default
    (``<save_dir>/<project>/<run id>/checkpoints``). ``prefix``: put before every metric key
    (``prefix/key``).
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        *,
        run: tracklog.Run | None = None,
        save_dir: str | os.PathLike[str] = ".",
        log_model: bool | Literal["all"] = False,
        prefix: str = "",
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise ValueError(f"log_model must be True, False or 'all'; got {log_model!r}")
        self._run = run
        self._init_kwargs: dict[str, Any] = {"project": project, "name": name, **init_kwargs}
        self._save_dir = os.fspath(save_dir)
        self._log_model = log_model
        self._prefix = prefix
        # Checkpoints already saved, by path, with the mtime they had then: a file rewritten later
        # (the "last" checkpoint) is saved again as a new version of the same name.
        self._saved: dict[str, float] = {}
        self._callbacks: dict[int, ModelCheckpoint] = {}

    # -- the run ------------------------------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> tracklog.Run:
        """The run (started on first use). On ranks other than zero, Lightning's dummy experiment."""
        if self._run is None:
            self._run, _ = start_run(None, self._init_kwargs)
        return self._run

    @property
    def name(self) -> str:
        """The run's project: Lightning names checkpoint folders ``<save_dir>/<name>/<version>``."""
        if self._run is not None:
            return self._run.project
        return str(self._init_kwargs.get("project") or os.environ.get("TRACKLOG_PROJECT") or "Uncategorized")

    @property
    def version(self) -> str | None:
        """The run's id; None on ranks other than zero (Lightning then takes rank zero's paths)."""
        if _rank() > 0:
            return None
        run: tracklog.Run = self.experiment
        return run.id

    @property
    def save_dir(self) -> str:
        return self._save_dir

    # -- what Lightning sends -----------------------------------------------------------------------

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        items = vars(params) if isinstance(params, Namespace) else params
        if items:
            self.experiment.config.update(flat_config(items), allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        run: tracklog.Run = self.experiment
        data = {f"{self._prefix}/{k}" if self._prefix else k: v for k, v in metrics.items()}
        # Without a step, the row stays at the run's current step: a later metric at a trainer step
        # must never land below a row written here.
        run.log(data, step=run.step if step is None else step)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if self._log_model == "all":
            self._save_checkpoints(checkpoint_callback)
        elif self._log_model:
            self._callbacks[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status == "success":
            for callback in self._callbacks.values():
                self._save_checkpoints(callback)
            return
        # Lightning calls finalize("failed") inside its ``except`` clause, so the exception is at hand.
        # It turns Ctrl+C into sys.exit(1), which would end the run ``failed``: end it ``killed`` here
        # through the run's own context-manager exit, which maps the exception to its state.
        exc = sys.exc_info()[1]
        if status == "failed" and isinstance(exc, KeyboardInterrupt) and self._run is not None:
            self._run.__exit__(type(exc), exc, exc.__traceback__)

    @rank_zero_only
    def _save_checkpoints(self, callback: ModelCheckpoint) -> None:
        """Saves every checkpoint file ``callback`` keeps (last, best, best k) that is new or changed."""
        if self._run is None or not callback.dirpath:
            return
        paths = {callback.last_model_path, callback.best_model_path, *callback.best_k_models}
        base = os.path.abspath(callback.dirpath)
        for path in sorted(p for p in paths if p and os.path.isfile(p)):
            mtime = os.stat(path).st_mtime
            if self._saved.get(path) == mtime:
                continue
            self._saved[path] = mtime
            # The file is read later, on the run's sender thread; glob.escape because run.save takes
            # a pattern and checkpoint names may hold "[" (e.g. a metric named "acc[0]").
            self._run.save(glob.escape(os.path.abspath(path)), base_path=base, policy="now")


def _rank() -> int:
    # Lightning sets ``rank_zero_only.rank`` (from the launcher's environment, then the strategy); it is
    # an attribute set at run time, which the function's type does not declare.
    return int(getattr(rank_zero_only, "rank", 0))
