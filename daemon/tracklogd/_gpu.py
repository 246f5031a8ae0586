"""NVIDIA GPUs through NVML: per-device samples for the system metrics, and a description for the
metadata. One ``Gpus`` per daemon, shared by the sampler thread and the metadata captures.

NVML is loaded and initialised on first use and shut down by ``close()``. When the library is
missing, ``nvmlInit`` fails (no driver) or there is no device, ``Gpus`` is empty and everything
asking it gets nothing. Every counter is read on its own: an ``NVMLError`` (not supported on this
board, no permission) omits that one value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from tracklogd._ratelimit import RateLimitedLog
from tracklogd._sources import NvmlLike, load_nvml

log = logging.getLogger(__name__)

T = TypeVar("T")


class Gpus:
    def __init__(self, nvml: NvmlLike | Callable[[], NvmlLike | None] | None = load_nvml) -> None:
        # A loader (called on first use) or the library itself; None means no NVML.
        self._source = nvml
        self._nvml: NvmlLike | None = None
        self._handles: list[object] = []
        self._lock = threading.Lock()
        self._ready = False
        self._ratelog = RateLimitedLog(log, interval=600.0)

    def _load(self) -> NvmlLike | None:
        with self._lock:
            if self._ready:
                return self._nvml
            self._ready = True
            source = self._source
            nvml = source() if callable(source) else source
            if nvml is None:
                return None
            try:
                nvml.nvmlInit()
            except Exception as exc:  # NVMLError: no driver, no library; nothing to measure
                log.info("NVML is present but cannot start (%s); no GPU metrics", exc)
                return None
            try:
                self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            except Exception as exc:
                log.info("NVML cannot list the GPUs (%s); no GPU metrics", exc)
                self._handles = []
            self._nvml = nvml
            return nvml

    def _read(self, nvml: NvmlLike, what: str, call: Callable[..., T], *args: object) -> T | None:
        try:
            return call(*args)
        except nvml.NVMLError:
            return None  # this board or this user cannot read it: the value is omitted
        except Exception:
            self._ratelog.log(logging.WARNING, what, "NVML %s failed", what, exc_info=True)
            return None

    def sample(self) -> tuple[dict[str, float], dict[int, dict[int, int]]]:
        """One reading of every device: ``system/gpu.{i}.*`` values, and per device the GPU memory
        (bytes) of each process using it, for the runs' ``system/gpu.process.{i}.*``."""
        nvml = self._load()
        values: dict[str, float] = {}
        processes: dict[int, dict[int, int]] = {}
        if nvml is None:
            return values, processes
        for i, handle in enumerate(self._handles):
            prefix = f"system/gpu.{i}."
            rates = self._read(nvml, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
            if rates is not None:
                values[prefix + "gpu"] = float(rates.gpu)
                values[prefix + "memory"] = float(rates.memory)
            memory = self._read(nvml, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is not None:
                values[prefix + "memoryAllocatedBytes"] = float(memory.used)
                if memory.total:
                    values[prefix + "memoryAllocated"] = 100.0 * memory.used / memory.total
            temp = self._read(
                nvml, "temperature", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
            )
            if temp is not None:
                values[prefix + "temp"] = float(temp)
            power = self._read(nvml, "power", nvml.nvmlDeviceGetPowerUsage, handle)
            limit = self._read(nvml, "power limit", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            if power is not None:
                values[prefix + "powerWatts"] = power / 1000.0
            if limit is not None:
                values[prefix + "enforcedPowerLimitWatts"] = limit / 1000.0
            if power is not None and limit:
                values[prefix + "powerPercent"] = 100.0 * power / limit
            sm = self._read(nvml, "sm clock", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
            if sm is not None:
                values[prefix + "smClock"] = float(sm)
            mem_clock = self._read(
                nvml, "memory clock", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM
            )
            if mem_clock is not None:
                values[prefix + "memoryClock"] = float(mem_clock)
            processes[i] = self._processes(nvml, handle)
        return values, processes

    def _processes(self, nvml: NvmlLike, handle: object) -> dict[int, int]:
        used: dict[int, int] = {}
        for what, call in (
            ("compute processes", nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics processes", nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for proc in self._read(nvml, what, call, handle) or ():
                if proc.usedGpuMemory is not None:  # a process in both lists holds one allocation
                    used[proc.pid] = max(used.get(proc.pid, 0), int(proc.usedGpuMemory))
        return used

    def describe(self) -> dict[str, object]:
        """Metadata keys (gpu, gpu_count, gpu_devices, cuda_version, nvidia_driver_version); empty
        without NVML or without a device."""
        nvml = self._load()
        if nvml is None or not self._handles:
            return {}
        devices: list[dict[str, object]] = []
        for i, handle in enumerate(self._handles):
            name = self._read(nvml, "name", nvml.nvmlDeviceGetName, handle)
            memory = self._read(nvml, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            devices.append(
                {
                    "index": i,
                    "name": _text(name) if name is not None else "",
                    "memory_total": memory.total if memory is not None else None,
                }
            )
        out: dict[str, object] = {
            "gpu": devices[0]["name"],
            "gpu_count": len(devices),
            "gpu_devices": devices,
        }
        driver = self._read(nvml, "driver version", nvml.nvmlSystemGetDriverVersion)
        if driver is not None:
            out["nvidia_driver_version"] = _text(driver)
        cuda = self._read(nvml, "cuda version", nvml.nvmlSystemGetCudaDriverVersion)
        if cuda:
            out["cuda_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        return out

    def close(self) -> None:
        with self._lock:
            nvml, self._nvml, self._handles = self._nvml, None, []
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)


def _text(value: str | bytes) -> str:
    # Older nvidia-ml-py versions return bytes.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
