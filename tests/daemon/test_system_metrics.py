"""The system metrics sampler: fake counters, fake NVML and a fake clock; once against real psutil."""

from __future__ import annotations

import math
import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import system_rows, system_values
from tracklogd import Gpus, SystemSampler, load_nvml
from tracklogd._capture import SamplerThread
from tracklogd._records import system_record
from tracklogd.testing import (
    FakeClock,
    FakeCounters,
    FakeGpu,
    FakeNvml,
    FakeProcessState,
    wait_until,
)

MIB = 1 << 20
GIB = 1 << 30
PID = 100
WALL = 1_700_000_000.0


def make_sampler(
    counters: FakeCounters, clock: FakeClock, nvml: FakeNvml | None = None, **kwargs: float
) -> SystemSampler:
    options: dict[str, float] = {"sample_interval": 2.0, "report_interval": 10.0, **kwargs}
    return SystemSampler(
        counters,
        Gpus(nvml),
        clock=clock,
        wall_clock=lambda: WALL,
        **options,
    )


def run_window(sampler: SystemSampler, clock: FakeClock, ticks: int = 5) -> list[tuple[str, bytes]]:
    reports: list[tuple[str, bytes]] = []
    for _ in range(ticks):
        clock.advance(sampler.sample_interval)
        reports += sampler.tick()
    return reports


@pytest.fixture
def counters() -> FakeCounters:
    machine = FakeCounters(cores=2)
    machine.processes[PID] = FakeProcessState(cpu=50.0, rss=200 * MIB, threads=8)
    return machine


def test_each_report_is_the_mean_of_the_samples_of_its_window(counters: FakeCounters) -> None:
    clock = FakeClock()
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")
    reports = []
    for i in range(5):
        counters.per_cpu = [10.0 * (i + 1), 10.0 * (i + 1) + 20.0]
        counters.processes[PID].rss = (100 + 10 * i) * MIB
        counters.net_sent = 1000 * (i + 1)
        counters.disk_read = 2 * MIB * (i + 1)
        clock.advance(2.0)
        reports += sampler.tick()
        if i < 4:
            assert reports == []  # the 10 s window is not over yet

    assert [key for key, _ in reports] == ["me/p/a"]
    values = system_values(reports[0][1])
    assert values["_timestamp"] == WALL
    assert values["system/cpu.0.cpu_percent"] == pytest.approx(30.0)  # mean of 10..50
    assert values["system/cpu.1.cpu_percent"] == pytest.approx(50.0)
    assert values["system/cpu"] == pytest.approx(40.0)  # the machine: mean of the cores
    assert values["system/proc.memory.rssMB"] == pytest.approx(120.0)
    assert values["system/proc.cpu.percent"] == pytest.approx(50.0)
    assert values["system/proc.cpu.threads"] == 8.0
    # Counted from the run's first sample: 0, 1000, ... 4000 bytes; 0, 2, ... 8 MB.
    assert values["system/network.sent"] == pytest.approx(2000.0)
    assert values["system/disk.in"] == pytest.approx(4.0)
    assert values["system/memory_percent"] == 50.0
    assert values["system/proc.memory.availableMB"] == 8 * 1024
    assert values["system/disk.usagePercent"] == 40.0
    assert values["system/disk.usageGB"] == 40.0

    counters.per_cpu = [90.0, 90.0]
    second = run_window(sampler, clock)
    assert len(second) == 1
    assert system_values(second[0][1])["system/cpu"] == pytest.approx(90.0)  # a fresh window


def test_one_sampler_serves_two_runs_reading_each_counter_once_per_tick(counters: FakeCounters) -> None:
    clock = FakeClock()
    counters.processes[200] = FakeProcessState(cpu=25.0, rss=50 * MIB, threads=2)
    nvml = FakeNvml(FakeGpu(), FakeGpu())
    sampler = make_sampler(counters, clock, nvml)
    sampler.add("me/p/a", PID, "/runs/a")
    sampler.add("me/p/b", 200, "/runs/a")
    machine_reads = ("cpu_percent", "virtual_memory", "disk_io_counters", "net_io_counters", "disk_usage")
    before = {name: counters.calls[name] for name in machine_reads}
    gpu_before = nvml.calls["nvmlDeviceGetUtilizationRates"]

    reports = dict(run_window(sampler, clock))

    assert {name: counters.calls[name] - before[name] for name in machine_reads} == dict.fromkeys(
        machine_reads, 5
    )  # five ticks, one read each, for both runs (one directory: one statvfs)
    assert nvml.calls["nvmlDeviceGetUtilizationRates"] - gpu_before == 2 * 5  # per GPU, not per run
    a, b = system_values(reports["me/p/a"]), system_values(reports["me/p/b"])
    assert a["system/cpu"] == b["system/cpu"]
    assert a["system/gpu.1.gpu"] == b["system/gpu.1.gpu"] == 50.0
    assert (a["system/proc.memory.rssMB"], b["system/proc.memory.rssMB"]) == (200.0, 50.0)


