"""The committed web-app build is what its sources and lock file build today (as the proto check does).

The build under server/tracklog_server/transport/webapp/ is committed so that a clone, or `pip install`,
gives a working UI with no Node toolchain. This test rebuilds it from a copy of webapp/ with `npm ci`
(the lock file's exact packages), `tsc --noEmit` (strict) and the app's unit tests, and fails when the
committed files differ: run scripts/build-webapp and commit the result.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "server" / "tracklog_server" / "transport" / "webapp"

pytestmark = pytest.mark.slow


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_committed_web_app_build_is_up_to_date(tmp_path: Path) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node and npm are not installed: the committed build cannot be checked here")
    # A copy without node_modules, so the check builds from the lock file alone and never touches the
    # working tree's installed packages.
    shutil.copytree(ROOT / "webapp", tmp_path / "webapp", ignore=shutil.ignore_patterns("node_modules"))
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    out = tmp_path / "build"
    env = {**os.environ, "CI": "1"}
    done = subprocess.run(
        [str(tmp_path / "scripts" / "build-webapp"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"the web app does not build:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    names = _files(out)
    assert "index.html" in names
    assert names == _files(COMMITTED), "run scripts/build-webapp and commit the result"
    _, mismatch, errors = filecmp.cmpfiles(out, COMMITTED, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run scripts/build-webapp and commit the result"


def test_the_built_page_loads_only_its_own_hashed_assets() -> None:
    html = (COMMITTED / "index.html").read_text()
    assets = _files(COMMITTED / "assets")
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert f"/assets/{asset}" in html, f"{asset} is built but index.html does not load it"
    assert "http://" not in html
    assert "https://" not in html
