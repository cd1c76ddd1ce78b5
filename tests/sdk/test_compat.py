"""Scripts written for the original SDK: ``exp.iter``, ``exp.log``, ``exp.callbacks.keras``, any
param value, the original positional arguments, and SIGHUP."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import pytest
from sdk_support import texts

from hyperdash import run as run_module

# A stand-in for the Keras package (not installed here): just its Callback base class, as a
# training loop would drive it.
FAKE_KERAS = {
    "keras/__init__.py": "",
    "keras/callbacks.py": "class Callback:\n    def __init__(self):\n        self.model = None\n",
}


def test_original_experiment_script_runs_unchanged(run_job, sdk_env, account, tmp_path):
    for name, text in FAKE_KERAS.items():
        path = tmp_path / "libs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = sdk_env()
    key = env.pop("HYPERDASH_API_KEY")
    env["PYTHONPATH"] = str(tmp_path / "libs") + ":" + env["PYTHONPATH"]
    env["THE_KEY"] = key
    done = run_job("""
        import os, sys
        from hyperdash.sdk import Experiment

        exp = Experiment("original", lambda: os.environ["THE_KEY"], False)  # getter, capture_io
        assert "keras" not in sys.modules  # nothing imported until a callback is asked for
        exp.param("layers", [64, 32])
        exp.param("optimizer", {"name": "adam", "betas": [0.9, 0.999]})
        exp.param("shape", (3, 4))
        exp.param("activation", type("Relu", (), {"__str__": lambda self: "relu()"})())
        exp.param("warmup", float("nan"))
        exp.param("quiet", 1, log=False)
        exp.metric("quiet metric", 2.5, log=False)
        total = 0
        for i in exp.iter(3):
            total += i
        print("not captured")
        exp.log("by exp.log")
        callback = exp.callbacks.keras
        assert callback is exp.callbacks.keras and "keras" in sys.modules
        for epoch in range(2):
            callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_acc": 0.5 + epoch / 4, "note": "x"})
        exp.end()
        print("total", total)
    """, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode().splitlines()
    assert "{ layers: [64, 32] }" in out and "| Iteration 2 of 2 |" in out and "by exp.log" in out
    assert not any("quiet" in line for line in out) and out[-1] == "total 3"
    run = account.wait_for_run("original", status="success")
    detail = account.run(run["uuid"])
    assert detail["params"] == {
        "layers": "[64, 32]", "optimizer": '{"name": "adam", "betas": [0.9, 0.999]}', "shape": "[3, 4]",
        "activation": "relu()", "warmup": "nan", "quiet": 1, "hd_iter_0_epochs": 3,
    }
    assert texts(account.logs(run["uuid"])) == ["by exp.log"]  # capture_io=False: that line only

    def points(name):
        return [(p["step"], p["value"]) for p in
                account.get(f"/api/v1/runs/{run['uuid']}/metrics/{name}").json()["points"]]

    assert points("val_acc") == [(0, 0.5), (1, 0.75)] and points("loss") == [(0, 1.0), (1, 0.5)]
    assert points("quiet metric") == [(None, 2.5)]
    assert points("hd_iter_0")[0][1] == 0 and points("hd_iter_0")[-1][1] == 2


def test_import_hyperdash_gives_its_public_names_and_errors_and_loads_a_run_only_when_used():
    code = (
        "import sys, hyperdash\n"
        "assert 'hyperdash.experiment' not in sys.modules and 'hyperdash.run' not in sys.modules\n"
        "assert issubclass(hyperdash.errors.TransportError, hyperdash.errors.HyperdashError)\n"
        "from hyperdash import Experiment, monitor\n"
        "from hyperdash.sdk import Experiment as E2, monitor as m2\n"
        "assert callable(hyperdash.monitor) and m2 is monitor and E2 is Experiment is hyperdash.Experiment\n"
        "assert {'Experiment', 'monitor', 'monitor_cell'} <= set(dir(hyperdash))\n"
        "try:\n    hyperdash.no_such_name\nexcept AttributeError:\n    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_keras_callback_is_none_without_keras(run_job):
    done = run_job("""
        import sys
        from hyperdash import Experiment

        sys.modules["keras"] = sys.modules["tensorflow"] = None  # as if neither were installed
        with Experiment("no keras", capture_io=False) as exp:
            print("callback", exp.callbacks.keras)
    """)
    assert done.returncode == 0, done.stderr
    assert "callback None" in done.stdout.decode()


def test_api_key_getter_must_be_callable():
    from hyperdash import Experiment

    with pytest.raises(TypeError, match="capture_io is the third argument"):
        Experiment("x", False)


def test_param_values_become_what_the_server_takes():
    np = pytest.importorskip("numpy")
    _param_value = run_module._param_value
    assert _param_value([1, 2.5, "a"]) == '[1, 2.5, "a"]'
    assert _param_value({"a": [1, float("nan")]}) == '{"a": [1, NaN]}'
    assert _param_value(float("inf")) == "inf" and _param_value(np.float64("nan")) == "nan"
    assert _param_value(np.int64(3)) == 3 and _param_value(None) is None
    assert _param_value([np.float32(1)]) == "[1.0]"
    assert _param_value({"w": np.arange(3)}) == '{"w": [0, 1, 2]}'
    for value in ([64, 32], {"k": 1}, float("nan"), object(), np.arange(3)):
        assert isinstance(_param_value(value), str)


def test_a_nan_param_never_spoils_its_batch(reporting, capfd):
    run = run_module.Run("nan param", echo=False).start()
    run.write("stdout", b"before\n")
    run.param("momentum", float("nan"))
    run.param("layers", [1, float("inf")])
    run.metric("loss", math.inf)
    run.write("stdout", b"after\n")
    run.end()
    err = capfd.readouterr().err
    assert "refused" not in err and "not sent" not in err, err
    assert err.count("'loss' got inf") == 1
    detail = reporting.wait_for_run("nan param", status="success")
    assert reporting.run(detail["uuid"])["params"] == {"momentum": "nan", "layers": "[1, Infinity]"}
    assert texts(reporting.logs(detail["uuid"])) == ["before", "after"]


HANGUP_JOB = """
import time
from hyperdash import monitor

@monitor("hung up")
def job():
    print("ready", flush=True)
    time.sleep(60)

job()
"""


def test_sighup_is_killed_and_the_process_dies_of_it(script, sdk_env, account):
    proc = subprocess.Popen([sys.executable, str(script(HANGUP_JOB))], env=sdk_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    started = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGHUP and time.monotonic() - started < 10
    run = account.wait_for_run("hung up", status="killed")
    assert run["signal"] == "SIGHUP"


def test_a_handler_of_the_program_for_sighup_is_left_alone(run_job, account):
    done = run_job("""
        import os, signal
        from hyperdash import monitor

        signal.signal(signal.SIGHUP, lambda *_: print("own handler", flush=True))

        @monitor("own hangup")
        def job():
            os.kill(os.getpid(), signal.SIGHUP)
            print("still here")

        job()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[:2] == ["own handler", "still here"]
    account.wait_for_run("own hangup", status="success")
