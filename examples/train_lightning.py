"""PyTorch Lightning with tracklog: ``pip install "tracklog[lightning]"``, then ``python train_lightning.py``.

A small regression model on random data, trained on the CPU for 3 epochs. The run holds the model's
hyperparameters as config, ``train_loss`` at every optimizer step and ``val_loss`` at each epoch's last
step, and the best checkpoint as a run file.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from tracklog.integrations.lightning import TracklogLogger


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()  # becomes the run's config
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(n: int, seed: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


if __name__ == "__main__":
    # log_model=True: the checkpoints ModelCheckpoint keeps are saved with the run when training ends.
    logger = TracklogLogger(project="lightning-demo", log_model=True, tags=["example"])
    trainer = pl.Trainer(max_epochs=3, logger=logger, log_every_n_steps=1, accelerator="cpu", devices=1)
    trainer.fit(Regressor(), loader(256, seed=0), loader(64, seed=1))
    print(f"run {logger.experiment.path}: {logger.experiment.url}")
