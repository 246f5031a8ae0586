"""Private tokens: made once, kept 0600, replaced when others could have read them; URLs that carry one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tracklog import _tokens


def test_a_token_file_is_created_0600_and_gives_the_same_token_every_time(tmp_path: Path) -> None:
    path = tmp_path / "http-token"
    old = os.umask(0)  # even a permissive umask leaves it private
    try:
        token = _tokens.private_token(path)
    finally:
        os.umask(old)
    assert _tokens.is_token(token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _tokens.private_token(path) == token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["http-token"]  # no temporary left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_others_could_read_is_replaced(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "http-token"
    seen = _tokens.private_token(path)
    os.chmod(path, mode)

    fresh = _tokens.private_token(path)
    assert fresh != seen
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "short", "z" * 48, "0" * 47])
def test_a_file_without_a_token_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "http-token"
    path.write_text(content)
    os.chmod(path, 0o600)
    assert _tokens.is_token(_tokens.private_token(path))


def test_a_symlink_in_place_of_the_token_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("a" * 48 + "\n")
    os.chmod(target, 0o600)
    (tmp_path / "http-token").symlink_to(target)

    token = _tokens.private_token(tmp_path / "http-token")
    assert token != "a" * 48
    assert target.read_text() == "a" * 48 + "\n"
    assert not (tmp_path / "http-token").is_symlink()


def test_new_tokens_differ() -> None:
    assert len({_tokens.new_token() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("", ""),
        ("http://h:1", "http://h:1/e/p/runs/i"),
        ("http://h:1/", "http://h:1/e/p/runs/i"),
        ("http://h:1/?token=abc", "http://h:1/e/p/runs/i?token=abc"),
        ("http://h:1?token=abc", "http://h:1/e/p/runs/i?token=abc"),
    ],
)
def test_a_page_url_keeps_the_bases_query_at_the_end(base: str, url: str) -> None:
    assert _tokens.page_url(base, "e/p/runs/i") == url
