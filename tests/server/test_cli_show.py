"""``tracklog show PATH`` prints a run's overview as the run page's Overview tab has it, and every
command's error speaks of the command, once: over real gRPC to a real store server."""

from __future__ import annotations

import json
import math

import pytest

from tracklog._cli import main as cli
from tracklog.v1 import records_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer

from .helpers import finish_record, history_record, metadata_record, summary_record, timing_record
from .test_api_manage import Training, path

T0 = 1_700_000_000.0
METADATA = {
    "os": "Linux-6.1-x86_64",
    "python": "3.11.9",
    "executable": "/usr/bin/python3",
    "program": "/home/alice/train.py",
    "args": ["--lr", "0.1", "two words"],
    "host": "gpu-box",
    "username": "alice",
    "cpu_model": "AMD EPYC",
    "cpu_count": 8,
    "cpu_count_logical": 16,
    "memory": {"total": 64 * 2**30},
    "gpu": "NVIDIA A100",
    "gpu_count": 2,
    "tracklog_version": "0.1.0",
    "git": {
        "remote": "https://example.com/alice/repo.git",
        "branch": "main",
        "commit": "abc123",
        "dirty": True,
    },
}


def test_show_prints_every_overview_field_then_config_and_summary(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, key: RunKey, capsys: pytest.CaptureFixture[str]
) -> None:
    training = Training(
        stub, key, name="best-run", notes="lr sweep winner", tags=["a", "b"], group="sweep", job_type="train",
        config={"lr": 0.1, "layers": [64, 64]}, start_time=T0,
    )  # fmt: skip
    training.send(
        metadata_record(METADATA),
        history_record([(0, {"loss": 0.5})], time0=T0),
        summary_record({"best": math.inf}),
        timing_record(3725.0, 3600.0),
        finish_record(end_time=T0 + 3725),
    )
    assert cli(["show", path(key), "--server", server.grpc_address]) == 0
    out = capsys.readouterr().out
    expected = {
        "Name": "best-run",
        "Author": "alice",
        "Command": "/home/alice/train.py --lr 0.1 'two words'",
        "Description": "lr sweep winner",
        "State": "finished",
        "Start time": "2023-11-14 22:13:20 UTC",
        "Runtime": "1h 02m 05s",
        "Tracked hours": "1.00",
        "Run path": path(key),
        "Tags": "a, b",
        "Group": "sweep",
        "Job type": "train",
        "Host name": "gpu-box",
        "OS": "Linux-6.1-x86_64",
        "Python version": "3.11.9",
        "Python executable": "/usr/bin/python3",
        "Git repository": "https://example.com/alice/repo.git",
        "Git branch": "main",
        "Git state": "abc123 (uncommitted changes, see diff.patch)",
        "System hardware": "AMD EPYC (8 cores, 16 threads); 64.0 GiB memory; 2 x NVIDIA A100",
        "tracklog version": "0.1.0",
    }
    for label, value in expected.items():
        (line,) = [ln for ln in out.splitlines() if ln.startswith(label + " ")]
        assert line[len(label) :].strip() == value, (label, line)
    config = out.split("Config:\n", 1)[1].split("\n\n", 1)[0]
    assert config.splitlines() == ["  layers  [64, 64]", "  lr      0.1"]
    summary = out.split("Summary:\n", 1)[1]
    assert summary.splitlines() == ["  best  inf", "  loss  0.5"]

    assert cli(["show", path(key), "--json", "--server", server.grpc_address]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["Run path"] == path(key)
    assert doc["config"] == {"lr": 0.1, "layers": [64, 64]}
    assert doc["summary"]["best"] == math.inf


def test_show_of_a_run_without_metadata_leaves_those_fields_empty(
    server: StoreServer,
    stub: store_pb2_grpc.StoreStub,
    key: RunKey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKLOG_ENTITY", key.entity)  # project/id: the default entity's run
    Training(stub, key, start_time=T0)
    assert cli(["show", f"{key.project}/{key.id}", "--server", server.grpc_address]) == 0
    out = capsys.readouterr().out
    assert f"Run path           {path(key)}" in out
    assert "State              running" in out
    assert "Config: (none)" in out
    assert "Summary: (none)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "e/p/missing"], "tracklog show: run e/p/missing not found"),
        (["tag", "e/p/missing", "x"], "tracklog tag: run e/p/missing not found"),
        (["rename", "nope", "x"], "tracklog rename: run path 'nope' must look like 'entity/project/id'"),
        (["stop", "e/p/bad id"], "tracklog stop: run path 'e/p/bad id': invalid run id 'bad id'"),
        (["delete", "e/p/missing", "--yes"], "tracklog delete: run e/p/missing not found"),
    ],
)
def test_errors_speak_of_the_command_once(
    server: StoreServer, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([*argv, "--server", server.grpc_address]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("tracklog") == 1, err
    assert "()" not in err  # no Python function
    assert "Traceback" not in err


def test_a_state_field_shows_the_exit_code_of_a_failed_run(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, key: RunKey, capsys: pytest.CaptureFixture[str]
) -> None:
    training = Training(stub, key, start_time=T0)
    training.send(finish_record(records_pb2.RUN_STATE_FAILED, exit_code=3, end_time=T0 + 5))
    assert cli(["show", path(key), "--server", server.grpc_address]) == 0
    assert "State              failed (exit code 3)" in capsys.readouterr().out
