"""The daemon's tunables, read once from the environment (each has a sane default)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_MESSAGE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
)


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number of seconds; using %s", name, raw, default)
        return default
    if not math.isfinite(value) or value < minimum:
        log.warning("ignoring %s=%r: must be at least %s; using %s", name, raw, minimum, default)
        return default
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    log.warning("ignoring %s=%r: not true or false; using %s", name, raw, str(default).lower())
    return default


@dataclass(frozen=True)
class DaemonConfig:
    # Exit after this long with no attached run and nothing left to sync.
    idle_timeout: float = 120.0
    # A spool's appended frames reach the disk (fsync) at most this long after their ack.
    fsync_interval: float = 1.0
    # A batch that does not ask for its ack (FrameBatch.ack) is acked with the first batch at least
    # this long after the stream's previous ack; a Finish, or a batch that asks, is acked at once.
    ack_interval: float = 1.0
    # How often the store servers hear that the attached runs are alive. A stop requested through
    # the API comes back in the heartbeat's answer, so this bounds how long a stop takes to reach the
    # training process (promised: within 5 s).
    heartbeat_interval: float = 2.0
    # Passed to the local store server: how long without a heartbeat until a run is crashed.
    heartbeat_timeout: float = 120.0
    # How often a detached client's pid is checked (a vanished client is reported within this).
    watch_interval: float = 0.25
    # System metrics (one sampler for the machine, fanned out to every attached run): sampled every
    # ``system_sample_interval`` seconds, each run gets the mean of its samples every
    # ``system_report_interval`` seconds.
    system_metrics: bool = True
    system_sample_interval: float = 2.0
    system_report_interval: float = 10.0
    # Metadata, requirements.txt and diff.patch, captured once per training process at Attach.
    capture_metadata: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DaemonConfig:
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            idle_timeout=_seconds(env, "TRACKLOG_DAEMON_IDLE_TIMEOUT", default.idle_timeout),
            fsync_interval=_seconds(env, "TRACKLOG_FSYNC_INTERVAL", default.fsync_interval),
            heartbeat_interval=_seconds(
                env, "TRACKLOG_HEARTBEAT_INTERVAL", default.heartbeat_interval, minimum=0.05
            ),
            heartbeat_timeout=_seconds(env, "TRACKLOG_HEARTBEAT_TIMEOUT", default.heartbeat_timeout),
            system_metrics=_flag(env, "TRACKLOG_SYSTEM_METRICS", default.system_metrics),
            system_sample_interval=_seconds(
                env, "TRACKLOG_SYSTEM_SAMPLE_INTERVAL", default.system_sample_interval, minimum=0.1
            ),
            system_report_interval=_seconds(
                env, "TRACKLOG_SYSTEM_REPORT_INTERVAL", default.system_report_interval, minimum=0.1
            ),
            capture_metadata=_flag(env, "TRACKLOG_METADATA", default.capture_metadata),
        )
