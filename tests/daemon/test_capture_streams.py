"""The capture of attached runs: what the daemon makes for a run (system metrics, metadata, files)
goes to the daemon's own spool of the run and to the store in the daemon's own sequence, never
through the training process; the metadata is captured once per training process."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import (
    CLIENT_PID,
    GitRepo,
    MakeDaemon,
    RecordingOutbox,
    StartTrainer,
    system_values,
)
from tracklog._spool import frames as spool_frames
from tracklog.v1 import daemon_pb2, records_pb2
from tracklogd import DaemonConfig
from tracklogd._capture import Capture
from tracklogd._git import Git, GitInfo
from tracklogd._own import own_spool_path
from tracklogd._pending import PendingDir
from tracklogd._runs import RunRegistry, RunSlot
from tracklogd._service import DaemonService, StreamOutbox
from tracklogd.testing import (
    FakeCounters,
    FakeGpu,
    FakeNvml,
    FakePids,
    FakeProcessState,
    FakeStoreServer,
    RunStreamClient,
    finish,
    frames,
    make_ref,
    run_start,
    wait_until,
)

FAST = {"system_sample_interval": 0.05, "system_report_interval": 0.1}
KEY = "me/proj/run1"

Records = list[records_pb2.Record]


def kinds(records: Records) -> list[str]:
    return [str(record.WhichOneof("kind")) for record in records]


def files(records: Records) -> dict[str, bytes]:
    """Every file whose last chunk arrived, reassembled (offsets checked)."""
    parts: dict[str, bytes] = {}
    complete: dict[str, bytes] = {}
    for record in records:
        if record.WhichOneof("kind") != "file":
            continue
        chunk = record.file
        held = parts.get(chunk.name, b"")
        assert chunk.offset == len(held)
        assert len(chunk.data) <= 1 << 20
        parts[chunk.name] = held + chunk.data
        if chunk.last:
            assert chunk.size == len(parts[chunk.name])
            assert chunk.sha256 == hashlib.sha256(parts[chunk.name]).hexdigest()
            complete[chunk.name] = parts[chunk.name]
    return complete


def own_records(run_dir: Path, run_id: str = "run1") -> list[tuple[int, records_pb2.Record]]:
    """The frames of the daemon's own spool of a run, as (seq, record)."""
    path = own_spool_path(run_dir, run_id)
    if not path.exists():
        return []
    return [(frame.seq, records_pb2.Record.FromString(frame.payload)) for frame in spool_frames(path)]


def sampler_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "tracklogd-sampler")


def test_system_metrics_metadata_and_files_go_to_the_daemons_own_spool_and_sequence_not_the_stream(
    make_daemon: MakeDaemon,
    run_dir: Path,
    git_repo: GitRepo,
    start_trainer: StartTrainer,
    store: FakeStoreServer,
) -> None:
    trainer = start_trainer(git_repo.root, "train.py")
    nvml = FakeNvml(FakeGpu(processes={trainer.pid: 1 << 30}))
    daemon = make_daemon(system_metrics=True, capture_metadata=True, nvml=nvml, **FAST)
    ref = make_ref()

    with RunStreamClient(daemon.target, ref, str(run_dir), pid=trainer.pid) as client:
        client.attach()
        client.send(frames(ref, 1))
        assert store.store.wait_for(
            lambda: {"system", "metadata"} <= set(kinds(store.store.daemon_records(KEY))), 20
        )
        client.send_nowait([(3, finish())])
        replies = []
        while (reply := client.next_reply()) is not None and reply.WhichOneof("kind") != "ack":
            replies.append(reply.WhichOneof("kind"))

    assert replies == []  # nothing of the daemon's travels on the stream (Attached came before)
    assert store.store.wait_for_seq(KEY, 3)
    assert kinds(store.store.records(KEY)) == ["start", "history", "finish"]
    records = store.store.daemon_records(KEY)
    spooled = own_records(run_dir)
    assert [seq for seq, _ in spooled] == list(range(1, len(spooled) + 1))  # its own sequence, from 1
    assert [record for _, record in spooled][: len(records)] == records
    system = next(r.system for r in records if r.WhichOneof("kind") == "system")
    values = system_values(records_pb2.Record(system=system).SerializeToString())
    assert 0.0 <= values["system/cpu"] <= 100.0
    assert values["system/proc.memory.rssMB"] > 1.0  # the trainer's, through real psutil
    assert values["system/gpu.0.gpu"] == 50.0
    assert values["system/gpu.process.0.memoryAllocatedBytes"] == float(1 << 30)

    (metadata,) = [json.loads(r.metadata.json) for r in records if r.WhichOneof("kind") == "metadata"]
    assert metadata["git"]["commit"] == git_repo.commit
    assert metadata["git"]["remote"] == "https://git.example.com/team/repo.git"
    assert metadata["gpu_count"] == 1
    captured = [kind for kind in kinds(records) if kind != "system"]
    assert captured[-1] == "metadata"  # the files, then the metadata: the capture is complete
    assert set(captured[:-1]) == {"file"}
    saved = files(records)
    assert b"pytest==" in saved["requirements.txt"]
    assert b"train.py" in saved["diff.patch"]
    assert json.loads(saved["metadata.json"]) == metadata
    assert (run_dir / "metadata.json").read_bytes() == saved["metadata.json"]


