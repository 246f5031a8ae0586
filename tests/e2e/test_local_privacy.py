"""The local store is its user's alone, and a run's frames come only from its writer.

"Another local user" is a real one: a child process running as uid/gid 65534 ('nobody'). The files
live in a fresh directory that user may traverse (pytest's own temp root is private to root), so a
refusal comes from the socket, the token or the home's mode, each asserted by its own error.
"""

from __future__ import annotations

import errno
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.protobuf
import grpc
import psutil
import pytest

import tracklog
from tests.e2e.conftest import Script, stop_home_processes, wait_for
from tracklog import _home
from tracklog._history import BatchBuilder
from tracklog._tokens import page_url
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc

pytestmark = pytest.mark.slow

NOBODY = 65534

# Runs as 'nobody'. Every attempt is reported, never raised, so that the test asserts on all of them.
STRANGER = r"""
import json, os, socket, sys, urllib.error, urllib.request
import grpc
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc

args = json.loads(sys.argv[1])
out = {"uid": os.getuid()}

def attempt(name, fn):
    try:
        out[name] = {"ok": fn()}
    except grpc.RpcError as exc:
        out[name] = {"grpc": exc.code().name, "details": exc.details()}
    except urllib.error.HTTPError as exc:
        out[name] = {"http": exc.code, "body": exc.read().decode()}
    except OSError as exc:
        out[name] = {"errno": exc.errno}

def connect():
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(args["socket"])
    return "connected"

attempt("stat", lambda: oct(os.stat(args["socket"]).st_mode))
attempt("connect", connect)
attempt("token_file", lambda: open(args["token_file"]).read())
ref = records_pb2.RunRef(**args["ref"])
with grpc.insecure_channel(args["target"]) as channel:
    stub = store_pb2_grpc.StoreStub(channel)
    attempt("get_run", lambda: str(stub.GetRun(store_pb2.GetRunRequest(ref=ref), timeout=5)))
    attempt("list_runs", lambda: len(stub.ListRuns(store_pb2.ListRunsRequest(), timeout=5).runs))
    new = records_pb2.RunRef(entity=ref.entity, project=ref.project, id="forged1")
    start = records_pb2.Record(start=records_pb2.RunStart(ref=new)).SerializeToString()
    frame = records_pb2.Frame(seq=1, record=start)
    request = store_pb2.IngestRequest(ref=new, frames=[frame], writer_token="f" * 48)
    attempt("create_run", lambda: str(stub.Ingest(request, timeout=5)))
    frame = records_pb2.Frame(seq=args["next_seq"], record=records_pb2.Record().SerializeToString())
    request = store_pb2.IngestRequest(ref=ref, frames=[frame], writer_token="f" * 48)
    attempt("forge_frame", lambda: str(stub.Ingest(request, timeout=5)))
for i, url in enumerate(args["urls"]):
    attempt(f"http{i}", lambda: urllib.request.urlopen(url, timeout=10).read().decode())
print(json.dumps(out))
"""


def _stranger_python() -> tuple[str, dict[str, str]]:
    """An interpreter user 65534 can run that loads this grpc (the venv's may sit under a private
    directory), and the PYTHONPATH that gives it grpc, protobuf and tracklog's generated code."""
    if os.geteuid() != 0:
        pytest.skip("acting as another local user needs root")
    paths = {
        str(Path(tracklog.__file__).parents[1]),
        str(Path(grpc.__file__).parents[1]),
        str(Path(google.protobuf.__file__).parents[2]),
    }
    env = {"PYTHONPATH": os.pathsep.join(sorted(paths)), "PATH": os.defpath, "HOME": "/"}
    candidates = [os.path.realpath(sys.executable), shutil.which("python3", path=os.defpath)]
    for python in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [python, "-c", "import grpc, tracklog.v1.store_pb2"],
                user=NOBODY, group=NOBODY, extra_groups=[], env=env, cwd="/",
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        except PermissionError:  # it may not even execute it
            continue
        if probe.returncode == 0:
            return python, env
    pytest.skip("no Python interpreter that user 65534 can run with this grpc")


