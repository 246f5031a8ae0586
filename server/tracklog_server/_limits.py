"""Size limits of what the server accepts. Stated once so that messages and docs agree.

They are generous on purpose: the SDK enforces its own, stricter limits where the user can fix the
call; the server only refuses what would harm the store.
"""

from __future__ import annotations

from tracklog._spool import MAX_FRAME_BYTES

# One gRPC message: room for one maximal spool frame plus the request's envelope.
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES + 1024 * 1024
MAX_RECORD_BYTES = MAX_FRAME_BYTES
MAX_FRAMES_PER_REQUEST = 100_000
MAX_SHORT_TEXT = 1024  # name, group, job type, one tag, one history key
MAX_TAGS = 1000
MAX_LONG_TEXT = 4 * 1024 * 1024  # notes, host, run_dir, a finish reason
MAX_JSON_DOC = 16 * 1024 * 1024  # config, explicit summary (each, after merging)
MAX_RUNS_PER_HEARTBEAT = 10_000
# History pages are cut so that one streamed message stays under the default 4 MiB a gRPC client
# accepts, whatever page_rows asks for.
MAX_PAGE_BYTES = 3 * 1024 * 1024
DEFAULT_PAGE_ROWS = 10_000
