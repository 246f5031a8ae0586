"""Browser-test fixtures: a real store server with its web app, runs logged through the SDK, and a real
headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` (Playwright's own browser download is not used): scripts/test
installs it when it is missing and it can (as root); otherwise these tests are skipped, saying why.
Each test writes screenshots into tests/webapp/screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port, stop_home_processes, wait_for

SCREENSHOTS = Path(__file__).with_name("screenshots")
PROJECT = "webtest"

# Five finished runs with known values: run i has lr LRS[i], optimizer adam/sgd alternating, and acc
# rising to 0.5 + 0.1 * i at its last step (so Max acc splits 0.5..0.9 into four buckets of 0.1).
LRS = [0.1, 0.01, 0.001, 0.05, 0.005]
STEPS = 30
SEED = f"""
import os, tracklog
LRS = {LRS!r}
for i, lr in enumerate(LRS):
    config = {{"lr": lr, "optimizer": "adam" if i % 2 == 0 else "sgd", "batch": 32 * (i + 1)}}
    run = tracklog.init(project={PROJECT!r}, name=f"run-{{i}}", tags=["seed"], config=config)
    run.define_metric("loss", goal="minimize")  # kept under the config's reserved key, never shown
    top = 0.5 + 0.1 * i
    for s in range({STEPS}):
        acc = top * (s + 1) / {STEPS}
        run.log({{"acc": acc, "loss": 1.0 - acc}})
        print(f"epoch {{s}} of run-{{i}}: acc={{acc:.3f}}", flush=True)
    path = os.path.join(os.getcwd(), f"notes-{{i}}.txt")
    with open(path, "w") as f:
        f.write(f"hello from run-{{i}}\\n")
    run.save(path, policy="now")
    print("RUN", run.path, flush=True)
    run.finish()
"""


@dataclass
class WebStore:
    """The store server under test: its web app's base URL, the environment scripts log with."""

    base: str
    env: dict[str, str]
    workdir: Path
    run_paths: list[str]

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            exc.close()  # its response's socket; the code stays readable
            raise

    def script(self, code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _states(store: WebStore) -> list[str]:
    try:
        page = store.get(f"/api/v1/projects/local/{PROJECT}/runs?per_page=100")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # finish() returned once the daemon holds the rows; the store may lag
            return []
        raise
    return [r["state"] for r in page["runs"]]


@pytest.fixture(scope="module")
def web_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStore]:
    work = tmp_path_factory.mktemp("web")
    home = work / "home"
    grpc_port, http_port = free_port(), free_port()
    info = work / "server.json"
    log = open(work / "server.log", "ab")  # noqa: SIM115 - closed below; the child keeps its copy
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tracklog_server", "--db", f"sqlite:///{work / 'web.db'}",
            "--port", str(grpc_port), "--http-port", str(http_port), "--address-file", str(info),
        ],
        stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLOG_")}
    env.update(
        TRACKLOG_HOME=str(home),
        TRACKLOG_DIR=str(work),
        TRACKLOG_SERVER=f"127.0.0.1:{grpc_port}",
        TRACKLOG_ENTITY="local",
        TRACKLOG_HEARTBEAT_INTERVAL="0.5",
        TRACKLOG_DAEMON_IDLE_TIMEOUT="60",
        PYTHONUNBUFFERED="1",
    )
    store = WebStore(f"http://127.0.0.1:{http_port}", env, work, [])
    try:
        wait_for(info.exists, 30, "the store server to start")
        seed = store.script(SEED)
        out, err = seed.communicate(timeout=180)
        assert seed.returncode == 0, err
        store.run_paths = [line.split()[1] for line in out.splitlines() if line.startswith("RUN ")]
        assert len(store.run_paths) == len(LRS)
        wait_for(lambda: _states(store) == ["finished"] * len(LRS), 60, "the seeded runs to be finished")
        yield store
    finally:
        stop_home_processes(home)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it when run as root)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    executable = _chromium()
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    # An exception thrown in the page is a failure even when the test's own checks passed.
    assert errors == [], f"the page threw: {errors}"


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