def as_stranger(args: dict[str, Any]) -> dict[str, Any]:
    python, env = _stranger_python()
    done = subprocess.run(
        [python, "-c", STRANGER, json.dumps(args)],
        user=NOBODY, group=NOBODY, extra_groups=[], env=env, cwd="/",
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["uid"] == NOBODY
    return result


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may traverse (not list), for this test's home and runs."""
    path = Path(tempfile.mkdtemp(prefix="tracklog-sec-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = shared / "home"
    monkeypatch.setenv("TRACKLOG_HOME", str(path))
    yield path
    stop_home_processes(path)


@pytest.fixture
def owner(shared: Path, home: Path) -> Iterator[Callable[[str], Script]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLOG_")}
    env.update(TRACKLOG_HOME=str(home), TRACKLOG_DIR=str(shared / "runs"), PYTHONUNBUFFERED="1")
    started: list[Script] = []

    def start(code: str) -> Script:
        s = Script(code, env, shared)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.communicate()


def _local_store_target(home: Path) -> str:
    status = wait_for(lambda: _daemon_status(home), 30, "the daemon's local store")
    return str(status)


def _daemon_status(home: Path) -> str:
    import tracklogd

    status = tracklogd.status(home)
    return status.local_server if status is not None else ""


def _history_rows(api: tracklog.Api, path: str) -> int:
    try:
        return api.run(path).history_rows
    except tracklog.NotFoundError:
        return -1


def test_another_user_reaches_neither_the_local_stores_grpc_nor_its_pages_and_its_owner_does(
    owner: Callable[[str], Script], home: Path, shared: Path
) -> None:
    s = owner(
        """
        import tracklog
        run = tracklog.init(project="private", name="secret-run-1")
        print("RUN", run.path, flush=True)
        for i in range(10):
            run.log({"loss": 1.0 / (i + 1)})
        run.finish()
        """
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    (url,) = re.findall(r"View run \S+ \(finished\) at: (\S+)", s.err)  # the closing line's URL
    entity, project, run_id = path.split("/")
    target = _local_store_target(home)

    with tracklog.Api() as api:
        wait_for(lambda: _history_rows(api, path) == 10, 30, "the run's rows")
    base = json.loads((home / "server.json").read_text())["http"]
    clean = f"{base}/{entity}/{project}/runs/{run_id}"
    socket_path = home / "store.sock"  # a short home: no fallback to the temp dir
    args = {
        "socket": str(socket_path),
        "token_file": str(home / "http-token"),
        "target": target,
        "ref": {"entity": entity, "project": project, "id": run_id},
        "next_seq": 1000,
        "urls": [
            base + "/",
            f"{base}/{entity}/{project}",
            clean,
            f"{base}/api/v1/runs/{path}",
            f"{base}/{entity}/{project}/runs/{run_id}/files/output.log",
            f"{clean}?token={secrets.token_hex(24)}",
        ],
    }

    # The stranger reads nothing, creates nothing, forges nothing, over gRPC or HTTP ...
    closed = as_stranger(args)
    for name in ("get_run", "list_runs", "create_run", "forge_frame"):
        assert closed[name].get("grpc") == "UNAVAILABLE", closed[name]
    for i in range(len(args["urls"])):
        assert closed[f"http{i}"].get("http") == 403, closed[f"http{i}"]
        assert "secret-run-1" not in closed[f"http{i}"]["body"]
    # ... because the home is 0700: it cannot even reach the socket's name (nor the token file).
    assert closed["stat"] == {"errno": errno.EACCES}
    assert closed["connect"] == {"errno": errno.EACCES}
    assert closed["token_file"] == {"errno": errno.EACCES}

    # With the home opened for traversal, the socket's own mode (0600) still refuses the stranger.
    os.chmod(home, 0o711)
    try:
        opened = as_stranger(args)
    finally:
        os.chmod(home, 0o700)
    assert "ok" in opened["stat"]  # the name is reachable now ...
    assert opened["connect"] == {"errno": errno.EACCES}  # ... and the socket refuses the connection
    assert opened["token_file"] == {"errno": errno.EACCES}
    for name in ("get_run", "list_runs", "create_run", "forge_frame"):
        assert opened[name].get("grpc") == "UNAVAILABLE", opened[name]

    # The owner: Api(), `tracklog runs`, and the printed URL (its token, then the cookie).
    with tracklog.Api() as api:
        assert [r.id for r in api.runs(f"{entity}/{project}")] == [run_id]  # nothing was created
        run = api.run(path)
        assert (run.history_rows, run.state) == (10, "finished")
    listed = subprocess.run(
        [sys.executable, "-m", "tracklog", "runs", f"{entity}/{project}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert path in listed.stdout
    token = (home / "http-token").read_text().strip()
    assert url == f"{clean}?token={token}"
    with tracklog.Api() as api:
        assert api.run(path).url == url
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(url, timeout=10) as page:
        assert page.status == 200  # the web app's page; its data comes from the API below
        assert page.url == clean  # the token left the address bar for an HttpOnly cookie
    with browser.open(page_url(base, f"api/v1/runs/{path}"), timeout=10) as api_page:
        assert json.loads(api_page.read())["name"] == "secret-run-1"

    # What keeps others out: a 0700 home, a 0600 socket, a 0600 token, and no TCP port for gRPC.
    assert target == f"unix:{socket_path}" == f"unix:{_home.store_socket_path(home)}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "http-token").stat().st_mode) == 0o600
    server_pid = int(json.loads((home / "server.json").read_text())["pid"])
    connections = psutil.Process(server_pid).net_connections("inet")
    listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    assert listening == {int(base.rsplit(":", 1)[1])}


def test_a_forged_frame_for_a_live_run_is_refused_and_every_later_row_arrives(
    owner: Callable[[str], Script], home: Path, shared: Path
) -> None:
    go = shared / "go"
    os.mkfifo(go)
    s = owner(
        f"""
        import tracklog
        run = tracklog.init(project="live")
        print("RUN", run.path, flush=True)
        for i in range(5):
            run.log({{"loss": float(i)}})
        print("HALF", flush=True)
        open({str(go)!r}).read()  # blocks until the test has tried its forgery
        for i in range(5, 10):
            run.log({{"loss": float(i)}})
        run.finish()
        """
    )
    path = s.wait_line("RUN ")
    s.wait_line("HALF")
    entity, project, run_id = path.split("/")
    ref = records_pb2.RunRef(entity=entity, project=project, id=run_id)
    with tracklog.Api() as api:
        wait_for(lambda: _history_rows(api, path) == 5, 30, "the first rows")

    # A frame at the next seq, at a step far ahead: accepted, it would take the writer's seq and make
    # the store drop every later row (steps at or below the last are dropped).
    forged = BatchBuilder()
    forged.add(10**9, 1.0, {"loss": -1.0})
    record = records_pb2.Record(history=forged.encode()).SerializeToString()
    with grpc.insecure_channel(_local_store_target(home)) as channel:
        stub = store_pb2_grpc.StoreStub(channel)
        last_seq = stub.GetRun(store_pb2.GetRunRequest(ref=ref), timeout=10).last_seq
        frame = records_pb2.Frame(seq=last_seq + 1, record=record)
        for token in (secrets.token_hex(24), ""):
            request = store_pb2.IngestRequest(ref=ref, frames=[frame], writer_token=token)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Ingest(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "accepts frames only from its writer" in (refused.value.details() or "")

    opener = threading.Thread(target=lambda: go.write_text("go\n"))
    opener.start()
    assert s.wait() == 0, s.err
    opener.join(10)
    with tracklog.Api() as api:
        wait_for(lambda: api.run(path).state == "finished", 30, "the run to finish")
        run = api.run(path)
        rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == list(range(10))
    assert [r["loss"] for r in rows] == [float(i) for i in range(10)]
    assert run.rows_lost == 0
