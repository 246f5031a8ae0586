"""Automatic capture in the SDK: console output, files saved with the run, and time accounting."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracklog
from tracklog._capture import Capture
from tracklog.testing import read_records
from tracklog.v1 import records_pb2

SCRIPT = """
import ctypes, logging, sys, tracklog
from tqdm import tqdm
run = tracklog.init(project="console", mode=sys.argv[1])
print("first line from print")
logging.warning("second line from logging")
for _ in tqdm(range(3), desc="bar", file=sys.stderr, ascii=True, mininterval=0):
    pass
ctypes.CDLL(None).write(1, b"fourth line from C\\n", 19)
print("fifth line", flush=True)
print("no newline at the end", end="")
run.finish()
sys.stdout.write(run.dir)
"""


def _run_script(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TRACKLOG_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,  # a capture that blocks the script fails here, not at the suite's timeout
        check=True,
    )


def _untimed(data: bytes) -> bytes:
    return re.sub(rb"\[[^\]]*\]", b"[...]", data)


def _without_bar(data: bytes) -> bytes:
    return re.sub(rb"\r?bar:[^\n]*\n", b"<bar>\n", data)


def _last_bar(data: bytes) -> bytes:
    (line,) = re.findall(rb"\r?bar:[^\n]*\n", data)
    return line.rsplit(b"\r", 1)[-1].rstrip()


def _output(run_dir: str) -> list[tuple[int, str]]:
    return [
        (line.stream, line.text)
        for _, record in read_records(run_dir)
        if record.WhichOneof("kind") == "output"
        for line in record.output.lines
    ]


def test_console_output_is_recorded_in_order_and_the_terminal_sees_exactly_the_same_bytes(
    tmp_path: Path,
) -> None:
    captured = _run_script(tmp_path, "offline")
    plain = _run_script(tmp_path, "disabled")
    run_dir = captured.stdout.decode().rsplit("no newline at the end", 1)[1]
    assert captured.stdout.replace(run_dir.encode(), b"") == plain.stdout.replace(
        plain.stdout.rsplit(b"no newline at the end", 1)[1], b""
    )
    # tqdm redraws its bar as often as timing allows, with rates that differ between any two runs:
    # compare everything else byte for byte, and the bar's final state without its timings.
    assert _without_bar(captured.stderr) == _without_bar(plain.stderr)
    assert _untimed(_last_bar(captured.stderr)) == _untimed(_last_bar(plain.stderr))
    lines = _output(run_dir)
    texts = [text for _, text in lines]
    assert texts[0] == "first line from print"
    assert texts[1] == "WARNING:root:second line from logging"
    assert texts[2].startswith("bar: 100%")
    assert "3/3" in texts[2]
    assert texts[3:] == ["fourth line from C", "fifth line", "no newline at the end"]
    assert [stream for stream, _ in lines] == [1, 2, 2, 1, 1, 1]
    assert (Path(run_dir) / "output.log").read_text().splitlines() == texts


def test_console_capture_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLOG_CONSOLE", "off")
    run = tracklog.init(project="p", mode="offline")
    print("not recorded")
    run.finish()
    assert _output(run.dir) == []


def _files(run_dir: str) -> dict[tuple[str, int], bytes]:
    out: dict[tuple[str, int], bytes] = {}
    for _, record in read_records(run_dir):
        if record.WhichOneof("kind") == "file":
            chunk = record.file
            key = (chunk.name, chunk.version)
            assert len(out.get(key, b"")) == chunk.offset
            out[key] = out.get(key, b"") + chunk.data
            if chunk.last:
                assert hashlib.sha256(out[key]).hexdigest() == chunk.sha256
    return out


def test_saved_files_travel_with_the_run_in_chunks_with_versions_per_policy(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    big = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "ckpt" / "model.bin").write_bytes(big)
    (tmp_path / "notes.txt").write_text("v1")
    (tmp_path / "final.txt").write_text("done")
    run = tracklog.init(project="p", mode="offline", config={"lr": 0.25})
    run.save(str(tmp_path / "ckpt" / "*.bin"), base_path=str(tmp_path), policy="now")
    run.save("notes.txt", policy="live")
    run.save("final.txt", policy="end")
    run.log({"x": 1.0})
    run._sender.wake.set()  # type: ignore[union-attr]
    (tmp_path / "notes.txt").write_text("version two")
    os.utime(tmp_path / "notes.txt", (1, 1))  # a different mtime, whatever the clock's resolution
    run.finish()
    files = _files(run.dir)
    assert files[("ckpt/model.bin", 1)] == big
    assert files[("notes.txt", 1)] in (b"v1", b"version two")
    assert files[max(k for k in files if k[0] == "notes.txt")] == b"version two"
    assert files[("final.txt", 1)] == b"done"
    assert json.loads(files[("config.json", 1)]) == {"lr": 0.25}


def test_save_rejects_an_unknown_policy_and_a_pattern_outside_its_base(tmp_path: Path) -> None:
    run = tracklog.init(project="p", mode="offline")
    with pytest.raises(ValueError, match="policy must be one of now, end, live"):
        run.save("x.txt", policy="sometimes")
    with pytest.raises(ValueError, match="not inside base_path"):
        run.save("/etc/passwd", base_path=str(tmp_path))
    run.finish()


def test_tracked_time_leaves_out_gaps_when_the_process_was_suspended() -> None:
    now = [100.0]
    capture = Capture(None, warn=print, start_wall=0.0, clock=lambda: now[0], wall=lambda: 1000.0)
    for step in (0.1, 0.1, 30.0, 0.1):  # the 30 s gap: SIGSTOP or the machine asleep
        now[0] += step
        capture.tick()
    timing = capture.timing().timing
    assert timing.runtime == 1000.0
    assert timing.tracked_seconds == pytest.approx(0.3)


@pytest.mark.slow
def test_a_run_stopped_with_sigstop_tracks_less_time_than_its_runtime(tmp_path: Path) -> None:
    code = """
