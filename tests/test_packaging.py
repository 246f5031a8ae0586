"""Properties of the distribution as a whole: light imports, committed generated code, public surfaces."""

from __future__ import annotations

import filecmp
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fresh_python(*lines: str) -> str:
    """What ``lines`` print in a fresh interpreter (nothing imported by this test process)."""
    code = "\n".join(lines)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_tracklog_loads_neither_sqlalchemy_psutil_tenacity_nor_the_web_apps_libraries() -> None:
    out = _fresh_python(
        "import sys, tracklog",
        "heavy = sorted(m for m in ('sqlalchemy', 'psutil', 'tenacity', 'alembic', 'psycopg', 'tracklogd',"
        " 'tracklog_server', 'fastapi', 'starlette', 'uvicorn', 'pydantic', 'numpy', 'IPython', 'ipykernel')"
        " if m in sys.modules)",
        "print(','.join(heavy))",
    )
    assert out.strip() == ""


def test_import_tracklog_loads_the_query_client_only_when_api_is_used() -> None:
    out = _fresh_python(
        "import sys, tracklog",
        "before = 'tracklog._api' in sys.modules and 'Api' in dir(tracklog)",
        "from tracklog._api import Api",
        "print(before, 'Api' in dir(tracklog), tracklog.Api is Api)",
    )
    assert out.split() == ["False", "True", "True"]


def test_the_committed_generated_protobuf_code_is_up_to_date(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, env=env, capture_output=True
    )
    fresh = tmp_path / "tracklog" / "v1"
    committed = ROOT / "client" / "tracklog" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.suffix in (".py", ".pyi"))
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run scripts/gen-proto and commit the result"


@pytest.mark.parametrize("package", ["tracklog", "tracklogd", "tracklog_server"])
def test_each_package_declares_a_sorted_public_surface(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    # ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical.
    assert exported == sorted(exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which does not exist"


def test_the_console_script_prints_its_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tracklog", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    for command in (
        "server",
        "daemon",
        "sync",
        "runs",
        "login",
        "logout",
        "offline",
        "online",
        "disabled",
        "status",
    ):
        assert command in out.stdout
