"""A script written for wandb, run by tracklog: the import is the only line changed.

wandb's parameter order (entity, then project), module-level calls, a config change with
allow_val_change, and define_metric with a summary and a step metric. `python examples/from_wandb.py`
"""

from __future__ import annotations

import random

import tracklog as wandb  # was: import wandb

wandb.init(
    None,  # entity: your user name by default
    "from-wandb",
    config={"learning_rate": 0.02, "architecture": "CNN", "epochs": 5},
    tags=["example"],
)
wandb.config.update({"learning_rate": 0.01}, allow_val_change=True)
wandb.define_metric("val/loss", summary="min")
wandb.define_metric("val/*", step_metric="epoch")
random.seed(0)
for epoch in range(wandb.config.epochs):
    for _ in range(10):
        wandb.log({"train/loss": 2**-epoch + random.random() / 10})
    # The epoch as the validation metrics' x axis: a step below the run's own is kept, not dropped.
    wandb.log({"val/loss": 2**-epoch + random.random() / 5, "val/acc": 1 - 2**-epoch}, step=epoch)
wandb.finish()
