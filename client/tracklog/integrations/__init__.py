"""Framework integrations, one module per framework, each installed with an extra of its own.

- ``tracklog.integrations.lightning.TracklogLogger``: a PyTorch Lightning logger
  (``pip install "tracklog[lightning]"``);
- ``tracklog.integrations.transformers.TracklogCallback``: a Hugging Face Transformers
  ``TrainerCallback`` (``pip install "tracklog[transformers]"``);
- ``tracklog.integrations.keras.TracklogCallback``: a Keras 3 callback (``pip install "tracklog[keras]"``).

``import tracklog`` never imports this package, and this package imports no framework: each module
imports its own framework when it is imported itself.
"""

from __future__ import annotations

__all__: list[str] = []