def test_two_runs_share_one_sampler_thread_which_ends_when_both_have_finished(
    make_daemon: MakeDaemon, tmp_path: Path, store: FakeStoreServer
) -> None:
    counters = FakeCounters()
    daemon = make_daemon(system_metrics=True, metrics_source=counters, nvml=None, **FAST)
    refs = [make_ref(run_id) for run_id in ("run1", "run2")]
    clients = [RunStreamClient(daemon.target, ref, str(tmp_path / ref.id), pid=CLIENT_PID) for ref in refs]
    for client, ref in zip(clients, refs, strict=True):
        client.attach()
        client.send(frames(ref, 1))

    for ref in refs:
        key = f"me/proj/{ref.id}"
        assert store.store.wait_for(lambda key=key: "system" in kinds(store.store.daemon_records(key)))
    assert sampler_threads() == 1

    for client in clients:
        client.cancel()  # its process lives on (FakePids): still sampled
    assert sampler_threads() == 1
    for ref in refs:
        with RunStreamClient(daemon.target, ref, str(tmp_path / ref.id), pid=CLIENT_PID) as again:
            again.attach()
            again.send([(3, finish())])
    assert wait_until(lambda: sampler_threads() == 0)
    assert wait_until(lambda: daemon.status().runs == [])  # both spools synced: the runs are let go
    for ref in refs:
        records = store.store.daemon_records(f"me/proj/{ref.id}")
        assert records == [record for _, record in own_records(tmp_path / ref.id, ref.id)]


def test_nothing_is_captured_when_the_capture_is_turned_off(
    make_daemon: MakeDaemon, run_dir: Path, git_repo: GitRepo, start_trainer: StartTrainer
) -> None:
    trainer = start_trainer(git_repo.root, "train.py")
    daemon = make_daemon(system_metrics=False, capture_metadata=False, **FAST)
    ref = make_ref()

    with RunStreamClient(daemon.target, ref, str(run_dir), pid=trainer.pid) as client:
        assert not client.attach().metadata
        client.send(frames(ref, 3, finished=True))
        client.close()

    assert wait_until(lambda: daemon.status().runs == [])
    assert not own_spool_path(run_dir, "run1").exists()
    assert sampler_threads() == 0


# -- the capture and the registry, without gRPC ----------------------------------------------------


