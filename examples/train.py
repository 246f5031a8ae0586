"""A small simulated training loop, like the README's first example. `./scripts/demo` runs it."""

from __future__ import annotations

import math
import random

import tracklog

config = {"learning_rate": 0.01, "epochs": 10, "batch_size": 64, "architecture": "mlp"}

with tracklog.init(project="demo", config=config, tags=["example"], notes="simulated training") as run:
    random.seed(0)
    for epoch in range(run.config.epochs):
        # A loss that falls and an accuracy that rises, with a little noise, as a real run would.
        loss = 2.0 * math.exp(-0.35 * epoch) + random.uniform(0.0, 0.05)
        acc = 1.0 - 0.9 * math.exp(-0.4 * epoch) - random.uniform(0.0, 0.02)
        run.log({"epoch": epoch, "loss": loss, "accuracy": acc})
    run.summary["best_accuracy"] = max(acc, 0.0)
