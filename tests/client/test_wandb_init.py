"""init() as wandb users call it: wandb's parameters in wandb's order, settings, reinit, a YAML
config, included and excluded keys, allow_val_change, resume="auto", save_code, the environment."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklog
from tracklog.testing import read_records

# wandb 0.31's init(), parameter by parameter, in its order.
WANDB_INIT = (
    "entity", "project", "dir", "id", "name", "notes", "tags", "config", "config_exclude_keys",
    "config_include_keys", "allow_val_change", "group", "job_type", "mode", "force", "anonymous",
    "reinit", "resume", "resume_from", "fork_from", "save_code", "tensorboard", "sync_tensorboard",
    "monitor_gym", "settings",
)  # fmt: skip


def _config_records(run_dir: str) -> list[dict[str, object]]:
    return [
        json.loads(r.config.items_json) for _, r in read_records(run_dir) if r.WhichOneof("kind") == "config"
    ]


def _start(run_dir: str) -> object:
    return next(r.start for _, r in read_records(run_dir) if r.WhichOneof("kind") == "start")


def test_init_takes_every_parameter_of_wandb_init_in_the_same_order() -> None:
    assert tuple(inspect.signature(tracklog.init).parameters) == WANDB_INIT


def test_positional_arguments_are_entity_then_project_as_in_wandb() -> None:
    run = tracklog.init("team", "proj", mode="offline")
    run.finish()
    assert (run.entity, run.project, run.path) == ("team", "proj", f"team/proj/{run.id}")


def test_unsupported_keywords_are_accepted_with_one_warning_each_naming_them(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import tracklog
        for _ in range(2):
            run = tracklog.init(project="p", mode="offline", sync_tensorboard=True, force=True,
                                monitor_gym=False, settings={"start_method": "thread"})
            run.log({"x": 1.0})
            run.finish()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    warnings = [line for line in done.stderr.splitlines() if "not supported" in line]
    assert sorted(warnings) == sorted(
        [
            "tracklog: WARNING init(sync_tensorboard=...) is not supported by tracklog and is ignored",
            "tracklog: WARNING init(force=...) is not supported by tracklog and is ignored",
            "tracklog: WARNING setting 'start_method' is not supported by tracklog and is ignored",
        ]
    )


def test_settings_object_and_dict_set_what_init_arguments_leave_unset() -> None:
    settings = tracklog.Settings(mode="offline", run_name="from-settings", run_tags=["a"], project="sp")
    run = tracklog.init(settings=settings)
    run.finish()
    assert (run.mode, run.name, run.tags, run.project) == ("offline", "from-settings", ("a",), "sp")
    run = tracklog.init(project="given", settings={"mode": "offline", "project": "ignored", "run_group": "g"})
    run.finish()
    assert (run.project, run.group) == ("given", "g")


def test_a_settings_argument_of_another_type_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"settings must be a tracklog\.Settings or a dict, got int"):
        tracklog.init(project="p", mode="offline", settings=3)  # type: ignore[arg-type]


def test_run_fields_come_from_the_environment_unless_init_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLOG_NAME", "env-name")
    monkeypatch.setenv("TRACKLOG_NOTES", "env notes")
    monkeypatch.setenv("TRACKLOG_TAGS", "a, b,,c")
    monkeypatch.setenv("TRACKLOG_RUN_GROUP", "env-group")
    monkeypatch.setenv("TRACKLOG_JOB_TYPE", "train")
    monkeypatch.setenv("TRACKLOG_RUN_ID", "envid1")
    run = tracklog.init(project="p", mode="offline")
    run.finish()
    assert (run.id, run.name, run.notes, run.tags, run.group, run.job_type) == (
        "envid1", "env-name", "env notes", ("a", "b", "c"), "env-group", "train",
    )  # fmt: skip
    monkeypatch.setenv("TRACKLOG_RESUME", "allow")
    again = tracklog.init(project="p", mode="offline", name="given", tags=["t"])
    again.finish()
    assert (again.id, again.dir, again.name, again.tags) == ("envid1", run.dir, "given", ("t",))


def test_reinit_false_returns_the_run_already_going_and_true_ends_it() -> None:
    first = tracklog.init(project="p", mode="offline")
    assert tracklog.init(project="other", mode="offline", reinit=False) is first
    assert tracklog.init(project="other", mode="offline", reinit="return_previous") is first
    second = tracklog.init(project="p", mode="offline", reinit=True)
    assert second is not first
    assert tracklog.run is second
    assert read_records(first.dir)[-1][1].WhichOneof("kind") == "finish"
    with pytest.raises(tracklog.UsageError, match="reinit must be a bool or one of"):
        tracklog.init(project="p", mode="offline", reinit="sometimes")
    second.finish()


def test_config_may_be_a_yaml_file_in_wandbs_format(tmp_path: Path) -> None:
    path = tmp_path / "config-defaults.yaml"
    path.write_text(
        "wandb_version: 1\nlr:\n  desc: learning rate\n  value: 0.01\nepochs: 3\n"
        "optimizer:\n  name: adam\n  betas: [0.9, 0.99]\n"
    )
    run = tracklog.init(project="p", mode="offline", config=str(path))
    run.finish()
    assert run.config.as_dict() == {
        "lr": 0.01,
        "epochs": 3,
        "optimizer": {"name": "adam", "betas": [0.9, 0.99]},
    }
    assert _config_records(run.dir) == []
    assert json.loads(_start(run.dir).config_json)["lr"] == 0.01  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: [unclosed", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping of keys to values, not a list"),
    ],
)
def test_a_bad_yaml_config_file_is_a_usage_error_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(tracklog.UsageError, match=message) as caught:
        tracklog.init(project="p", mode="offline", config=path)
    assert "bad.yaml" in str(caught.value)
    assert tracklog.run is None


def test_a_missing_yaml_config_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(tracklog.UsageError, match=r"config file '.*nowhere.yaml' cannot be read"):
        tracklog.init(project="p", mode="offline", config=str(tmp_path / "nowhere.yaml"))


def test_config_include_and_exclude_keys_select_what_is_stored() -> None:
    config = {"lr": 0.1, "secret": "x", "epochs": 2}
    run = tracklog.init(project="p", mode="offline", config=config, config_exclude_keys=["secret"])
    assert run.config.as_dict() == {"lr": 0.1, "epochs": 2}
    run = tracklog.init(project="p", mode="offline", config=config, config_include_keys=["lr"])
    assert run.config.as_dict() == {"lr": 0.1}
    run.finish()
    with pytest.raises(tracklog.UsageError, match="config_exclude_keys or config_include_keys, not both"):
        tracklog.init(
            project="p", mode="offline", config=config, config_exclude_keys=[], config_include_keys=[]
        )


def test_changing_a_config_value_needs_allow_val_change_which_is_never_stored_as_a_key() -> None:
    run = tracklog.init(project="p", mode="offline", config={"lr": 0.1})
    run.config.update({"lr": 0.1})  # the same value again is no change
    with pytest.raises(
        tracklog.UsageError, match=r"config key 'lr' is 0\.1 already; changing it to 0\.2 needs"
    ):
        run.config.update({"lr": 0.2})
    with pytest.raises(tracklog.UsageError, match="allow_val_change=True"):
        run.config.lr = 0.3
    run.config.update({"lr": 0.2, "momentum": 0.9}, allow_val_change=True)
    run.config.setdefaults({"lr": 5.0, "batch": 32})
    run.finish()
    assert run.config.as_dict() == {"lr": 0.2, "momentum": 0.9, "batch": 32}
    stored = _config_records(run.dir)
    assert stored == [{"lr": 0.2, "momentum": 0.9}, {"batch": 32}]


def test_init_allow_val_change_lets_every_config_change_through() -> None:
    run = tracklog.init(project="p", mode="offline", config={"lr": 0.1}, allow_val_change=True)
    run.config.lr = 0.5
    run.config["lr"] = 0.6
    run.finish()
    assert run.config.lr == 0.6


def test_resume_auto_continues_a_run_that_did_not_finish_and_starts_anew_after_one_that_did() -> None:
    first = tracklog.init(project="p", mode="offline", resume="auto")
    first.log({"x": 1.0})
    first.finish(exit_code=1)  # failed: the next resume="auto" continues it
    second = tracklog.init(project="p", mode="offline", resume="auto")
    assert (second.id, second.dir, second.step) == (first.id, first.dir, 1)
    second.log({"x": 2.0})
    second.finish()  # finished: the next one is a new run
    third = tracklog.init(project="p", mode="offline", resume="auto")
    third.finish()
    assert third.id != first.id


def test_resume_auto_starts_a_new_run_when_its_note_is_damaged(tmp_path: Path) -> None:
    (tmp_path / "tracklog").mkdir()
    (tmp_path / "tracklog" / "resume-auto.json").write_text('{"run_id": "../../etc"}')
    run = tracklog.init(project="p", mode="offline", resume="auto")
    run.finish()
    assert run.id != "../../etc"
    assert not (tmp_path / "tracklog" / "resume-auto.json").exists()  # it finished: nothing to resume


def test_save_code_stores_the_main_script_with_the_run(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import tracklog\nrun = tracklog.init(project='p', mode='offline', save_code=True)\nrun.finish()\n"
    )
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=60)
    [run_dir] = (tmp_path / "tracklog").glob("offline-run-*")
    files = {r.file.name for _, r in read_records(str(run_dir)) if r.WhichOneof("kind") == "file"}
    assert files == {"train.py"}