def test_the_training_processs_children_count_towards_its_process_metrics(counters: FakeCounters) -> None:
    clock = FakeClock()
    counters.processes[PID].children = [101, 102]
    counters.processes[101] = FakeProcessState(cpu=100.0, rss=300 * MIB, threads=3)
    counters.processes[102] = FakeProcessState(cpu=25.0, rss=100 * MIB, threads=1)
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")

    values = system_values(run_window(sampler, clock)[0][1])

    assert values["system/proc.cpu.percent"] == pytest.approx(175.0)  # percent of one core
    assert values["system/proc.memory.rssMB"] == pytest.approx(600.0)
    assert values["system/proc.memory.percent"] == pytest.approx(100.0 * 600 * MIB / (16 * GIB))
    assert values["system/proc.cpu.threads"] == 12.0


def test_process_cpu_never_reads_more_than_every_core_busy(counters: FakeCounters) -> None:
    # psutil counts CPU time in 10 ms ticks: over a short window a busy tree can seem to use more.
    clock = FakeClock()
    counters.processes[PID].children = [101]
    counters.processes[101] = FakeProcessState(cpu=390.0, rss=MIB, threads=1)
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")

    values = system_values(run_window(sampler, clock)[0][1])

    assert values["system/proc.cpu.percent"] == pytest.approx(100.0 * len(counters.per_cpu))


def test_a_child_that_appears_later_is_found_at_the_next_refresh_of_the_tree(counters: FakeCounters) -> None:
    clock = FakeClock()
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")
    run_window(sampler, clock)
    counters.processes[PID].children = [101]
    counters.processes[101] = FakeProcessState(cpu=0.0, rss=100 * MIB, threads=1)
    listings = counters.calls["Process.children"]

    reports = run_window(sampler, clock)  # the tree is listed again at the window's first tick

    assert counters.calls["Process.children"] - listings == 1  # once per report interval, not per tick
    assert system_values(reports[0][1])["system/proc.memory.rssMB"] == pytest.approx(300.0)


def test_gpu_metrics_come_from_nvml_with_the_processs_own_gpu_memory(counters: FakeCounters) -> None:
    clock = FakeClock()
    nvml = FakeNvml(FakeGpu(processes={PID: 3 * GIB, 999: GIB}), FakeGpu(processes={999: GIB}))
    sampler = make_sampler(counters, clock, nvml)
    sampler.add("me/p/a", PID, "/runs/a")

    values = system_values(run_window(sampler, clock)[0][1])

    gpu0 = {key: value for key, value in values.items() if key.startswith("system/gpu.0.")}
    assert gpu0 == {
        "system/gpu.0.gpu": 50.0,
        "system/gpu.0.memory": 20.0,
        "system/gpu.0.memoryAllocated": 25.0,
        "system/gpu.0.memoryAllocatedBytes": 4.0 * GIB,
        "system/gpu.0.temp": 60.0,
        "system/gpu.0.powerWatts": 150.0,
        "system/gpu.0.enforcedPowerLimitWatts": 300.0,
        "system/gpu.0.powerPercent": 50.0,
        "system/gpu.0.smClock": 1500.0,
        "system/gpu.0.memoryClock": 5000.0,
    }
    assert "system/gpu.1.gpu" in values
    assert values["system/gpu.process.0.memoryAllocatedBytes"] == 3.0 * GIB
    assert "system/gpu.process.1.memoryAllocatedBytes" not in values  # not this run's process
    sampler.remove("me/p/a")
    assert nvml.initialized == 1


@pytest.mark.parametrize(
    "nvml", [None, FakeNvml(fail_init=True), FakeNvml()], ids=["absent", "no-driver", "no-gpu"]
)
def test_without_nvml_or_a_gpu_the_gpu_metrics_are_omitted_and_the_rest_reported(
    counters: FakeCounters, nvml: FakeNvml | None
) -> None:
    clock = FakeClock()
    sampler = make_sampler(counters, clock, nvml)
    sampler.add("me/p/a", PID, "/runs/a")

    values = system_values(run_window(sampler, clock)[0][1])

    assert not [key for key in values if key.startswith("system/gpu")]
    assert "system/cpu" in values
    assert "system/proc.memory.rssMB" in values


def test_the_real_nvml_library_without_an_nvidia_driver_gives_no_gpu_metrics_and_no_error() -> None:
    # nvidia-ml-py is a dependency, so it loads; this machine has no driver, so nvmlInit fails.
    assert load_nvml() is not None
    assert Gpus(load_nvml).sample() == ({}, {})
    assert Gpus(load_nvml).describe() == {}


