"""What ``init()`` takes as wandb's ``init()`` does: a YAML config file, included and excluded config
keys, ``reinit``, the keywords tracklog does not support (one warning each), and run fields from the
environment (``TRACKLOG_NAME``, ``_NOTES``, ``_TAGS``, ``_RUN_GROUP``, ``_JOB_TYPE``, ``_RESUME``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklog._errors import UsageError

if TYPE_CHECKING:
    import argparse

    from tracklog._terminal import Printer

# wandb.init() keywords tracklog accepts but does not act on.
UNSUPPORTED = (
    "force", "anonymous", "resume_from", "fork_from", "tensorboard", "sync_tensorboard", "monitor_gym",
)  # fmt: skip
REINIT = ("default", "finish_previous", "return_previous", "create_new")
_warned: set[str] = set()  # one warning per name and process, however often init() is called


def warn_unsupported(printer: Printer, given: Mapping[str, Any], what: str = "init({name}=...)") -> None:
    """One warning per process for each unsupported keyword or setting given a value."""
    for name, value in given.items():
        if value is None or value is False or name in _warned:
            continue
        _warned.add(name)
        printer.warn(f"{what.format(name=name)} is not supported by tracklog and is ignored")


def env_fields(environ: Mapping[str, str]) -> dict[str, Any]:
    """Run fields set through the environment, as wandb's WANDB_NAME, WANDB_NOTES, ... do."""
    out: dict[str, Any] = {}
    for key, env in (
        ("name", "TRACKLOG_NAME"),
        ("notes", "TRACKLOG_NOTES"),
        ("group", "TRACKLOG_RUN_GROUP"),
        ("job_type", "TRACKLOG_JOB_TYPE"),
        ("resume", "TRACKLOG_RESUME"),
    ):
        value = environ.get(env)
        if value:
            out[key] = value
    tags = environ.get("TRACKLOG_TAGS")
    if tags:
        out["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
    return out


def reinit_mode(value: object) -> str:
    """``reinit`` as "finish_previous" or "return_previous" (what to do with a run already going)."""
    if value is None or value is True or value == "default":
        # wandb's default outside notebooks is "return_previous"; tracklog has always ended the
        # previous run (a new init() is a new run), and keeps doing so.
        return "finish_previous"
    if value is False:
        return "return_previous"
    if value not in REINIT:
        raise UsageError(f"reinit must be a bool or one of {', '.join(REINIT)}; got {value!r}")
    return str(value)


def load_config(
    config: Mapping[str, Any] | argparse.Namespace | str | os.PathLike[str] | None,
) -> Mapping[str, Any] | argparse.Namespace | None:
    """``config`` as given, or the mapping in a YAML file when it is a path (as wandb reads it:
    ``key: {value: v, desc: ...}`` entries become ``key: v``; ``wandb_version`` and ``_wandb`` go)."""
    if not isinstance(config, str | os.PathLike):
        return config
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise UsageError(f"init() config file {os.fspath(config)!r} cannot be read: {reason}") from exc
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML is a dependency of tracklog
        raise UsageError("init() config given as a YAML file needs PyYAML (pip install pyyaml)") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"init() config file {os.fspath(config)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"init() config file {os.fspath(config)!r} must hold a mapping of keys to values, "
            f"not a {type(data).__name__}"
        )
    data.pop("wandb_version", None)
    data.pop("_wandb", None)
    return {
        str(k): (v["value"] if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} else v)
        for k, v in data.items()
    }


def select_keys(
    config: Mapping[str, Any] | argparse.Namespace | None,
    exclude: Sequence[str] | None,
    include: Sequence[str] | None,
) -> Mapping[str, Any] | argparse.Namespace | None:
    """``config`` without the keys in ``exclude``, or with only those in ``include``."""
    if exclude is None and include is None:
        return config
    if exclude is not None and include is not None:
        raise UsageError("init() takes config_exclude_keys or config_include_keys, not both")
    if config is None:
        return None
    argparse_module = sys.modules.get("argparse")
    if argparse_module is not None and isinstance(config, argparse_module.Namespace):
        config = vars(config)
    if not isinstance(config, Mapping):
        return config  # Config.update names the wrong type
    for what, keys in (("config_exclude_keys", exclude), ("config_include_keys", include)):
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise TypeError(f"init() {what} must be a list of str, got {keys!r}")
    if exclude is not None:
        return {k: v for k, v in config.items() if k not in exclude}
    assert include is not None
    return {k: v for k, v in config.items() if k in include}


def main_script() -> Path | None:
    """The file the interpreter runs as ``__main__``, if there is one (not a REPL, not ``-c``)."""
    main = sys.modules.get("__main__")
    name = getattr(main, "__file__", None)
    if not name:
        return None
    path = Path(name).absolute()
    return path if path.is_file() else None
