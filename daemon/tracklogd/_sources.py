"""The metrics sources the daemon reads: psutil and NVML, as the small surfaces it uses.

They are the capture's test seam: ``SystemSampler``, ``Gpus`` and ``capture_metadata`` take a
``PsutilLike`` (the ``psutil`` module itself in production) and an ``NvmlLike`` (the ``pynvml``
module of nvidia-ml-py, when installed); ``tracklogd.testing`` ships ``FakeCounters`` and
``FakeNvml``. Each protocol lists only what the daemon calls, so a fake stays small.

NVML is optional: ``load_nvml()`` imports ``pynvml`` only when the daemon first needs it, and a
missing package (or a broken one) means no GPU metrics, never an error.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from typing import Literal, Protocol, cast

log = logging.getLogger(__name__)


# -- psutil --------------------------------------------------------------------------------------


class MemoryInfo(Protocol):
    @property
    def rss(self) -> int: ...


class VirtualMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def percent(self) -> float: ...


class DiskUsage(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def percent(self) -> float: ...


class DiskIO(Protocol):
    @property
    def read_bytes(self) -> int: ...
    @property
    def write_bytes(self) -> int: ...


class NetIO(Protocol):
    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_recv(self) -> int: ...


class ProcessLike(Protocol):
    """What the daemon reads of one process (``psutil.Process``)."""

    @property
    def pid(self) -> int: ...
    def cpu_percent(self, interval: float | None = None) -> float: ...
    def memory_info(self) -> MemoryInfo: ...
    def num_threads(self) -> int: ...
    def children(self, recursive: bool = False) -> Sequence[ProcessLike]: ...
    def exe(self) -> str: ...
    def cmdline(self) -> list[str]: ...
    def cwd(self) -> str: ...
    def environ(self) -> dict[str, str]: ...
    def username(self) -> str: ...


class PsutilLike(Protocol):
    """What the daemon reads of the machine (the ``psutil`` module)."""

    @property
    def Error(self) -> type[Exception]: ...  # base of NoSuchProcess and AccessDenied
    @property
    def NoSuchProcess(self) -> type[Exception]: ...
    def Process(self, pid: int) -> ProcessLike: ...
    def cpu_percent(self, interval: float | None, percpu: Literal[True]) -> list[float]: ...
    def cpu_count(self, logical: bool = True) -> int | None: ...
    def virtual_memory(self) -> VirtualMemory: ...
    def disk_usage(self, path: str) -> DiskUsage: ...
    def disk_io_counters(self) -> DiskIO | None: ...
    def net_io_counters(self) -> NetIO: ...


def psutil_module() -> PsutilLike:
    import psutil

    return psutil


# -- NVML ------------------------------------------------------------------------------------------


class Utilization(Protocol):
    @property
    def gpu(self) -> int: ...
    @property
    def memory(self) -> int: ...


class GpuMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def used(self) -> int: ...


class GpuProcess(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def usedGpuMemory(self) -> int | None: ...  # None where the driver cannot tell (e.g. WDDM)


class NvmlLike(Protocol):
    """What the daemon calls of NVML (the ``pynvml`` module of nvidia-ml-py). Handles are opaque.
    Every call may raise ``NVMLError`` (not supported, no permission, GPU lost ...)."""

    @property
    def NVMLError(self) -> type[Exception]: ...
    @property
    def NVML_TEMPERATURE_GPU(self) -> int: ...
    @property
    def NVML_CLOCK_SM(self) -> int: ...
    @property
    def NVML_CLOCK_MEM(self) -> int: ...
    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...
    def nvmlDeviceGetName(self, handle: object) -> str | bytes: ...
    def nvmlDeviceGetUtilizationRates(self, handle: object) -> Utilization: ...
    def nvmlDeviceGetMemoryInfo(self, handle: object) -> GpuMemory: ...
    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: object) -> int: ...  # milliwatts
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object) -> int: ...  # milliwatts
    def nvmlDeviceGetClockInfo(self, handle: object, clock: int) -> int: ...  # MHz
    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> Sequence[GpuProcess]: ...
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object) -> Sequence[GpuProcess]: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...  # e.g. 12040 for CUDA 12.4


def load_nvml() -> NvmlLike | None:
    """The ``pynvml`` module when nvidia-ml-py is installed, else None. Imported on first use only:
    the daemon of a machine without it never pays for it."""
    try:
        with warnings.catch_warnings():
            # The deprecated "pynvml" distribution warns on import; the daemon's log is no place for it.
            warnings.simplefilter("ignore")
            module = importlib.import_module("pynvml")
    except ImportError:
        return None
    except Exception as exc:  # a broken install must not take the daemon down
        log.warning("cannot import pynvml, so no GPU metrics: %r", exc)
        return None
    return cast(NvmlLike, module)
