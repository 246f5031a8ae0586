"""``python -m tracklog_server``: a real subprocess that starts, announces itself, serves and stops."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from tracklog.v1 import store_pb2, store_pb2_grpc
from tracklog_server import main
from tracklog_server.storage._database import display_url, normalize_url

from .helpers import wait_for


def test_the_server_process_writes_its_address_file_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    address_file = tmp_path / "run" / "server.json"
    db = tmp_path / "store.db"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tracklog_server", "--db", f"sqlite:///{db}", "--port", "0",
            "--heartbeat-timeout", "30", "--address-file", str(address_file),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: address_file.exists() or proc.poll() is not None, 30, "the address file")
        assert proc.poll() is None, proc.communicate()
        info = json.loads(address_file.read_text())
        assert set(info) == {"grpc", "http", "pid"}
        assert info["pid"] == proc.pid
        assert info["grpc"].startswith("127.0.0.1:")
        assert info["http"].startswith("http://127.0.0.1:")
        with grpc.insecure_channel(info["grpc"]) as channel:
            reply = store_pb2_grpc.StoreStub(channel).ServerInfo(store_pb2.ServerInfoRequest(), timeout=10)
        assert (reply.http_url, reply.heartbeat_timeout) == (info["http"], 30.0)
        with urllib.request.urlopen(info["http"] + "/", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not address_file.exists()
        assert db.exists()
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_default_database_lives_in_tracklog_home(tmp_path: Path) -> None:
    # The autouse fixture points TRACKLOG_HOME at tmp_path / "home"; -1 disables HTTP.
    env = {**os.environ, "TRACKLOG_HOME": str(tmp_path / "home")}
    address_file = tmp_path / "a.json"
    command = [sys.executable, "-m", "tracklog_server", "--port", "0", "--http-port", "-1"]
    proc = subprocess.Popen(
        [*command, "--address-file", str(address_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: address_file.exists() or proc.poll() is not None, 30, "the address file")
        assert json.loads(address_file.read_text())["http"] == ""
        assert (tmp_path / "home" / "store.db").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_non_loopback_host_is_refused_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--db", f"sqlite:///{tmp_path / 's.db'}", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on '0.0.0.0'" in err
    assert "--insecure-allow-remote" in err
    assert not (tmp_path / "s.db").exists()


def test_an_unusable_database_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", "mysql://x@y/z", "--port", "0"]) == 1
    assert "unsupported database 'mysql'" in capsys.readouterr().err


def test_postgresql_urls_are_accepted_as_users_write_them() -> None:
    assert normalize_url("postgresql://u:secret@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert "secret" not in display_url(normalize_url("postgresql://u:secret@h/db"))


def _serve(args: list[str], address_file: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracklog_server", *args, "--address-file", str(address_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: address_file.exists() or proc.poll() is not None, 30, "the address file")
    assert proc.poll() is None, proc.communicate()
    return proc


def test_a_server_given_a_unix_socket_and_a_token_file_is_its_users_alone(tmp_path: Path) -> None:
    socket_path, token_file, address_file = tmp_path / "store.sock", tmp_path / "tok", tmp_path / "a.json"
    args = ["--db", f"sqlite:///{tmp_path / 's.db'}", "--unix-socket", str(socket_path), "--http-port", "0",
            "--http-token-file", str(token_file)]  # fmt: skip
    proc = _serve(args, address_file)
    try:
        info = json.loads(address_file.read_text())
        token = token_file.read_text().strip()
        assert info["grpc"] == f"unix:{socket_path}"
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(token) == 48
        with grpc.insecure_channel(info["grpc"]) as channel:
            reply = store_pb2_grpc.StoreStub(channel).ServerInfo(store_pb2.ServerInfoRequest(), timeout=10)
        assert reply.http_url == f"{info['http']}/?token={token}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(info["http"] + "/", timeout=10)
        assert refused.value.code == 403
        refused.value.close()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(reply.http_url, timeout=10) as page:
            assert page.status == 200

        second = subprocess.run(
            [sys.executable, "-m", "tracklog_server", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert "another server answers there" in second.stderr

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert token.encode() not in out + err
        assert not socket_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    again = _serve(args, address_file)  # the same token: addresses printed earlier keep working
    try:
        assert token_file.read_text().strip() == token
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
