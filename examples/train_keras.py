"""Keras 3 with tracklog: ``pip install "tracklog[keras]"``, then ``python train_keras.py``.

A small classifier on random data, on the CPU. The run holds ``batch/*`` metrics at every batch (steps
count batches), ``epoch/*`` metrics (validation ones included) at each epoch's last batch, and fit's
parameters, the optimizer's config and the model's size as config.
"""

from __future__ import annotations

import os

# Keras picks its backend once, when it is first imported; the extra installs torch for it.
os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from tracklog.integrations.keras import TracklogCallback

if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(1000, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="classifier",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    callback = TracklogCallback(project="keras-demo", tags=["example"])
    model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2, callbacks=[callback], verbose=2)
    print(f"run {callback.run.path}: {callback.run.url}")
