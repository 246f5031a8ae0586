"""Whether a training process is still there (the default pid check; tests pass their own)."""

from __future__ import annotations

import psutil


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie (exited, not yet reaped by its parent) counts as gone, and
    so does pid 0 (a client that did not say who it is cannot be watched)."""
    if pid <= 0:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else: cannot be ours, but it is not gone either
