"""System metrics: sampled by the SDK and by `hyperdash run`, stored as internal metrics, off
with one switch, and never the job's problem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import types

import pytest

from hyperdash import sysmetrics
from hyperdash.sysmetrics import Gpus, SystemSampler

HOST_METRICS = {"sys/host/cpu_percent", "sys/host/memory_percent", "sys/host/memory_used_mb"}
# A child process that keeps a core busy for a while: the job's tree must show it. It says what
# share of a core it got (less than all of one on a loaded machine).
BUSY_CHILD = ("import time\nstart, cpu = time.time(), time.process_time()\nend = start + 2.5\n"
              "while time.time() < end: pass\n"
              "print(f'busy child share {100 * (time.process_time() - cpu) / (time.time() - start):.1f}')\n")


def series(account, run_uuid: str, name: str) -> dict:
    resp = account.get(f"/api/v1/runs/{run_uuid}/metrics/{name}")
    resp.raise_for_status()
    return resp.json()


def system_metrics(detail: dict) -> dict[str, dict]:
    return {name: point for name, point in detail["metrics"].items() if name.startswith("sys/")}


def assert_busy_child_counted(points: list[dict], stdout: bytes) -> None:
    """The job's tree used about the share of a core that its busy child says it got (the job
    itself waits meanwhile, using next to nothing)."""
    found = re.search(rb"busy child share ([0-9.]+)", stdout)
    assert found, stdout
    share = float(found.group(1))
    assert max(p["value"] for p in points) > max(5.0, share / 2), (share, points)


def test_an_experiment_records_its_process_tree_and_the_machine_as_internal_metrics(run_job, account):
    done = run_job(f"""
        import subprocess, sys
        from hyperdash import Experiment

        with Experiment("sampled", system_metrics_interval=0.2) as exp:
            exp.metric("loss", 0.5)
            subprocess.run([sys.executable, "-c", {BUSY_CHILD!r}], check=True)
    """)
    assert done.returncode == 0, done.stderr
    assert b"sys/" not in done.stdout  # never shown in the terminal
    run = account.wait_for_run("sampled", status="success")
    detail = account.run(run["uuid"])
    found = system_metrics(detail)
    assert {"sys/cpu_percent", "sys/memory_rss_mb"} | HOST_METRICS <= set(found), sorted(found)
    assert all(point["internal"] for point in found.values())
    assert detail["metrics"]["loss"]["internal"] is False
    # The child's busy loop counts as the job's.
    cpu = series(account, run["uuid"], "sys/cpu_percent")
    assert cpu["internal"] is True and len(cpu["points"]) >= 5
    assert_busy_child_counted(cpu["points"], done.stdout)
    rss = series(account, run["uuid"], "sys/memory_rss_mb")["points"]
    assert all(5 < p["value"] < 4096 for p in rss), rss
    assert all(0 <= p["value"] <= 100 for p in series(account, run["uuid"], "sys/host/memory_percent")["points"])
    assert series(account, run["uuid"], "loss")["internal"] is False


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_one_switch_turns_system_metrics_off(run_job, account, sdk_env, how):
    argument = ", system_metrics=False" if how == "argument" else ""
    env = sdk_env(HYPERDASH_SYSTEM_METRICS="0") if how == "environment" else sdk_env()
    done = run_job(f"""
        import sys, time
        from hyperdash import monitor

        @monitor("unsampled {how}"{argument}, system_metrics_interval=0.1)
        def job(exp):
            exp.metric("loss", 0.5)
            time.sleep(0.6)
            assert "psutil" not in sys.modules, "the sampler was started"

        job()
    """, env=env)
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run(f"unsampled {how}", status="success")
    assert set(account.run(run["uuid"])["metrics"]) == {"loss"}


def test_hyperdash_run_samples_the_commands_whole_process_tree(account, hyperdash_home):
    env = account.sdk_env(hyperdash_home)
    # The command's child does the work: only the whole tree shows it.
    command = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY_CHILD!r}])"
    done = subprocess.run(
        [sys.executable, "-m", "hyperdash", "run", "-n", "tree", "--system-metrics-interval", "0.2",
         sys.executable, "-c", command],
        env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run("tree", status="success")
    found = system_metrics(account.run(run["uuid"]))
    assert {"sys/cpu_percent", "sys/memory_rss_mb"} | HOST_METRICS <= set(found)
    assert_busy_child_counted(series(account, run["uuid"], "sys/cpu_percent")["points"], done.stdout)

    done = subprocess.run(
        [sys.executable, "-m", "hyperdash", "run", "-n", "untracked", "--no-system-metrics",
         "--system-metrics-interval", "0.1", sys.executable, "-c", "import time; time.sleep(0.5)"],
        env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run("untracked", status="success")
    assert account.run(run["uuid"])["metrics"] == {}


def test_a_bad_interval_is_refused_before_any_run_starts(account, hyperdash_home, reporting):
    from hyperdash import Experiment, monitor

    for bad in (0, -1, 0.01, "10", True):
        with pytest.raises(ValueError, match="system_metrics_interval must be a number of seconds"):
            Experiment("bad interval", system_metrics_interval=bad)
        with pytest.raises(ValueError, match="system_metrics_interval"):
            monitor("bad interval", system_metrics_interval=bad)
    done = subprocess.run(
        [sys.executable, "-m", "hyperdash", "run", "-n", "bad interval", "--system-metrics-interval", "0",
         sys.executable, "-c", "pass"],
        env=account.sdk_env(hyperdash_home), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "--system-metrics-interval" in done.stderr and "0.1" in done.stderr
    assert account.runs(name="bad interval") == []


def test_the_sampler_stops_when_the_experiment_ends(account, reporting):
    from hyperdash import Experiment

    exp = Experiment("stops", capture_io=False, system_metrics_interval=0.1)
    sampler = exp._sampler
    assert sampler is not None and sampler.is_alive()
    time.sleep(0.3)
    started = time.monotonic()
    exp.end()
    assert time.monotonic() - started < 5
    assert not sampler.is_alive()
    assert sampler.samples >= 1


def test_the_first_sample_waits_a_moment_and_a_job_that_ends_sooner_is_not_sampled(monkeypatch):
    got: dict[str, float] = {}
    sampler = SystemSampler(got.__setitem__)  # the default interval
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert not sampler.is_alive() and sampler.samples == 0 and got == {}
    monkeypatch.setattr(sysmetrics, "FIRST_SAMPLE_DELAY", 0.05)
    sampler = SystemSampler(got.__setitem__)
    sampler.start()
    deadline = time.monotonic() + 10
    while not sampler.samples and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert sampler.samples >= 1 and {"sys/host/memory_percent", "sys/memory_rss_mb"} <= set(got)


def test_errors_in_the_sampler_are_told_once_and_sampling_goes_on():
    told: list[tuple[str, str]] = []

    def record(name: str, value: float) -> None:
        raise OSError("disk on fire")

    sampler = SystemSampler(record, interval=0.1, warn=lambda key, message: told.append((key, message)))
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.samples < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    assert sampler.samples >= 3  # still sampling after the errors
    assert len(told) == 1 and "disk on fire" in told[0][1]
    assert not sampler.is_alive()


def test_a_sampler_of_a_process_that_has_ended_records_the_machine_only():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    got: dict[str, float] = {}
    told: list[str] = []
    sampler = SystemSampler(got.__setitem__, pid=proc.pid, interval=0.1, warn=lambda key, message: told.append(message))
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    assert told == []  # nothing to say: a job that has ended is no error
    assert HOST_METRICS <= set(got) and not any(name in got for name in ("sys/cpu_percent", "sys/memory_rss_mb"))


def test_a_forked_childs_sampler_is_inert():
    got: list[str] = []
    sampler = SystemSampler(lambda name, value: got.append(name), interval=0.1)
    sampler.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: stop() returns at once, nothing is sampled here
        started = time.monotonic()
        sampler.stop()
        alive = any(t.name == "hyperdash-system-metrics" for t in threading.enumerate())
        os.write(write, b"ok" if sampler._forked and not alive and time.monotonic() - started < 0.5 else b"no")
        os._exit(0)
    os.close(write)
    assert os.read(read, 2) == b"ok"
    os.waitpid(pid, 0)
    time.sleep(0.3)
    sampler.stop()
    assert got  # the parent's goes on until stopped


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HYPERDASH_SYSTEM_METRICS_INTERVAL", "2.5")
    assert sysmetrics.interval_setting() == 2.5
    for unusable in ("x", "0", "-3"):
        monkeypatch.setenv("HYPERDASH_SYSTEM_METRICS_INTERVAL", unusable)
        assert sysmetrics.interval_setting() == sysmetrics.DEFAULT_INTERVAL
    monkeypatch.delenv("HYPERDASH_SYSTEM_METRICS_INTERVAL")
    assert sysmetrics.interval_setting() == 10.0
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("HYPERDASH_SYSTEM_METRICS", off)
        assert not sysmetrics.enabled()
        assert sysmetrics.enabled(True)
    monkeypatch.setenv("HYPERDASH_SYSTEM_METRICS", "1")
    assert sysmetrics.enabled() and not sysmetrics.enabled(False)


def test_nvml_is_not_tried_where_no_nvidia_driver_is(monkeypatch, tmp_path):
    calls = []

    class FakeNvml(types.ModuleType):
        class NVMLError(Exception):
            pass

        def nvmlInit(self):
            calls.append("init")
            raise self.NVMLError("no library")

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml("pynvml"))
    monkeypatch.setattr(sysmetrics, "NVIDIA_DRIVER_PATHS", (str(tmp_path / "nvidiactl"),))
    bus = tmp_path / "pci"
    for number, vendor in enumerate(["0x8086", "0x1af4"]):
        (bus / f"0000:00:0{number}.0").mkdir(parents=True)
        (bus / f"0000:00:0{number}.0" / "vendor").write_text(vendor + "\n")
    monkeypatch.setattr(sysmetrics, "PCI_DEVICES", str(bus))
    assert Gpus.open() is None
    assert calls == []
    (tmp_path / "nvidiactl").touch()  # a driver: NVML is asked, and says there is no GPU
    assert Gpus.open() is None
    assert calls == ["init"]
    # no driver loaded yet, but an NVIDIA card on the bus: NVML is asked (it loads the driver)
    (tmp_path / "nvidiactl").unlink()
    (bus / "0000:00:02.0").mkdir()
    (bus / "0000:00:02.0" / "vendor").write_text("0x10de\n")
    assert Gpus.open() is None
    assert calls == ["init", "init"]


@pytest.fixture
def gpus():
    found = Gpus.open()
    if found is None:
        pytest.skip("NVML finds no NVIDIA GPU here (no driver, or no device)")
    yield found
    found.close()


def test_gpu_figures_through_nvml(gpus):
    readings = gpus.read()
    for i in range(len(gpus.handles)):
        prefix = f"sys/gpu{i}/"
        assert 0 <= readings[prefix + "util_percent"] <= 100
        assert readings[prefix + "memory_used_mb"] >= 0
        assert 0 <= readings[prefix + "memory_percent"] <= 100
        if prefix + "temperature_c" in readings:
            assert 0 < readings[prefix + "temperature_c"] < 130
        if prefix + "power_w" in readings:
            assert 0 < readings[prefix + "power_w"] < 2000
    got: dict[str, float] = {}
    sampler = SystemSampler(got.__setitem__, interval=0.1)
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    assert "sys/gpu0/memory_used_mb" in got and "sys/gpu0/util_percent" in got
