"""Size limits of what the server accepts. Stated once so that messages and docs agree.

They are generous on purpose: the SDK enforces its own, stricter limits where the user can fix the
call; the server only refuses what would harm the store.
"""

from __future__ import annotations

from tracklog import _rules
from tracklog._spool import MAX_FRAME_BYTES

# One gRPC message: room for one maximal spool frame plus the request's envelope.
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES + 1024 * 1024
MAX_RECORD_BYTES = MAX_FRAME_BYTES
MAX_FRAMES_PER_REQUEST = 100_000
MAX_WRITER_TOKEN = 256  # characters of a run's writer token (the SDK's are 48)
MAX_SHORT_TEXT = 1024  # name, group, job type, one tag (history keys: tracklog._rules.MAX_KEY)
MAX_TAGS = 1000
MAX_LONG_TEXT = 4 * 1024 * 1024  # notes, host, run_dir, a finish reason
MAX_JSON_DOC = _rules.MAX_DOC  # config, explicit summary (each, after merging): the SDK checks it too
MAX_RUNS_PER_HEARTBEAT = 10_000
# History pages are cut so that one streamed message stays under the default 4 MiB a gRPC client
# accepts, whatever page_rows asks for.
MAX_PAGE_BYTES = 3 * 1024 * 1024
DEFAULT_PAGE_ROWS = 10_000

# Automatic capture (system metrics, console output, files).
MAX_KEY_BYTES = 1024  # a system metric key or a file name, in UTF-8 (kept well under index row limits)
MAX_SYSTEM_KEYS = 1024  # distinct system metric keys per run (a 256-core machine with 8 GPUs needs ~350)
MAX_OUTPUT_LINE = 256 * 1024  # characters of one console line (the SDK cuts lines at 64 KiB)
MAX_FILE_BYTES = 256 * 1024 * 1024  # one version of one file saved with a run
MAX_FILE_CHUNK_BYTES = MAX_FRAME_BYTES  # one FileChunk's data: whatever fits in one spool frame
MAX_PROBLEMS = 100  # problems kept per run (the oldest stay; later ones are counted in the last)
MAX_FILES_PER_RUN = 10_000  # distinct file names per run; bounds the ListFiles answer (~11 MB at most)
DEFAULT_LOG_PAGE_LINES = 10_000
