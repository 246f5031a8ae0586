"""The web API of one run: read, edit, stop, delete, console output and files, over a real server."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator

import pytest

from tracklog_server import RunKey, StoreServer

from .helpers import (
    STDERR,
    STDOUT,
    RunWriter,
    file_records,
    finish_record,
    history_record,
    metadata_record,
    output_record,
    start_record,
    summary_record,
    timing_record,
)
from .web import Web

HOSTILE = "<script>alert('x')</script>"
RUN = "/api/v1/runs/alice/mnist"


@pytest.fixture
def server(db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0)
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def web(server: StoreServer) -> Iterator[Web]:
    client = Web(server.http_url)
    yield client
    client.close()


def captured_run(server: StoreServer, key: RunKey, *, finished: bool = False) -> RunWriter:
    metadata = {
        "os": "Linux-6.1.0",
        "python": "3.12.1",
        "program": "/home/alice/train.py",
        "args": ["--lr", "0.1"],
        "host": "gpu-box-7",
        "username": "alice",
        "cpu_model": "Xeon",
        "git": {"remote": "https://example.invalid/team/repo.git", "commit": "0123456789abcdef"},
    }
    lines = [(1_700_000_000.0 + i, STDOUT, f"step {i}") for i in range(250)]
    lines.append((1_700_000_300.0, STDERR, "Traceback: " + HOSTILE))
    writer = RunWriter(key)
    records = [
        start_record(key, name="captured", tags=["a", "b"], config={"lr": 0.1, "odd": math.inf}),
        metadata_record(metadata),
        history_record([(i, {"loss": 1.0 / (i + 1)}) for i in range(20)]),
        summary_record({"best": math.nan}),
        output_record(lines),
        *file_records("output.log", 1, b"step 0\nstep 1\n"),
        *file_records('nested/dir/a "quoted";name.txt', 1, b"quoted"),
        *file_records("weights.bin", 1, bytes(range(256)) * 40),
        *file_records("partial.bin", 1, b"0123456789", chunk=4)[:1],
        timing_record(3725.0, 1800.0),
    ]
    if finished:
        records.append(finish_record(exit_code=0))
    server.store.ingest(key, writer.frames(*records))
    return writer


def test_a_run_reads_back_with_every_field_of_the_overview_and_non_finite_values_as_strings(
    server: StoreServer, web: Web
) -> None:
    captured_run(server, RunKey("alice", "mnist", "r1"))
    run = web.ok(f"{RUN}/r1")
    assert (run["entity"], run["project"], run["id"], run["name"]) == ("alice", "mnist", "r1", "captured")
    assert run["state"] == "running"
    assert run["created_at"].endswith("Z")
    assert run["ended_at"] is None
    assert run["runtime"] == 3725.0
    assert run["tracked_hours"] == 0.5
    assert run["tags"] == ["a", "b"]
    assert run["config"] == {"lr": 0.1, "odd": "Infinity"}
    assert run["summary"]["best"] == "NaN"
    assert run["summary"]["loss"] == pytest.approx(1 / 20)
    assert run["rows"] == 20
    assert run["user"] == "alice"
    assert run["metadata"]["command"] == "python /home/alice/train.py --lr 0.1"
    assert run["metadata"]["git"]["commit"] == "0123456789abcdef"
    assert run["metadata"]["hardware"] == {"cpu_model": "Xeon"}
    assert run["url"] == "/alice/mnist/runs/r1"


def test_errors_are_json_with_a_4xx_status_and_a_message_naming_what_was_wrong(web: Web) -> None:
    reply = web.get(f"{RUN}/nope")
    assert reply.status == 404
    assert reply.json == {"error": "run alice/mnist/nope not found"}
    reply = web.get("/api/v1/runs/alice/mnist/bad%20id%21")
    assert reply.status == 400
    assert "id" in reply.json["error"]
    reply = web.get("/api/v1/no/such/route")
    assert (reply.status, reply.json["error"]) == (404, "no API route /api/v1/no/such/route")
    reply = web.send("PATCH", f"{RUN}/nope", {"name": 3})
    assert reply.status == 400
    assert reply.json["error"].startswith("name:")


def test_patch_renames_and_sets_notes_group_job_type_and_the_tag_set(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "r2"))
    edit = {
        "name": "renamed",
        "notes": "a & b " + HOSTILE,
        "group": "g1",
        "job_type": "train",
        "tags": ["b", "c"],
    }
    reply = web.send("PATCH", f"{RUN}/r2", edit)
    assert reply.status == 200, reply.body
    run = reply.json
    assert (run["name"], run["notes"], run["group"], run["job_type"]) == (
        "renamed", "a & b " + HOSTILE, "g1", "train",
    )  # fmt: skip
    assert sorted(run["tags"]) == ["b", "c"]
    assert web.ok(f"{RUN}/r2")["name"] == "renamed"
    assert web.send("PATCH", f"{RUN}/r2", {"tags": [""]}).status == 400
    assert web.send("PATCH", f"{RUN}/r2", {"unknown": 1}).status == 400


def test_stop_asks_a_running_run_to_stop_and_refuses_a_finished_one_with_409(
    server: StoreServer, web: Web
) -> None:
    captured_run(server, RunKey("alice", "mnist", "live"))
    captured_run(server, RunKey("alice", "mnist", "done"), finished=True)
    reply = web.send("POST", f"{RUN}/live/stop")
    assert reply.status == 200
    assert reply.json["state"] == "running"  # until its process reacts
    assert server.store.heartbeat([RunKey("alice", "mnist", "live")]) == (RunKey("alice", "mnist", "live"),)
    reply = web.send("POST", f"{RUN}/done/stop")
    assert reply.status == 409
    assert "not running" in reply.json["error"]


def test_delete_removes_the_run_and_later_reads_say_it_was_deleted(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "gone"))
    reply = web.send("DELETE", f"{RUN}/gone?delete_files=true")
    assert (reply.status, reply.json) == (200, {"deleted": 1})
    reply = web.get(f"{RUN}/gone")
    assert reply.status == 410
    assert "deleted" in reply.json["error"]
    assert web.send("DELETE", f"{RUN}/gone").status == 410


def test_logs_page_through_the_console_and_search_counts_matches(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "r3"))
    page = web.ok(f"{RUN}/r3/logs?offset=240&limit=5")
    assert page["total"] == 251
    assert [line["n"] for line in page["lines"]] == [240, 241, 242, 243, 244]
    assert page["lines"][0] == {
        "n": 240, "stream": "stdout", "text": "step 240", "time": "2023-11-14T22:17:20.000Z",
    }  # fmt: skip
    found = web.ok(f"{RUN}/r3/logs?q=TRACEBACK")
    assert found["total"] == 1
    assert found["lines"][0]["n"] == 250
    assert found["lines"][0]["stream"] == "stderr"
    assert found["lines"][0]["text"] == "Traceback: " + HOSTILE  # JSON: the app escapes when it shows it
    assert web.ok(f"{RUN}/r3/logs?q=step%202&offset=1&limit=2")["lines"][0]["text"] == "step 20"
    text = web.get(f"{RUN}/r3/logs.txt")
    assert text.status == 200
    assert text.headers["Content-Disposition"] == 'attachment; filename="r3-output.log"'
    assert text.text.splitlines()[:2] == ["step 0", "step 1"]
    assert len(text.text.splitlines()) == 251
    assert web.get(f"{RUN}/r3/logs?limit=0").status == 400


def test_files_list_and_download_as_attachments_with_their_exact_bytes(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "r4"))
    files = {f["name"]: f for f in web.ok(f"{RUN}/r4/files")["files"]}
    assert files["output.log"]["text"] is True
    assert files["weights.bin"]["text"] is False
    assert files["weights.bin"]["size"] == 10240
    assert files["partial.bin"]["complete"] is False
    reply = web.get(f"{RUN}/r4/files/output.log")
    assert (reply.status, reply.body) == (200, b"step 0\nstep 1\n")
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Content-Disposition"] == (
        "attachment; filename=\"output.log\"; filename*=UTF-8''output.log"
    )
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    reply = web.get(f"{RUN}/r4/files/nested/dir/a%20%22quoted%22%3Bname.txt")
    assert (reply.status, reply.body) == (200, b"quoted")
    assert reply.headers["Content-Disposition"] == (
        "attachment; filename=\"a__quoted__name.txt\"; filename*=UTF-8''a%20%22quoted%22%3Bname.txt"
    )
    preview = web.get(f"{RUN}/r4/files/output.log?inline=1")
    assert preview.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert preview.headers["Content-Disposition"].startswith("inline;")
    assert "sandbox" in preview.headers["Content-Security-Policy"]
    binary = web.get(f"{RUN}/r4/files/weights.bin?inline=1")  # never shown as text
    assert binary.headers["Content-Type"] == "application/octet-stream"
    for path, status in (
        ("partial.bin", 404), ("nope.txt", 404), ("%2E%2E/%2E%2E/etc/passwd", 400),
    ):  # fmt: skip
        reply = web.get(f"{RUN}/r4/files/{path}")
        assert reply.status == status
        assert reply.json["error"]


def test_a_file_answers_etag_revalidation_and_byte_ranges(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "r5"))
    data = bytes(range(256)) * 40
    path = f"{RUN}/r5/files/weights.bin"
    full = web.get(path)
    etag = full.headers["ETag"]
    assert full.body == data
    assert full.headers["Accept-Ranges"] == "bytes"
    assert web.get(path, {"If-None-Match": etag}).status == 304
    assert web.get(path, {"If-None-Match": '"other"'}).status == 200
    for header, lo, hi in (("bytes=0-9", 0, 10), ("bytes=1000-", 1000, 10240), ("bytes=-16", 10224, 10240),
                           ("bytes=10000-99999", 10000, 10240)):  # fmt: skip
        part = web.get(path, {"Range": header})
        assert part.status == 206, header
        assert part.body == data[lo:hi]
        assert part.headers["Content-Range"] == f"bytes {lo}-{hi - 1}/10240"
    assert web.get(path, {"Range": "bytes=20000-"}).status == 416
    assert web.get(path, {"Range": "bytes=0-1,5-6"}).status == 200  # several ranges: the whole file
    assert web.get(path, {"Range": "bytes=0-9", "If-Range": '"stale"'}).status == 200
    assert web.get(path, {"Range": "bytes=0-9", "If-Range": etag}).status == 206


def test_connections_are_kept_alive_and_large_json_is_gzipped(server: StoreServer, web: Web) -> None:
    captured_run(server, RunKey("alice", "mnist", "r6"))
    for _ in range(5):
        web.ok(f"{RUN}/r6")
    assert web.connections == 1
    reply = web.get(f"{RUN}/r6/logs?limit=250", {"Accept-Encoding": "gzip"})
    assert reply.headers["Content-Encoding"] == "gzip"
    assert b"step 249" in gzip.decompress(reply.body)
    part = web.get(f"{RUN}/r6/files/weights.bin", {"Accept-Encoding": "gzip", "Range": "bytes=0-4095"})
    assert part.status == 206
    assert "Content-Encoding" not in part.headers  # a range is of the bytes as stored
