"""Fake metrics sources for tests of the capture (re-exported by ``tracklogd.testing``).

- ``FakeCounters``: a psutil-like machine whose counters the test sets; ``calls`` counts every read,
  ``deny`` makes a machine counter raise ``AccessDenied``, and each ``FakeProcessState`` (by pid in
  ``processes``) can deny its own methods.
- ``FakeNvml``: an NVML with ``FakeGpu`` devices; each GPU's ``fail`` names the NVML functions that
  raise ``NVMLError`` for it.
- ``FakeClock`` is ``tracklog.testing.FakeClock``, shared with the SDK and the server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import psutil

MIB = 1 << 20
GIB = 1 << 30


# -- psutil --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Memory:
    rss: int


@dataclass(frozen=True)
class _VirtualMemory:
    total: int
    available: int
    percent: float


@dataclass(frozen=True)
class _DiskUsage:
    total: int
    used: int
    percent: float


@dataclass(frozen=True)
class _DiskIO:
    read_bytes: int
    write_bytes: int


@dataclass(frozen=True)
class _NetIO:
    bytes_sent: int
    bytes_recv: int


@dataclass
class FakeProcessState:
    """One process of a ``FakeCounters`` machine. ``children``: pids of all its descendants."""

    cpu: float = 0.0
    rss: int = 100 * MIB
    threads: int = 4
    children: list[int] = field(default_factory=list)
    exe: str = ""
    cmdline: list[str] = field(default_factory=list)
    cwd: str = ""
    environ: dict[str, str] = field(default_factory=dict)
    username: str = "tester"
    deny: set[str] = field(default_factory=set)  # methods raising AccessDenied, e.g. {"memory_info"}


class FakeProcess:
    """What ``FakeCounters.Process(pid)`` returns; reads the pid's current ``FakeProcessState``."""

    def __init__(self, machine: FakeCounters, pid: int) -> None:
        self._machine = machine
        self._pid = pid
        self._state("Process")

    @property
    def pid(self) -> int:
        return self._pid

    def _state(self, method: str) -> FakeProcessState:
        self._machine.calls[f"Process.{method}"] += 1
        state = self._machine.processes.get(self._pid)
        if state is None:
            raise psutil.NoSuchProcess(self._pid)
        if method in state.deny:
            raise psutil.AccessDenied(self._pid)
        return state

    def cpu_percent(self, interval: float | None = None) -> float:
        return self._state("cpu_percent").cpu

    def memory_info(self) -> _Memory:
        return _Memory(self._state("memory_info").rss)

    def num_threads(self) -> int:
        return self._state("num_threads").threads

    def children(self, recursive: bool = False) -> list[FakeProcess]:
        pids = self._state("children").children
        return [FakeProcess(self._machine, pid) for pid in pids if pid in self._machine.processes]

    def exe(self) -> str:
        return self._state("exe").exe

    def cmdline(self) -> list[str]:
        return list(self._state("cmdline").cmdline)

    def cwd(self) -> str:
        return self._state("cwd").cwd

    def environ(self) -> dict[str, str]:
        return dict(self._state("environ").environ)

    def username(self) -> str:
        return self._state("username").username


class FakeCounters:
    """A psutil-like machine (``SystemSampler(source=...)``, ``Daemon(metrics_source=...)``)."""

    Error = psutil.Error
    NoSuchProcess = psutil.NoSuchProcess
    AccessDenied = psutil.AccessDenied

    def __init__(self, cores: int = 2) -> None:
        self.per_cpu = [0.0] * cores
        self.memory_total = 16 * GIB
        self.memory_available = 8 * GIB
        self.memory_percent = 50.0
        self.disk_total = 100 * GIB
        self.disk_used = 40 * GIB
        self.disk_percent = 40.0
        self.disk_read = 0
        self.disk_written = 0
        self.net_sent = 0
        self.net_recv = 0
        self.processes: dict[int, FakeProcessState] = {}
        self.deny: set[str] = set()  # machine counters raising AccessDenied, e.g. {"net_io_counters"}
        self.calls: Counter[str] = Counter()

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name in self.deny:
            raise psutil.AccessDenied()

    def Process(self, pid: int) -> FakeProcess:
        return FakeProcess(self, pid)

    def cpu_percent(self, interval: float | None, percpu: bool) -> list[float]:
        self._call("cpu_percent")
        return list(self.per_cpu)

    def cpu_count(self, logical: bool = True) -> int | None:
        self._call("cpu_count")
        return len(self.per_cpu) if logical else max(1, len(self.per_cpu) // 2)

    def virtual_memory(self) -> _VirtualMemory:
        self._call("virtual_memory")
        return _VirtualMemory(self.memory_total, self.memory_available, self.memory_percent)

    def disk_usage(self, path: str) -> _DiskUsage:
        self._call("disk_usage")
        return _DiskUsage(self.disk_total, self.disk_used, self.disk_percent)

    def disk_io_counters(self) -> _DiskIO | None:
        self._call("disk_io_counters")
        return _DiskIO(self.disk_read, self.disk_written)

    def net_io_counters(self) -> _NetIO:
        self._call("net_io_counters")
        return _NetIO(self.net_sent, self.net_recv)


# -- NVML ------------------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _GpuMemory:
    total: int
    used: int


@dataclass(frozen=True)
class _GpuProcess:
    pid: int
    usedGpuMemory: int | None


@dataclass
class FakeGpu:
    name: str = "Fake GPU"
    utilization: int = 50
    memory_utilization: int = 20
    memory_total: int = 16 * GIB
    memory_used: int = 4 * GIB
    temperature: int = 60
    power_mw: int = 150_000
    power_limit_mw: int = 300_000
    sm_clock: int = 1500
    memory_clock: int = 5000
    processes: dict[int, int | None] = field(default_factory=dict)  # pid -> GPU memory (compute)
    fail: set[str] = field(default_factory=set)  # NVML functions raising NVMLError on this GPU


class FakeNvml:
    """An NVML-like library (``SystemSampler(gpus=Gpus(FakeNvml(...)))``, ``Daemon(nvml=...)``)."""

    NVMLError = FakeNVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(
        self, *gpus: FakeGpu, driver: str = "550.54.15", cuda: int = 12040, fail_init: bool = False
    ) -> None:
        self.gpus = list(gpus)
        self.driver = driver
        self.cuda = cuda
        self.fail_init = fail_init
        self.initialized = 0
        self.shut_down = 0
        self.calls: Counter[str] = Counter()

    def _gpu(self, handle: object, function: str) -> FakeGpu:
        self.calls[function] += 1
        assert isinstance(handle, int), f"{function} got {handle!r}, not a handle"
        gpu = self.gpus[handle]
        if function in gpu.fail:
            raise FakeNVMLError(f"{function}: Not Supported")
        return gpu

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise FakeNVMLError("Driver Not Loaded")
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.shut_down += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return index

    def nvmlDeviceGetName(self, handle: object) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> _Utilization:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return _Utilization(gpu.utilization, gpu.memory_utilization)

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> _GpuMemory:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return _GpuMemory(gpu.memory_total, gpu.memory_used)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: object, clock: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        return gpu.sm_clock if clock == self.NVML_CLOCK_SM else gpu.memory_clock

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[_GpuProcess]:
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [_GpuProcess(pid, used) for pid, used in gpu.processes.items()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object) -> list[_GpuProcess]:
        self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return []

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda
