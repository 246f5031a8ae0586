"""System metrics: one sampler per daemon (so per machine), fanned out to every attached run.

Each ``tick()`` reads the machine's counters once, whatever the number of runs, plus each distinct
training process (and its children) once; every run keeps its own reporting window, and when it is
due the run gets one ``SystemBatch`` row holding the mean of the window's samples. A counter that
cannot be read (``AccessDenied``, ``NVMLError``, a vanished process) omits that metric only.

The names (``system/...``; MB = 2**20 bytes, GB = 2**30 bytes, as wandb's):

===============================================  ===========  =============================================
name                                             unit         what
===============================================  ===========  =============================================
``system/cpu``                                   %            machine CPU utilisation (mean of the cores)
``system/cpu.{n}.cpu_percent``                   %            utilisation of core n
``system/proc.cpu.percent``                      % of a core  CPU of the training process and its children
                                                              (200 = two cores busy)
``system/proc.cpu.threads``                      count        threads of the process and its children
``system/proc.memory.rssMB``                     MB           resident memory of the process and children
``system/proc.memory.percent``                   %            that RSS as a share of the machine's memory
``system/proc.memory.availableMB``               MB           machine memory available to new processes
``system/memory_percent``                        %            machine memory in use
``system/disk.usagePercent``                     %            used space of the filesystem holding the
                                                              run directory
``system/disk.usageGB``                          GB           used space of that filesystem
``system/disk.in``                               MB           read from all disks since the run started
``system/disk.out``                              MB           written to all disks since the run started
``system/network.sent``                          bytes        sent on all interfaces since the run started
``system/network.recv``                          bytes        received since the run started
``system/gpu.{i}.gpu``                           %            GPU i utilisation (time a kernel ran)
``system/gpu.{i}.memory``                        %            GPU i memory controller utilisation
``system/gpu.{i}.memoryAllocated``               %            GPU i memory in use, share of its total
``system/gpu.{i}.memoryAllocatedBytes``          bytes        GPU i memory in use
``system/gpu.{i}.temp``                          deg C        GPU i temperature
``system/gpu.{i}.powerWatts``                    W            GPU i power draw
``system/gpu.{i}.enforcedPowerLimitWatts``       W            GPU i enforced power limit
``system/gpu.{i}.powerPercent``                  %            power draw as a share of that limit
``system/gpu.{i}.smClock``                       MHz          GPU i SM clock
``system/gpu.{i}.memoryClock``                   MHz          GPU i memory clock
``system/gpu.process.{i}.memoryAllocatedBytes``  bytes        GPU i memory held by the training process and
                                                              its children (while they hold some)
===============================================  ===========  =============================================

"Since the run started" counts from the run's first sample, at most one sample interval after its
client attached. Disk and network counters are machine-wide (psutil cannot tell one process's
network traffic), as are the CPU, memory and GPU device values: two runs on one machine see the same.

Cost: per tick one read each of the per-core CPU times, memory, disk I/O and network counters (the
machine-wide CPU percent is the mean of the cores, not a second read), one ``statvfs`` per distinct
run directory, three small ``/proc`` reads per process, and NVML when present. ``psutil.Process``
objects are cached (``cpu_percent(interval=None)`` measures since the previous call on the same
object); a run's children are listed again only every ``tree_refresh`` seconds (default: the
report interval), because listing them scans every process of the machine.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tracklogd._gpu import Gpus
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import system_record
from tracklogd._sources import DiskIO, DiskUsage, NetIO, ProcessLike, PsutilLike, psutil_module

log = logging.getLogger(__name__)

MB = float(1 << 20)
GB = float(1 << 30)

T = TypeVar("T")


@dataclass(eq=False)
class _Run:
    key: str
    pid: int
    run_dir: str
    window_start: float
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    tree: set[int] = field(default_factory=set)  # the training process and its children (known pids)
    refreshed_at: float = -math.inf
    disk_base: tuple[int, int] | None = None  # read/write bytes at the run's first sample
    net_base: tuple[int, int] | None = None  # sent/received bytes at the run's first sample


class SystemSampler:
    """The sampling and the reporting windows, without a thread: its owner calls ``tick()`` every
    ``sample_interval`` seconds (the daemon's sampler thread; a test with a fake clock). Not
    thread-safe: the owner serialises all calls."""

    def __init__(
        self,
        source: PsutilLike | None = None,
        gpus: Gpus | None = None,
        *,
        sample_interval: float = 2.0,
        report_interval: float = 10.0,
        tree_refresh: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._ps = source if source is not None else psutil_module()
        self._gpus = gpus
        self.sample_interval = sample_interval
        self.report_interval = max(report_interval, sample_interval)
        self._tree_refresh = self.report_interval if tree_refresh is None else tree_refresh
        self._clock = clock
        self._wall_clock = wall_clock
        self._runs: dict[str, _Run] = {}
        self._procs: dict[int, ProcessLike] = {}  # every process of every run's tree, by pid
        self._cores: int | None = None  # logical CPUs, read once
        self._primed_at: dict[int, float] = {}  # when cpu_percent was first called on each
        self._cpu_primed = False
        self._ratelog = RateLimitedLog(log, interval=600.0)

    # -- runs ------------------------------------------------------------------------------------------

    @property
    def run_keys(self) -> list[str]:
        return list(self._runs)

    def add(self, key: str, pid: int, run_dir: str) -> None:
        """Starts sampling for a run (its training process ``pid``; its directory's filesystem). A run
        already held for the same pid keeps its window and baselines (a client that re-attached).

        Cheap, since it runs on the path of a run's first frames: the process lookup, its children
        and the baselines wait for the next ``tick()``. Only the machine's CPU counter is primed
        here, once (psutil's first ``cpu_percent(interval=None)`` only sets its baseline)."""
        held = self._runs.get(key)
        if held is not None and held.pid == pid:
            held.run_dir = run_dir
            return
        if not self._cpu_primed:
            self._read("cpu_percent", self._ps.cpu_percent, None, True)
            self._cpu_primed = True
        self._runs[key] = _Run(key, pid, run_dir, window_start=self._clock())

    def finish(self, key: str) -> bytes | None:
        """Stops sampling for a run that has ended; returns its partial window as its last report
        (a ``system`` record, the means of the samples since the last report), None without one."""
        run = self._runs.get(key)
        if run is None:
            return None
        payload = None
        if run.sums:
            row = {name: run.sums[name] / run.counts[name] for name in sorted(run.sums)}
            payload = system_record([(self._wall_clock(), row)])
        self.remove(key)
        return payload

    def remove(self, key: str) -> None:
        """Stops sampling for a run; its partial window is dropped."""
        if self._runs.pop(key, None) is not None:
            self._forget_unused()
        if not self._runs:
            self._cpu_primed = False

    # -- sampling --------------------------------------------------------------------------------------

    def tick(self) -> list[tuple[str, bytes]]:
        """Takes one sample for every run; returns ``(run key, serialized Record)`` for each run whose
        window is complete (a ``system`` record: one row, the means of the window)."""
        if not self._runs:
            return []
        now = self._clock()
        machine, memory_total = self._sample_machine()
        disk_io = self._read("disk_io_counters", self._ps.disk_io_counters)
        net_io = self._net()
        gpu_values, gpu_procs = self._gpus.sample() if self._gpus is not None else ({}, {})
        for run in self._runs.values():
            if now - run.refreshed_at >= self._tree_refresh:
                self._refresh_tree(run, now)
        self._forget_unused()
        procs = self._sample_processes({pid for run in self._runs.values() for pid in run.tree}, now)
        usage: dict[str, DiskUsage | None] = {}
        reports: list[tuple[str, bytes]] = []
        for run in self._runs.values():
            values = {**machine, **gpu_values}
            if run.run_dir not in usage:
                usage[run.run_dir] = self._read("disk_usage", self._ps.disk_usage, run.run_dir)
            disk = usage[run.run_dir]
            if disk is not None:
                values["system/disk.usagePercent"] = float(disk.percent)
                values["system/disk.usageGB"] = disk.used / GB
            self._baselines(run, disk_io, net_io)
            if disk_io is not None and run.disk_base is not None:
                values["system/disk.in"] = max(0, disk_io.read_bytes - run.disk_base[0]) / MB
                values["system/disk.out"] = max(0, disk_io.write_bytes - run.disk_base[1]) / MB
            if net_io is not None and run.net_base is not None:
                values["system/network.sent"] = float(max(0, net_io.bytes_sent - run.net_base[0]))
                values["system/network.recv"] = float(max(0, net_io.bytes_recv - run.net_base[1]))
            values.update(self._process_values(run, procs, memory_total, self._cpu_limit()))
            for device, used in gpu_procs.items():
                mine = [size for pid, size in used.items() if pid in run.tree]
                if mine:
                    values[f"system/gpu.process.{device}.memoryAllocatedBytes"] = float(sum(mine))
            for name, value in values.items():
                run.sums[name] = run.sums.get(name, 0.0) + value
                run.counts[name] = run.counts.get(name, 0) + 1
            # Half a sample of slack: a tick that comes a little early still closes its window.
            if now - run.window_start >= self.report_interval - self.sample_interval / 2:
                if run.sums:
                    row = {name: run.sums[name] / run.counts[name] for name in sorted(run.sums)}
                    reports.append((run.key, system_record([(self._wall_clock(), row)])))
                run.sums, run.counts, run.window_start = {}, {}, now
        return reports

    def _sample_machine(self) -> tuple[dict[str, float], int]:
        values: dict[str, float] = {}
        per_core = self._read("cpu_percent", lambda: self._ps.cpu_percent(None, True))
        if per_core:
            values["system/cpu"] = sum(per_core) / len(per_core)
            for n, percent in enumerate(per_core):
                values[f"system/cpu.{n}.cpu_percent"] = float(percent)
        memory = self._read("virtual_memory", self._ps.virtual_memory)
        if memory is None:
            return values, 0
        values["system/memory_percent"] = float(memory.percent)
        values["system/proc.memory.availableMB"] = memory.available / MB
        return values, memory.total

    def _net(self) -> NetIO | None:
        return self._read("net_io_counters", self._ps.net_io_counters)

    @staticmethod
    def _baselines(run: _Run, disk_io: DiskIO | None, net_io: NetIO | None) -> None:
        if run.disk_base is None and disk_io is not None:
            run.disk_base = (disk_io.read_bytes, disk_io.write_bytes)
        if run.net_base is None and net_io is not None:
            run.net_base = (net_io.bytes_sent, net_io.bytes_recv)

    # -- processes ---------------------------------------------------------------------------------------

    def _refresh_tree(self, run: _Run, now: float) -> None:
        run.refreshed_at = now
        if run.pid <= 0:
            return
        main = self._procs.get(run.pid) or self._open(run.pid, now)
        if main is None:
            run.tree = set()
            return
        tree = {run.pid}
        try:
            children: Iterable[ProcessLike] = main.children(recursive=True)
        except self._ps.NoSuchProcess:
            self._procs.pop(run.pid, None)
            run.tree = set()
            return
        except Exception as exc:  # AccessDenied and the like: keep the children already known
            self._expected_or_log("children", exc)
            children = [self._procs[pid] for pid in run.tree if pid in self._procs and pid != run.pid]
        for child in children:
            tree.add(child.pid)
            if child.pid not in self._procs:
                self._procs[child.pid] = child
                self._prime(child, now)
        run.tree = tree

    def _open(self, pid: int, now: float) -> ProcessLike | None:
        try:
            proc = self._ps.Process(pid)
        except Exception as exc:  # NoSuchProcess: the training process is gone (or never was)
            self._expected_or_log("Process", exc)
            return None
        self._procs[pid] = proc
        self._prime(proc, now)
        return proc

    def _prime(self, proc: ProcessLike, now: float) -> None:
        try:
            proc.cpu_percent(None)
        except Exception as exc:
            self._expected_or_log("cpu_percent", exc)
        self._primed_at[proc.pid] = now

    def _forget_unused(self) -> None:
        used = {pid for run in self._runs.values() for pid in run.tree}
        for pid in [pid for pid in self._procs if pid not in used]:
            del self._procs[pid]
            self._primed_at.pop(pid, None)

    def _sample_processes(self, pids: set[int], now: float) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        gone: set[int] = set()
        for pid in pids:
            proc = self._procs.get(pid)
            if proc is None:
                continue
            stats: dict[str, float] = {}
            # A CPU percent measured over (almost) no time since the first call is noise: skip it.
            if now - self._primed_at.get(pid, now) >= self.sample_interval / 2:
                self._proc_value(proc, stats, "cpu", _cpu, gone)
            self._proc_value(proc, stats, "rss", _rss, gone)
            self._proc_value(proc, stats, "threads", _threads, gone)
            out[pid] = stats
        for pid in gone:
            self._procs.pop(pid, None)
            self._primed_at.pop(pid, None)
            for run in self._runs.values():
                run.tree.discard(pid)
        return out

    def _proc_value(
        self,
        proc: ProcessLike,
        stats: dict[str, float],
        name: str,
        read: Callable[[ProcessLike], float],
        gone: set[int],
    ) -> None:
        if proc.pid in gone:
            return
        try:
            stats[name] = float(read(proc))
        except self._ps.NoSuchProcess:
            gone.add(proc.pid)
        except Exception as exc:  # AccessDenied: this value only
            self._expected_or_log(f"process {name}", exc)

    def _cpu_limit(self) -> float:
        """The most ``system/proc.cpu.percent`` can truly be: every core busy (100 per core)."""
        if self._cores is None:
            self._cores = self._read("cpu_count", self._ps.cpu_count) or 0
        return 100.0 * self._cores if self._cores else math.inf

    @staticmethod
    def _process_values(
        run: _Run, procs: dict[int, dict[str, float]], memory_total: int, cpu_limit: float
    ) -> dict[str, float]:
        """Sums over the run's process tree; a metric no process of the tree answered is omitted.

        CPU is capped at ``cpu_limit``: psutil counts CPU time in clock ticks (10 ms), so over a short
        window a busy tree can appear to use more than every core."""
        sums: dict[str, float] = {}
        for pid in run.tree:
            for name, value in procs.get(pid, {}).items():
                sums[name] = sums.get(name, 0.0) + value
        values: dict[str, float] = {}
        if "cpu" in sums:
            values["system/proc.cpu.percent"] = min(sums["cpu"], cpu_limit)
        if "threads" in sums:
            values["system/proc.cpu.threads"] = sums["threads"]
        if "rss" in sums:
            values["system/proc.memory.rssMB"] = sums["rss"] / MB
            if memory_total:
                values["system/proc.memory.percent"] = 100.0 * sums["rss"] / memory_total
        return values

    # -- errors ------------------------------------------------------------------------------------------

    def _read(self, what: str, call: Callable[..., T], *args: object) -> T | None:
        try:
            return call(*args)
        except Exception as exc:
            self._expected_or_log(what, exc)
            return None

    def _expected_or_log(self, what: str, exc: Exception) -> None:
        # psutil errors (AccessDenied, NoSuchProcess) and OSErrors are the machine saying no: the
        # metric is omitted quietly. Anything else is a bug worth a (rate-limited) line in the log.
        if isinstance(exc, (self._ps.Error, OSError)):
            return
        self._ratelog.log(logging.WARNING, what, "reading %s failed", what, exc_info=True)


def _cpu(proc: ProcessLike) -> float:
    return proc.cpu_percent(None)


def _rss(proc: ProcessLike) -> float:
    return proc.memory_info().rss


def _threads(proc: ProcessLike) -> float:
    return proc.num_threads()