import sys, tracklog
run = tracklog.init(project="timing", mode="offline")
print(run.dir, flush=True)
sys.stdin.readline()
run.finish()
"""
    env = {**os.environ, "TRACKLOG_SILENT": "true", "TRACKLOG_CONSOLE": "off"}
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        run_dir = proc.stdout.readline().decode().strip()
        proc.send_signal(signal.SIGSTOP)
        try:
            # Not synchronisation: the suspension being measured lasts this long.
            subprocess.run(["sleep", "3"], check=True)
        finally:
            proc.send_signal(signal.SIGCONT)
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
    timings = [r.timing for _, r in read_records(run_dir) if r.WhichOneof("kind") == "timing"]
    assert timings[-1].runtime >= 3.0
    assert timings[-1].runtime - timings[-1].tracked_seconds >= 2.5
    assert isinstance(timings[-1], records_pb2.Timing)


def test_a_thread_printing_while_the_run_finishes_never_crashes_the_process(tmp_path: Path) -> None:
    # print() holds sys.stdout as a borrowed reference; finish() swaps the capture's wrapper out.
    # Before the wrappers were kept alive this crashed (SIGSEGV) in about one run of three.
    code = """
import sys, threading, time, tracklog
run = tracklog.init(project="p", mode="offline")
stop = False
def chatter():
    while not stop:
        print("from a thread", flush=True)
        time.sleep(0.001)
thread = threading.Thread(target=chatter)
thread.start()
d = {f"k{j}": 0.5 for j in range(10)}
for i in range(100_000):
    run.log(d)
run.finish()
stop = True
thread.join()
"""
    env = {**os.environ, "TRACKLOG_SILENT": "true"}
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, check=False, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_output_of_a_forked_child_is_recorded_by_the_parent(tmp_path: Path) -> None:
    code = """
import os, sys, tracklog
run = tracklog.init(project="p", mode="offline")
print("parent before", flush=True)
pid = os.fork()
if pid == 0:
    print("from the child", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent after", flush=True)
run.finish()
sys.stderr.write(run.dir)
"""
    terminal, recorded = _run_forking_script(tmp_path, code)
    assert recorded == ["parent before", "from the child", "parent after"]
    assert terminal == ["parent before", "from the child", "parent after"]


def test_a_child_forked_while_the_capture_lock_is_held_can_still_print(tmp_path: Path) -> None:
    # The console reader thread holds the capture lock while it drains the pipes; a fork at that
    # moment used to leave the lock held forever in the child, whose first print() then hung.
    # Holding the lock across the fork makes that moment certain.
    code = """
import os, sys, tracklog
run = tracklog.init(project="p", mode="offline")
lock = run._console._lock
lock.acquire()
pid = os.fork()
if pid == 0:  # the lock stays as fork left it: held, by a thread the child does not have
    print("from the child", flush=True)
    os._exit(0)
lock.release()
os.waitpid(pid, 0)
print("parent after", flush=True)
run.finish()
sys.stderr.write(run.dir)
"""
    terminal, recorded = _run_forking_script(tmp_path, code)
    assert terminal == ["from the child", "parent after"]
    assert recorded == ["from the child", "parent after"]


def _run_forking_script(tmp_path: Path, code: str) -> tuple[list[str], list[str]]:
    """Runs ``code`` (an offline run that writes its dir to stderr); (terminal lines, recorded lines)."""
    env = {**os.environ, "TRACKLOG_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, check=True, timeout=60
    )
    recorded = [text for _, text in _output(done.stderr.decode().strip())]
    return done.stdout.decode().splitlines(), recorded
