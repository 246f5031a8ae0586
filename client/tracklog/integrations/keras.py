"""A Keras 3 callback: ``model.fit(x, y, callbacks=[TracklogCallback(project="mnist")])``.

Install with ``pip install "tracklog[keras]"`` (Keras on the torch backend: set ``KERAS_BACKEND=torch``
before Keras is imported, or use any backend you have). Importing this module imports Keras.

- Steps count training batches: the ``n``-th batch of a run's training (from 0, across epochs and
  ``fit`` calls) is logged at step ``n`` as ``batch/<metric>``.
- At the end of each epoch its metrics (validation ones included) are logged as ``epoch/<metric>``,
  with ``epoch/epoch``, at the step of the epoch's last batch: the same row, never a step back.
- ``fit``'s parameters (epochs, steps), the optimizer's config and the model's name and size become
  the run's config.
- The run is left open when ``fit`` returns; it ends with the script or ``tracklog.finish()``.
"""

from __future__ import annotations

from typing import Any

import keras

import tracklog
from tracklog.integrations._common import flat_config, start_run

__all__ = ["TracklogCallback"]


class TracklogCallback(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no type information
    """Logs a Keras model's batch and epoch metrics, and its training parameters, to a run.

    ``run``: an existing run to log to; without it, the current run (``tracklog.run``) or a new one
    started with ``tracklog.init(project=..., **init_kwargs)`` when training begins.
    ``log_every_n_batches``: batch metrics of every n-th batch (0: epoch metrics only).
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        run: tracklog.Run | None = None,
        log_every_n_batches: int = 1,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_every_n_batches < 0:
            raise ValueError(f"log_every_n_batches must be >= 0, got {log_every_n_batches}")
        self._run = run
        self._init_kwargs: dict[str, Any] = {"project": project, **init_kwargs}
        self._every = log_every_n_batches
        self._step = 0  # the step of the next training batch
        self._batches = 0  # training batches seen by this callback, for log_every_n_batches

    @property
    def run(self) -> tracklog.Run | None:
        """The run, once training has begun (None before)."""
        return self._run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._run is None:
            self._run, _ = start_run(None, self._init_kwargs)
        # A run that already holds rows (a second fit, or rows the script logged itself) continues
        # after them: the run's steps only grow.
        self._step = max(self._step, self._run.step)
        config: dict[str, Any] = {k: v for k, v in (self.params or {}).items() if k != "verbose"}
        model = self.model
        if model is not None:
            config["model/name"] = model.name
            config["model/num_parameters"] = int(model.count_params())
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None:
                config["optimizer"] = optimizer.get_config()
        self._run.config.update(flat_config(config), allow_val_change=True)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self._step
        self._step += 1
        self._batches += 1
        if self._run is None or not logs or not self._every or (self._batches - 1) % self._every:
            return
        self._run.log({f"batch/{k}": v for k, v in logs.items()}, step=step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._run is None:
            return
        data = {f"epoch/{k}": v for k, v in (logs or {}).items()}
        data["epoch/epoch"] = epoch
        # The epoch's last batch had step self._step - 1; its row is still open, so this merges.
        self._run.log(data, step=max(self._step - 1, 0))
