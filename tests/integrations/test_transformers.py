"""Hugging Face Transformers' Trainer trains a tiny BERT on the CPU with TracklogCallback; the store holds
what it logged. The model is built from a config in the script: nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integrations.conftest import Trained
from tracklog._api import ApiRun

pytestmark = pytest.mark.slow

# 24 random sequences in batches of 4, 6 optimizer steps: a training log every 2 steps, an evaluation
# every 3, so steps 2 and 4 hold training metrics, 3 an evaluation, and 6 both.
SCRIPT = """
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import tracklog
from tracklog.integrations.transformers import TracklogCallback


class Sequences(torch.utils.data.Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(n)
        self.ids = torch.randint(0, 50, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 25).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


torch.manual_seed(0)
config = BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=16,
)
args = TrainingArguments(
    output_dir="out", run_name="tiny-bert", max_steps=6, per_device_train_batch_size=4, learning_rate=1e-3,
    logging_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="no", report_to="none",
    use_cpu=True, disable_tqdm=True,
)
callback = TracklogCallback(project="transformers", tags=["tiny"])
trainer = Trainer(
    model=BertForSequenceClassification(config), args=args, train_dataset=Sequences(24),
    eval_dataset=Sequences(8), callbacks=[callback],
)
trainer.train()
final = trainer.evaluate()
print("RUN", callback.run.path)
print("GLOBAL_STEP", trainer.state.global_step)
"""


def test_transformers_logs_train_and_eval_metrics_at_the_global_step_with_arguments_and_model_config(
    train: Callable[[str], Trained], stored: Callable[..., ApiRun]
) -> None:
    out = train(SCRIPT)
    assert out.returncode == 0, out.stderr
    assert "GLOBAL_STEP 6" in out.stdout
    run = stored(out.path)
    assert run.name == "tiny-bert"  # from TrainingArguments.run_name
    assert run.tags == ["tiny"]
    rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == [2, 3, 4, 6]
    assert [r["_step"] for r in rows if "train/loss" in r] == [2, 4, 6]
    # The evaluation after train() ran at global step 6 too: it merges into that row, dropping nothing.
    assert [r["_step"] for r in rows if "eval/loss" in r] == [3, 6]
    assert "below the current step" not in out.stderr
    assert all(isinstance(r["train/learning_rate"], float) for r in rows if "train/loss" in r)
    assert not [k for r in rows for k in r if k.startswith("eval_") or k in ("loss", "train/train_loss")]
    # The training totals are summary values, not history.
    assert run.summary["train_runtime"] > 0
    assert isinstance(run.summary["train_loss"], float)
    assert "train_runtime" not in rows[-1]
    # Config: the training arguments and the model config, flat and JSON-able.
    config = run.config
    assert config["learning_rate"] == 1e-3
    assert config["max_steps"] == 6
    assert config["per_device_train_batch_size"] == 4
    assert config["hidden_size"] == 16
    assert config["model_type"] == "bert"
    assert config["id2label/0"] == "LABEL_0"
    assert config["model/num_parameters"] > 0
    assert config["hub_token"] == "<HUB_TOKEN>"  # masked by TrainingArguments.to_dict()
    assert all(not isinstance(v, dict) for v in config.values())


def test_transformers_callback_starts_no_run_on_a_process_other_than_the_main_one(
    train: Callable[[str], Trained], tmp_path: Path
) -> None:
    # Trainer.train() sets state.is_world_process_zero from is_world_process_zero(), which is False
    # on every replica of a distributed run but the first.
    replica = SCRIPT.replace(
        "callback = TracklogCallback(",
        "class Replica(Trainer):\n    def is_world_process_zero(self):\n        return False\n\n\n"
        "callback = TracklogCallback(",
    ).replace("trainer = Trainer(", "trainer = Replica(")
    replica = replica.replace(
        'print("RUN", callback.run.path)', 'print("NO RUN", callback.run, tracklog.run)'
    )
    out = train(replica)
    assert out.returncode == 0, out.stderr
    assert "NO RUN None None" in out.stdout
    assert not (tmp_path / "tracklog").exists()  # no run directory was made
