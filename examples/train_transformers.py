"""Hugging Face Transformers with tracklog: ``pip install "tracklog[transformers]"``, then
``python train_transformers.py``.

A tiny BERT classifier built from a config (nothing is downloaded) learns a toy rule on random token
ids, on the CPU. The run holds the training arguments and the model config as config, ``train/*``
metrics every 5 steps and ``eval/*`` metrics every 10, at the trainer's global step.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from tracklog.integrations.transformers import TracklogCallback


class Sequences(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Random token ids; the label says whether the first token is in the upper half of the vocabulary."""

    def __init__(self, n: int, seed: int) -> None:
        self.ids = torch.randint(0, 100, (n, 16), generator=torch.Generator().manual_seed(seed))
        self.labels = (self.ids[:, 0] >= 50).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


if __name__ == "__main__":
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    args = TrainingArguments(
        output_dir="tracklog-transformers-demo", run_name="tiny-bert", max_steps=40,
        per_device_train_batch_size=16, learning_rate=1e-3, logging_steps=5, eval_strategy="steps",
        eval_steps=10, save_strategy="no", report_to="none", use_cpu=True,
    )  # fmt: skip
    callback = TracklogCallback(project="transformers-demo", tags=["example"])
    trainer = Trainer(
        model=BertForSequenceClassification(config), args=args, train_dataset=Sequences(640, seed=0),
        eval_dataset=Sequences(128, seed=1), callbacks=[callback],
    )  # fmt: skip
    trainer.train()
    assert callback.run is not None
    print(f"run {callback.run.path}: {callback.run.url}")
