"""A stored file as an HTTP response: ETag, conditional requests and one byte range.

The ETag is the content's sha256 (a complete version's bytes never change), so it is strong: a
browser's ``If-None-Match`` gets 304, and a download resumed with ``Range`` + ``If-Range`` gets 206 only
while the file is still the same. One range is served (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``);
several ranges or a malformed header get the whole file (RFC 9110 lets a server ignore Range), an
unsatisfiable one 416. Downloads are attachments a browser neither renders nor sniffs; the inline text
preview is text/plain in a sandbox.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from urllib.parse import quote

from fastapi import Response
from fastapi.responses import StreamingResponse

from tracklog_server._entities import FileInfo
from tracklog_server._errors import StoreError

log = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Characters kept in the plain filename= of a download; the exact name goes in filename*=.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def content_disposition(name: str, kind: str = "attachment") -> str:
    """Named after the file's last part: a plain ASCII fallback with nothing that could end the header
    value or the quoted string, and the exact name percent-encoded (RFC 6266)."""
    base = name.rsplit("/", 1)[-1]
    fallback = _UNSAFE_FILENAME.sub("_", base).lstrip(".") or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end exclusive) of a single satisfiable range; None to serve the whole file; False when
    the range cannot be satisfied (416)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, another unit, or garbage: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0:
            return False
        return (max(0, size - n), size)
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        return False
    return (start, end)


def _guarded(pieces: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The pieces, until the store fails: the status is sent by then, so all that can be done is to
    cut the response short (the client sees fewer bytes than Content-Length) and log why."""
    try:
        yield from pieces
    except StoreError as exc:
        log.warning("web: download of %r failed after it started: %s", name, exc)


def _slice(pieces: Iterator[bytes], start: int, end: int) -> Iterator[bytes]:
    offset = 0
    for piece in pieces:
        lo, hi = offset, offset + len(piece)
        offset = hi
        if hi <= start:
            continue
        if lo >= end:
            break
        yield piece[max(0, start - lo) : min(len(piece), end - lo)]


def file_response(
    info: FileInfo, pieces: Iterator[bytes], headers: Mapping[str, str], *, inline: bool
) -> Response:
    etag = f'"{info.sha256}"'
    common = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",  # revalidate: a newer version may replace it
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": content_disposition(info.name, "inline" if inline else "attachment"),
    }
    media_type = "text/plain; charset=utf-8" if inline else "application/octet-stream"
    matches = [t.strip() for t in headers.get("if-none-match", "").split(",")]
    if etag in matches or "*" in matches:
        return Response(status_code=304, headers={k: common[k] for k in ("ETag", "Cache-Control")})
    wanted = headers.get("range")
    if_range = headers.get("if-range")
    if wanted is not None and (if_range is None or if_range.strip() == etag):
        span = parse_range(wanted, info.size)
        if span is False:
            return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{info.size}"})
        if isinstance(span, tuple):
            start, end = span
            partial = {**common, "Content-Range": f"bytes {start}-{end - 1}/{info.size}"}
            partial["Content-Length"] = str(end - start)
            return StreamingResponse(
                _slice(_guarded(pieces, info.name), start, end),
                status_code=206,
                media_type=media_type,
                headers=partial,
            )
    full = {**common, "Content-Length": str(info.size)}
    return StreamingResponse(
        _guarded(pieces, info.name), status_code=200, media_type=media_type, headers=full
    )
