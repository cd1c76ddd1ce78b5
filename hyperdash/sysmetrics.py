"""System metrics: what the job's processes and the machine are doing while a run runs.

A :class:`SystemSampler` thread reads, every ``interval`` seconds (10 by default; the first time
after a second, or the interval if shorter: a job that ends sooner is not sampled), the CPU and
memory of the job's process tree (a process and all its descendants), the machine's CPU, memory,
disk and network throughput (through :mod:`psutil`), and for each NVIDIA GPU its utilisation,
memory, temperature and power (through NVML, the ``nvidia-ml-py`` package; no driver or no
device: no GPU figures, and nothing said). Each reading becomes an internal metric named under
``sys/`` (see :data:`NAMES`), so it never counts as the job's own progress.

The sampler never hurts the job: a reading that fails is left out, an unexpected error is told
once in one line and the sampling goes on, each sample's work is bounded
(:data:`MAX_TREE_PROCESSES`), the thread is a daemon that :meth:`SystemSampler.stop` ends
within a second, and a forked child's copy of it is inert. This module (and psutil, and NVML)
is imported only when a run starts sampling, never by ``import hyperdash``.

``HYPERDASH_SYSTEM_METRICS=0`` turns sampling off everywhere; ``HYPERDASH_SYSTEM_METRICS_INTERVAL``
sets the interval in seconds.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["SystemSampler", "NAMES", "DEFAULT_INTERVAL", "MIN_INTERVAL", "enabled", "interval_setting",
           "start_for"]

DEFAULT_INTERVAL = 10.0
# Seconds from the start of sampling to the first sample (or the interval, if shorter).
FIRST_SAMPLE_DELAY = 1.0
# Shorter intervals cost more than they tell.
MIN_INTERVAL = 0.1
# What the NVIDIA driver makes where it runs: on a machine, in a container given GPUs, and
# under WSL; failing those, an NVIDIA card on the PCI bus (its driver not loaded yet: NVML loads
# it). Where none is, NVML is not even tried.
NVIDIA_DRIVER_PATHS = ("/proc/driver/nvidia", "/sys/module/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")
PCI_DEVICES = "/sys/bus/pci/devices"
NVIDIA_PCI_VENDOR = "0x10de"
# A job with more processes than this is sampled through its first ones only.
MAX_TREE_PROCESSES = 1000
MB = 1024 * 1024

# What each metric holds. ``{i}`` is the GPU's index as NVML numbers it.
NAMES = {
    "sys/cpu_percent": "CPU used by the job's processes, in % of one core (200 = two cores busy)",
    "sys/memory_rss_mb": "resident memory of the job's processes, MiB",
    "sys/host/cpu_percent": "CPU used on the machine, in % of all its cores",
    "sys/host/memory_percent": "memory in use on the machine, %",
    "sys/host/memory_used_mb": "memory in use on the machine, MiB",
    "sys/host/disk_read_mb_s": "disk reads on the machine, MiB/s",
    "sys/host/disk_write_mb_s": "disk writes on the machine, MiB/s",
    "sys/host/net_recv_mb_s": "network received by the machine, MiB/s",
    "sys/host/net_sent_mb_s": "network sent by the machine, MiB/s",
    "sys/gpu{i}/util_percent": "GPU utilisation, %",
    "sys/gpu{i}/memory_used_mb": "GPU memory in use, MiB",
    "sys/gpu{i}/memory_percent": "GPU memory in use, %",
    "sys/gpu{i}/temperature_c": "GPU temperature, °C",
    "sys/gpu{i}/power_w": "GPU power draw, W",
}

_OFF = ("0", "false", "no", "off")


def enabled(flag: bool | None = None) -> bool:
    """Whether to sample: ``flag`` when given, else not when ``HYPERDASH_SYSTEM_METRICS`` is
    ``0``/``false``/``no``/``off``."""
    if flag is not None:
        return bool(flag)
    return os.environ.get("HYPERDASH_SYSTEM_METRICS", "").strip().lower() not in _OFF


def interval_setting(interval: float | None = None) -> float:
    """Seconds between samples: ``interval`` when given, else ``HYPERDASH_SYSTEM_METRICS_INTERVAL``,
    else 10. Raises ValueError for a number below :data:`MIN_INTERVAL` given in code."""
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= MIN_INTERVAL:
            raise ValueError(f"system_metrics_interval must be a number of seconds >= {MIN_INTERVAL}, "
                             f"not {interval!r}")
        return float(interval)
    raw = os.environ.get("HYPERDASH_SYSTEM_METRICS_INTERVAL", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= MIN_INTERVAL else DEFAULT_INTERVAL


class _Tree:
    """CPU and memory of a process and its descendants, from one sample to the next."""

    def __init__(self, psutil: Any, pid: int):
        self.psutil = psutil
        self.pid = pid
        self.root: Any = None
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds last seen

    def read(self, elapsed: float | None) -> dict[str, float]:
        psutil = self.psutil
        try:
            if self.root is None:
                self.root = psutil.Process(self.pid)
            procs = [self.root, *self.root.children(recursive=True)[: MAX_TREE_PROCESSES - 1]]
        except psutil.Error:
            return {}  # the job has ended: the machine's figures go on until the sampler stops
        rss = 0
        cpu_delta = 0.0
        seen: dict[tuple[int, float], float] = {}
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue  # gone between the listing and the reading
            used = times.user + times.system
            seen[key] = used
            # A process not seen before started during the interval (or is the first sample's).
            cpu_delta += used - self.cpu.get(key, 0.0)
        first = not self.cpu
        self.cpu = seen
        readings = {"sys/memory_rss_mb": rss / MB}
        if elapsed and not first:
            readings["sys/cpu_percent"] = max(cpu_delta, 0.0) / elapsed * 100
        return readings


class _Host:
    """The machine's CPU, memory, disk and network, from one sample to the next."""

    def __init__(self, psutil: Any):
        self.psutil = psutil
        self.last: dict[str, float] = {}

    def _rates(self, counters: dict[str, float], elapsed: float | None) -> dict[str, float]:
        rates = {}
        for name, value in counters.items():
            before = self.last.get(name)
            if elapsed and before is not None and value >= before:
                rates[name] = (value - before) / elapsed / MB
        self.last.update(counters)
        return rates

    def read(self, elapsed: float | None) -> dict[str, float]:
        psutil = self.psutil
        readings: dict[str, float] = {}
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        before_idle, before_total = self.last.get("cpu_idle"), self.last.get("cpu_total")
        if before_idle is not None and before_total is not None and total > before_total:
            readings["sys/host/cpu_percent"] = max(0.0, 100 * (1 - (idle - before_idle) / (total - before_total)))
        self.last["cpu_idle"], self.last["cpu_total"] = idle, total
        memory = psutil.virtual_memory()
        readings["sys/host/memory_percent"] = float(memory.percent)
        readings["sys/host/memory_used_mb"] = (memory.total - memory.available) / MB
        counters: dict[str, float] = {}
        disk = psutil.disk_io_counters()
        if disk is not None:  # none in some containers
            counters["sys/host/disk_read_mb_s"] = disk.read_bytes
            counters["sys/host/disk_write_mb_s"] = disk.write_bytes
        net = psutil.net_io_counters()
        if net is not None:
            counters["sys/host/net_recv_mb_s"] = net.bytes_recv
            counters["sys/host/net_sent_mb_s"] = net.bytes_sent
        readings.update(self._rates(counters, elapsed))
        return readings