class GatedGit(Git):
    """A Git whose ``info`` waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def info(self, directory: str | Path) -> GitInfo:
        self.entered.set()
        assert self.release.wait(10), "the test never released git"
        return GitInfo(commit="0" * 40, branch="main")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunRegistry]:
    runs = RunRegistry(
        PendingDir(tmp_path / "pending"), pid_alive=FakePids(CLIENT_PID), stopping=threading.Event()
    )
    yield runs
    runs.close()


def attach_message(tmp_path: Path, pid: int = CLIENT_PID) -> daemon_pb2.Attach:
    return daemon_pb2.Attach(ref=make_ref(), run_dir=str(tmp_path / "run"), pid=pid)


@pytest.mark.parametrize("ends", ["stays", "leaves", "finishes"])
def test_the_metadata_capture_goes_on_whatever_the_client_does_and_the_run_waits_for_it(
    registry: RunRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture, ends: str
) -> None:
    # A run shorter than the capture still gets its metadata: it is the daemon's, not the client's.
    counters = FakeCounters()
    counters.processes[CLIENT_PID] = FakeProcessState(cwd=str(tmp_path))
    git = GatedGit()
    capture = Capture(registry, DaemonConfig(system_metrics=False), source=counters, nvml=None, git=git)
    outbox = RecordingOutbox()
    slot, _, new_process = registry.attach(attach_message(tmp_path), outbox)
    registry.append(slot, outbox, [records_pb2.Frame(seq=1, record=run_start(make_ref()))])

    capture.attached(slot, CLIENT_PID)
    assert capture.captures_metadata(new_process)  # a new run: its metadata is captured
    capture.begin_metadata(slot, CLIENT_PID)
    assert git.entered.wait(10)
    if ends == "finishes":
        registry.append(slot, outbox, [records_pb2.Frame(seq=2, record=finish())])
        capture.run_ended(slot)
    if ends != "stays":
        registry.detach(slot, outbox)
    slot.sync.synced = slot.durable_seq  # as if the store held the client's frames
    assert not registry.retire_if_done(slot)  # the capture is under way: the run is kept
    git.release.set()
    assert capture.join(10)

    ((seq, record),) = [(s, r) for s, r in own_records(tmp_path / "run") if r.WhichOneof("kind") != "file"]
    assert json.loads(record.metadata.json)["git"]["commit"] == "0" * 40
    assert slot.own.producers == set()
    assert slot.own.durable_seq == seq
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    capture.close()


def test_only_a_new_training_process_counts_as_new_for_the_metadata(
    registry: RunRegistry, tmp_path: Path
) -> None:
    first, again, other = RecordingOutbox(), RecordingOutbox(), RecordingOutbox()

    slot, _, new = registry.attach(attach_message(tmp_path), first)
    assert new  # a new run
    assert not registry.attach(attach_message(tmp_path), again).new_process  # the same process again
    # The first process ends; a later one resumes the run (while it lived, a second one is refused).
    pids = registry._pid_alive
    assert isinstance(pids, FakePids)
    pids.alive.discard(CLIENT_PID)
    assert registry.attach(attach_message(tmp_path, pid=CLIENT_PID + 1), other).new_process  # a resume

    assert slot.pid == CLIENT_PID + 1


class _OrderCapture(Capture):
    """Records which replies the stream had sent when the metadata capture was begun."""

    def __init__(self, registry: RunRegistry, outbox: _ListOutbox) -> None:
        super().__init__(registry, DaemonConfig(system_metrics=False), source=FakeCounters(), nvml=None)
        self.outbox = outbox
        self.began_after: list[str] | None = None

    def begin_metadata(self, slot: RunSlot, pid: int) -> None:
        self.began_after = list(self.outbox.kinds)


class _ListOutbox(StreamOutbox):
    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    def send(self, message: daemon_pb2.DaemonMessage) -> None:
        self.kinds.append(message.WhichOneof("kind") or "")
        super().send(message)


def test_the_metadata_capture_begins_only_after_the_runs_first_frames_are_acked(
    registry: RunRegistry, tmp_path: Path
) -> None:
    # init() waits for that ack; a capture already holding the daemon's GIL would delay it.
    outbox = _ListOutbox()
    capture = _OrderCapture(registry, outbox)
    service = DaemonService(
        registry,
        run_url=lambda slot: "",
        status=daemon_pb2.StatusResponse,
        shutdown=lambda: None,
        capture=capture,
    )
    first = daemon_pb2.FrameBatch(frames=[records_pb2.Frame(seq=1, record=run_start(make_ref()))], ack=True)
    messages = [
        daemon_pb2.ClientMessage(attach=attach_message(tmp_path)),
        daemon_pb2.ClientMessage(frames=first),
    ]

    service._read(iter(messages), outbox)

    assert capture.began_after == ["attached", "ack"]
    capture.close()


def test_a_run_is_sampled_until_its_finish_and_again_when_another_process_resumes_it(
    tmp_path: Path,
) -> None:
    pids = FakePids(CLIENT_PID, CLIENT_PID + 1)
    registry = RunRegistry(PendingDir(tmp_path / "pending"), pid_alive=pids, stopping=threading.Event())
    capture = Capture(registry, DaemonConfig(capture_metadata=False), source=FakeCounters(), nvml=None)
    service = DaemonService(
        registry,
        run_url=lambda slot: "",
        status=daemon_pb2.StatusResponse,
        shutdown=lambda: None,
        capture=capture,
    )
    assert capture.sampler is not None
    key = "me/proj/run1"

    def stream(pid: int, *batch: tuple[int, bytes]) -> None:
        frames_ = daemon_pb2.FrameBatch(
            frames=[records_pb2.Frame(seq=s, record=r) for s, r in batch], ack=True
        )
        messages = [daemon_pb2.ClientMessage(attach=attach_message(tmp_path, pid))]
        service._read(iter([*messages, daemon_pb2.ClientMessage(frames=frames_)]), _ListOutbox())

    stream(CLIENT_PID, (1, run_start(make_ref())), (2, finish()))
    assert not capture.sampler.sampling(key)  # its Finish is written: sampling ended
    stream(CLIENT_PID + 1, (3, run_start(make_ref(), resume="allow")))
    assert capture.sampler.sampling(key)  # resumed by a new process, which lives on (detached)
    stream(CLIENT_PID + 1)  # re-attaches and leaves without a frame: the run goes on
    assert capture.sampler.sampling(key)
    stream(CLIENT_PID + 1, (4, finish()))
    assert not capture.sampler.sampling(key)
    assert "system" not in capture_producers(registry, key)
    capture.close()
    registry.close()


def capture_producers(registry: RunRegistry, key: str) -> set[str]:
    (slot,) = [slot for slot in registry.snapshot() if slot.key == key]
    return set(slot.own.producers)
