"""A Hugging Face Transformers callback: ``Trainer(..., callbacks=[TracklogCallback(project="glue")])``.

Install with ``pip install "tracklog[transformers]"``. Importing this module imports Transformers.

- The training arguments and the model's config become the run's config, flat (the arguments win
  where both have a key, as in Transformers' own W&B callback), with ``model/num_parameters``.
- Every ``Trainer.log`` call becomes a row at ``state.global_step``: ``eval_*`` keys as ``eval/*``,
  ``test_*`` as ``test/*``, the rest as ``train/*``. An evaluation at the step of a training log
  shares its row (``log(step=s)`` at the run's current step merges), and the global step never goes
  back, so no row is dropped.
- The end-of-training totals (``train_runtime``, ``train_loss``, ...) go to the summary, not history.
- Only the main process (``state.is_world_process_zero``) starts a run or logs.
- The run is left open when ``train()`` returns (``evaluate()`` may follow); it ends with the script or
  ``tracklog.finish()``, as any run does.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import tracklog
from tracklog.integrations._common import flat_config, start_run

__all__ = ["TracklogCallback"]

# Logged once, when train() ends: totals of the whole training, kept in the summary.
SUMMARY_KEYS = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}
)


def rewrite_keys(logs: dict[str, Any]) -> dict[str, Any]:
    """Transformers' flat log keys grouped by phase: ``eval_loss`` -> ``eval/loss``, ``loss`` ->
    ``train/loss``."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key.startswith("eval_"):
            out["eval/" + key[5:]] = value
        elif key.startswith("test_"):
            out["test/" + key[5:]] = value
        else:
            out["train/" + key] = value
    return out


class TracklogCallback(TrainerCallback):  # type: ignore[misc]  # Any to mypy: see pyproject.toml
    """Logs a ``Trainer``'s metrics, training arguments and model config to a run.

    ``run``: an existing run to log to; without it, the current run (``tracklog.run``) or a new one
    started with ``tracklog.init(project=..., **init_kwargs)`` (named after ``args.run_name`` unless
    ``name`` is given) when training or evaluation begins on the main process.
    """

    def __init__(self, project: str | None = None, *, run: tracklog.Run | None = None, **init_kwargs: Any):
        self._run = run
        self._init_kwargs: dict[str, Any] = {"project": project, **init_kwargs}
        self._configured = False

    @property
    def run(self) -> tracklog.Run | None:
        """The run, once the main process has begun training or evaluation (None before, and on other
        processes)."""
        return self._run

    def _setup(self, args: TrainingArguments, state: TrainerState, model: Any) -> tracklog.Run:
        if self._run is None:
            kwargs = dict(self._init_kwargs)
            if kwargs.get("name") is None and args.run_name and args.run_name != args.output_dir:
                kwargs["name"] = args.run_name
            self._run, _ = start_run(None, kwargs)
        if not self._configured and model is not None:
            self._configured = True
            config: dict[str, Any] = {}
            model_config = getattr(model, "config", None)
            if model_config is not None:
                config.update(model_config if isinstance(model_config, dict) else model_config.to_dict())
            config.update(args.to_dict())
            num_parameters = getattr(model, "num_parameters", None)
            if callable(num_parameters):
                config["model/num_parameters"] = int(num_parameters())
            self._run.config.update(flat_config(config), allow_val_change=True)
        return self._run

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.is_world_process_zero:
            self._setup(args, state, model)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._setup(args, state, model)
        totals = {k: v for k, v in logs.items() if k in SUMMARY_KEYS}
        if totals:
            run.summary.update(totals)
        rows = rewrite_keys({k: v for k, v in logs.items() if k not in SUMMARY_KEYS})
        if rows:
            run.log(rows, step=state.global_step)
