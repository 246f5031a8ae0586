"""What the integrations share, without a framework: imports stay lazy, config values become JSON-able."""

from __future__ import annotations

import enum
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

import tracklog
from tracklog.integrations._common import MAX_TEXT, flat_config, start_run

FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow", "jax")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}"
    probe += " or m.startswith('tracklog.integrations')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.replace("'", '"')))


def test_import_tracklog_loads_no_integration_and_no_framework() -> None:
    assert _loaded_after("import tracklog") == []


def test_the_integrations_package_itself_loads_no_framework() -> None:
    assert _loaded_after("import tracklog.integrations") == ["tracklog.integrations"]


class Color(enum.Enum):
    RED = "red"


class Opaque:
    def __str__(self) -> str:
        return "opaque" * 1000


def test_config_is_flattened_to_slash_keys_and_every_value_is_json_able() -> None:
    config = flat_config(
        {
            "lr": 0.1,
            "nan": math.nan,
            "optimizer": {"name": "adam", "betas": (0.9, 0.999), "inner": {"eps": 1e-8}},
            "labels": {0: "neg", 1: "pos"},
            "color": Color.RED,
            "path": Path("data") / "x.csv",
            "activation": math.tanh,
            "kind": Opaque,
            "object": Opaque(),
            "scalar": np.float32(0.5),
            "vector": np.arange(3),
            "none": None,
        }
    )
    assert config["optimizer/name"] == "adam"
    assert config["optimizer/betas"] == [0.9, 0.999]
    assert config["optimizer/inner/eps"] == 1e-8
    assert config["labels/0"] == "neg"
    assert config["color"] == "red"
    assert config["path"] == str(Path("data") / "x.csv")
    assert config["activation"] == "math.tanh"
    assert config["kind"] == f"{__name__}.Opaque"
    assert config["object"] == ("opaque" * 1000)[:MAX_TEXT]
    assert config["scalar"] == 0.5
    assert config["vector"] == "[0 1 2]"
    assert config["none"] is None
    assert math.isnan(config["nan"])
    assert all(not isinstance(v, dict) for v in config.values())
    json.dumps(config)  # raises if any value is not JSON-able


def test_an_integration_logs_to_the_given_run_else_the_current_one_else_a_new_one() -> None:
    mine = tracklog.init(project="p", mode="offline")
    assert start_run(mine, {}) == (mine, False)
    assert start_run(None, {}) == (mine, False)  # tracklog.run, as a script that called init() expects
    mine.finish()
    new, started = start_run(None, {"project": "q", "mode": "offline"})
    assert started
    assert new is not mine
    assert new.project == "q"
    new.finish()