class Gpus:
    """Every NVIDIA GPU that NVML finds. :meth:`open` gives ``None`` where there is none (no
    ``nvidia-ml-py``, no driver, no device)."""

    def __init__(self, nvml: Any, handles: list[Any]):
        self.nvml = nvml
        self.handles = handles

    @classmethod
    def open(cls) -> Gpus | None:
        if not _nvidia_present():
            return None  # (NVML's import and its search for the library cost ~10 ms)
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError:
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError:
            handles = []
        if not handles:
            _shutdown(pynvml)
            return None
        return cls(pynvml, handles)

    def read(self) -> dict[str, float]:
        nvml = self.nvml
        readings: dict[str, float] = {}
        for i, handle in enumerate(self.handles):
            prefix = f"sys/gpu{i}/"
            # Each figure alone: a card may not report its power, or its temperature.
            try:
                readings[prefix + "util_percent"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                pass
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                readings[prefix + "memory_used_mb"] = memory.used / MB
                if memory.total:
                    readings[prefix + "memory_percent"] = 100 * memory.used / memory.total
            except nvml.NVMLError:
                pass
            try:
                readings[prefix + "temperature_c"] = float(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            except nvml.NVMLError:
                pass
            try:
                readings[prefix + "power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000  # milliwatts
            except nvml.NVMLError:
                pass
        return readings

    def close(self) -> None:
        _shutdown(self.nvml)


def _nvidia_present() -> bool:
    """Whether this machine may have an NVIDIA GPU for NVML to find."""
    if any(os.path.exists(path) for path in NVIDIA_DRIVER_PATHS):
        return True
    try:
        devices = list(os.scandir(PCI_DEVICES))
    except OSError:
        return False
    for device in devices:
        try:
            with open(os.path.join(device.path, "vendor")) as vendor:
                if vendor.read().strip() == NVIDIA_PCI_VENDOR:
                    return True
        except OSError:
            continue
    return False


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


_live_samplers: weakref.WeakSet[SystemSampler] = weakref.WeakSet()


def _forget_samplers_in_child() -> None:
    for sampler in list(_live_samplers):
        sampler._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_samplers_in_child)


class SystemSampler(threading.Thread):
    """A daemon thread that calls ``record(name, value)`` with each reading every ``interval``
    seconds, for the process tree of ``pid`` (default: this process) and the machine.

    ``warn(key, message)`` is told of an unexpected error, at most once; the sampling goes on.
    ``cpu_seconds`` is the CPU time the thread itself has used, what it costs the job.
    """

    def __init__(self, record: Callable[[str, float], Any], *, pid: int | None = None,
                 interval: float = DEFAULT_INTERVAL, warn: Callable[[str, str], Any] | None = None,
                 gpus: bool = True):
        super().__init__(name="hyperdash-system-metrics", daemon=True)
        self.record = record
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.warn = warn
        self.gpus = gpus
        self.samples = 0
        self.cpu_seconds = 0.0
        self._stop_event = threading.Event()
        self._forked = False
        self._warned = False
        _live_samplers.add(self)

    def run(self) -> None:
        start_cpu = time.thread_time()
        gpus = None
        # A job that ends within FIRST_SAMPLE_DELAY is not sampled: psutil's import and a first
        # sample would cost it more than they could tell.
        if self._stop_event.wait(min(self.interval, FIRST_SAMPLE_DELAY)):
            return
        try:
            import psutil

            tree, host = _Tree(psutil, self.pid), _Host(psutil)
            gpus = Gpus.open() if self.gpus else None
            last = None
            while True:
                now = time.monotonic()
                self._sample(tree, host, gpus, None if last is None else now - last)
                last = now
                self.cpu_seconds = time.thread_time() - start_cpu
                if self._stop_event.wait(self.interval):
                    return
        except Exception as exc:
            self._tell(f"system metrics are off for this run: {exc!r}")
        finally:
            if gpus is not None:
                gpus.close()
            self.cpu_seconds = time.thread_time() - start_cpu

    def _sample(self, tree: _Tree, host: _Host, gpus: Gpus | None, elapsed: float | None) -> None:
        # CPU shares and rates are taken between two samples: the first records the rest.
        readings: dict[str, float] = {}
        reads: list[Callable[[], dict[str, float]]] = [lambda: tree.read(elapsed), lambda: host.read(elapsed)]
        if gpus is not None:
            reads.append(gpus.read)
        for read in reads:
            try:
                readings.update(read())
            except Exception as exc:
                self._tell(f"a system metric could not be read: {exc!r}")
        if self._forked or self._stop_event.is_set():
            return
        self.samples += 1
        for name, value in readings.items():
            try:
                self.record(name, value)
            except Exception as exc:
                self._tell(f"a system metric could not be recorded: {exc!r}")

    def _tell(self, message: str) -> None:
        if self._warned or self.warn is None:
            return
        self._warned = True
        try:
            self.warn("system-metrics", message)
        except Exception:
            pass

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling; waits at most ``timeout`` seconds for the thread to end."""
        self._stop_event.set()
        if self._forked or not self.is_alive() or self is threading.current_thread():
            return
        self.join(timeout)


def start_for(run: Any, *, pid: int | None = None, flag: bool | None = None,
              interval: float | None = None) -> SystemSampler | None:
    """Start sampling into ``run`` (a :class:`~hyperdash.run.Run`) as internal metrics, unless
    ``flag`` (else ``HYPERDASH_SYSTEM_METRICS``) turns it off; the sampler, or ``None``."""
    if not enabled(flag):
        return None
    seconds = interval_setting(interval)

    def record(name: str, value: float) -> None:
        run.metric(name, value, log=False, internal=True)

    try:
        sampler = SystemSampler(record, pid=pid, interval=seconds, warn=run.warn)
        sampler.start()
    except Exception as exc:  # never the job's problem (no thread can start at interpreter exit)
        run.warn("system-metrics", f"system metrics are off for this run: {exc!r}")
        return None
    return sampler
