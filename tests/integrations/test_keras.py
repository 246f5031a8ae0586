"""Keras 3, on the torch backend, trains a small model on the CPU with TracklogCallback; the store holds
what it logged. KERAS_BACKEND=torch is in the script's environment before Keras is imported."""

from __future__ import annotations

import ast
from collections.abc import Callable

import pytest

from tests.integrations.conftest import Trained
from tracklog._api import ApiRun

pytestmark = pytest.mark.slow

# 40 samples, a quarter held out for validation: 30 in batches of 10 = 3 batches per epoch, 3 epochs.
SCRIPT = """
import warnings

# Keras 3.15's torch backend converts tensors with np.array(x), which numpy 2 warns about for torch's
# __array__; it is Keras's call to change, and the values are right.
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                        category=DeprecationWarning)

import numpy as np
import keras

import tracklog
from tracklog.integrations.keras import TracklogCallback

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
hidden = keras.layers.Dense(8, activation="relu")
layers = [keras.Input((4,)), hidden, keras.layers.Dense(1, activation="sigmoid")]
model = keras.Sequential(layers, name="tiny")
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy",
              metrics=["accuracy"])
callback = TracklogCallback(project="keras", EXTRA)
history = model.fit(x, y, batch_size=10, epochs=3, validation_split=0.25, callbacks=[callback], verbose=0)
print("RUN", callback.run.path)
print("BACKEND", keras.backend.backend())
print("VAL_LOSS", repr(history.history["val_loss"]))
"""


def test_keras_logs_batch_metrics_per_step_and_epoch_metrics_at_each_epochs_last_batch(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(SCRIPT.replace("EXTRA", 'tags=["tiny"]'))
    assert out.returncode == 0, out.stderr
    assert "BACKEND torch" in out.stdout
    run = stored(out.path)
    assert run.tags == ["tiny"]
    rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == list(range(9))
    assert all(isinstance(r["batch/loss"], float) for r in rows)
    assert all(isinstance(r["batch/accuracy"], float) for r in rows)
    # Each epoch's metrics share the row of its last batch (steps 2, 5, 8).
    assert [(r["_step"], r["epoch/epoch"]) for r in rows if "epoch/epoch" in r] == [(2, 0), (5, 1), (8, 2)]
    (val_line,) = [line for line in out.stdout.splitlines() if line.startswith("VAL_LOSS ")]
    val_losses = ast.literal_eval(val_line[9:])  # Keras's own record of each epoch's val_loss
    assert [r["epoch/val_loss"] for r in rows if "epoch/val_loss" in r] == pytest.approx(val_losses)
    assert "below the current step" not in out.stderr
    config = run.config
    assert config["epochs"] == 3
    assert config["steps"] == 3
    assert config["model/name"] == "tiny"
    assert config["model/num_parameters"] == 4 * 8 + 8 + 8 + 1
    assert config["optimizer/name"] == "adam"
    assert config["optimizer/learning_rate"] == pytest.approx(0.01)


def test_keras_with_batch_logging_off_logs_epochs_at_their_last_batchs_step(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(SCRIPT.replace("EXTRA", "log_every_n_batches=0"))
    assert out.returncode == 0, out.stderr
    rows = stored(out.path).history(pandas=False)
    assert [r["_step"] for r in rows] == [2, 5, 8]
    assert not [k for r in rows for k in r if k.startswith("batch/")]
    assert [r["epoch/epoch"] for r in rows] == [0, 1, 2]
