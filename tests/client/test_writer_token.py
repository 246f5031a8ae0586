"""Each run has a writer token of its own, kept through a resume, in a spool only its user can read."""

from __future__ import annotations

import stat
from pathlib import Path

import tracklog
import tracklogd
from tracklog import _tokens
from tracklog.testing import read_records, spool_of
from tracklog_server import StoreServer


def _offline(**kwargs: object) -> tracklog.Run:
    return tracklog.init(project="p", mode="offline", **kwargs)  # type: ignore[arg-type]


def _tokens_in(run_dir: Path) -> list[str]:
    return [r.start.writer_token for _, r in read_records(run_dir) if r.WhichOneof("kind") == "start"]


def test_each_run_gets_a_random_writer_token_in_its_first_frame() -> None:
    first, second = _offline(), _offline()
    first.finish()
    second.finish()

    (a,), (b,) = _tokens_in(Path(first.dir)), _tokens_in(Path(second.dir))
    assert _tokens.is_token(a)
    assert _tokens.is_token(b)
    assert a != b
    assert read_records(Path(first.dir))[0][1].WhichOneof("kind") == "start"


def test_a_runs_spool_is_readable_by_its_user_only() -> None:
    run = _offline()
    run.finish()
    assert stat.S_IMODE(spool_of(run.dir).stat().st_mode) == 0o600


def test_a_resumed_run_keeps_its_writer_token_and_the_store_takes_both_parts(tmp_path: Path) -> None:
    first = _offline(id="res1")
    first.log({"x": 1.0})
    first.finish()
    second = _offline(id="res1", resume="allow")
    second.log({"x": 2.0})
    second.finish()

    tokens = _tokens_in(Path(second.dir))
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]
    with StoreServer(f"sqlite:///{tmp_path / 'store.db'}", port=0, http_port=None) as server:
        result = tracklogd.sync_spool(spool_of(second.dir), server.grpc_address)
        with tracklog.Api(server.grpc_address) as api:
            run = api.run(second.path)
            assert (run.history_rows, run.state) == (2, "finished")
    assert result.synced_seq == result.last_seq