def test_a_counter_that_is_denied_loses_only_its_own_metric(counters: FakeCounters) -> None:
    clock = FakeClock()
    counters.processes[PID].deny = {"memory_info"}
    counters.deny = {"net_io_counters"}
    nvml = FakeNvml(FakeGpu(fail={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"}))
    sampler = make_sampler(counters, clock, nvml)
    sampler.add("me/p/a", PID, "/runs/a")

    values = system_values(run_window(sampler, clock)[0][1])

    lost = {
        "system/proc.memory.rssMB",
        "system/proc.memory.percent",
        "system/network.sent",
        "system/network.recv",
        "system/gpu.0.powerWatts",
        "system/gpu.0.powerPercent",
        "system/gpu.0.temp",
    }
    assert not lost & set(values)
    for kept in (
        "system/proc.cpu.percent",
        "system/proc.cpu.threads",
        "system/cpu",
        "system/memory_percent",
        "system/disk.in",
        "system/disk.usagePercent",
        "system/gpu.0.gpu",
        "system/gpu.0.enforcedPowerLimitWatts",
    ):
        assert kept in values, kept


def test_a_training_process_that_vanished_loses_only_the_process_metrics(counters: FakeCounters) -> None:
    clock = FakeClock()
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")
    del counters.processes[PID]

    values = system_values(run_window(sampler, clock)[0][1])

    assert not [key for key in values if key.startswith("system/proc.") and "available" not in key]
    assert "system/cpu" in values


def test_a_run_that_reattaches_from_the_same_process_keeps_its_window(counters: FakeCounters) -> None:
    clock = FakeClock()
    sampler = make_sampler(counters, clock)
    sampler.add("me/p/a", PID, "/runs/a")
    assert run_window(sampler, clock, ticks=3) == []
    counters.net_sent = 5000

    sampler.add("me/p/a", PID, "/runs/a")
    reports = run_window(sampler, clock, ticks=2)

    assert len(reports) == 1  # the same window: 5 samples
    assert system_values(reports[0][1])["system/network.sent"] == 2000.0  # the baseline was kept


def test_a_system_record_pads_with_nan_where_a_row_did_not_measure_a_key() -> None:
    rows = system_rows(system_record([(1.0, {"system/cpu": 5.0}), (2.0, {"system/gpu.0.gpu": 7.0})]))

    assert [row["_timestamp"] for row in rows] == [1.0, 2.0]
    assert rows[0]["system/cpu"] == 5.0
    assert math.isnan(rows[0]["system/gpu.0.gpu"])
    assert math.isnan(rows[1]["system/cpu"])


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as proc:
        yield proc
        proc.kill()


def test_against_real_psutil_the_values_are_plausible(tmp_path: Path, child: subprocess.Popen[bytes]) -> None:
    clock = FakeClock()  # psutil measures real time; the fake clock only closes the window
    sampler = SystemSampler(sample_interval=1.0, report_interval=1.0, clock=clock)
    sampler.add("me/p/a", os.getpid(), str(tmp_path))
    clock.advance(1.0)
    sampler.tick()  # the first sample finds the process (its CPU counts from the next one)
    sum(i * i for i in range(300_000))  # some CPU for the process to show
    clock.advance(1.0)

    reports = sampler.tick()

    values = system_values(reports[0][1])
    cores = os.cpu_count() or 1
    assert 0.0 <= values["system/cpu"] <= 100.0
    assert 0.0 <= values["system/cpu.0.cpu_percent"] <= 100.0
    assert f"system/cpu.{cores - 1}.cpu_percent" in values
    assert 0.0 <= values["system/proc.cpu.percent"] <= 100.0 * cores + 1
    assert 10.0 < values["system/proc.memory.rssMB"] < 100_000.0
    assert values["system/proc.cpu.threads"] >= 2  # this process and the child interpreter
    assert 0.0 < values["system/memory_percent"] <= 100.0
    assert values["system/proc.memory.availableMB"] > 0
    assert 0.0 < values["system/disk.usagePercent"] <= 100.0
    assert values["system/network.sent"] >= 0.0
    assert values.get("system/disk.in", 0.0) >= 0.0


def test_the_sampler_thread_runs_only_while_a_run_is_sampled_and_ends_it_with_its_last_window(
    counters: FakeCounters,
) -> None:
    thread = SamplerThread(SystemSampler(counters, sample_interval=0.01, report_interval=3600.0))
    received: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    assert not thread.running

    assert thread.add("me/p/a", PID, "/runs/a", received.put)
    assert not thread.add("me/p/a", PID, "/runs/a", received.put)  # a client that re-attached
    assert thread.running
    assert wait_until(lambda: counters.calls["virtual_memory"] >= 3)  # samples; the window stays open
    assert received.empty()
    assert thread.finish("me/p/a")  # the run ended: its partial window is its last report
    assert "system/cpu" in system_values(received.get(timeout=10))
    assert not thread.finish("me/p/a")
    assert wait_until(lambda: not thread.running)
    assert received.empty()

    thread.add("me/p/a", PID, "/runs/a", received.put)
    assert thread.running
    thread.close()
    assert not thread.running
