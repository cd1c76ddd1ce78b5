"""exp.params: a dict (nested dicts flattened with dots), an argparse.Namespace, a dataclass,
recorded at once."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from hyperdash.params import flatten


@dataclasses.dataclass
class Optim:
    name: str = "adam"
    lr: float = 1e-3


@dataclasses.dataclass
class Config:
    epochs: int = 3
    optim: Optim = dataclasses.field(default_factory=Optim)
    layers: list = dataclasses.field(default_factory=lambda: [64, 32])


def test_every_kind_of_params_is_flattened():
    assert flatten({"optim": {"lr": 0.1, "betas": {"b1": 0.9}}, "epochs": 3}) == {
        "optim.lr": 0.1, "optim.betas.b1": 0.9, "epochs": 3}
    assert flatten(argparse.Namespace(lr=0.5, name="x")) == {"lr": 0.5, "name": "x"}
    assert flatten(Config()) == {"epochs": 3, "optim.name": "adam", "optim.lr": 1e-3, "layers": [64, 32]}
    assert flatten({"empty": {}, "text": "abc"}) == {"empty": {}, "text": "abc"}


@pytest.mark.parametrize("bad", [[1, 2], "lr=0.1", 3, Config, None])
def test_anything_else_is_refused(bad):
    with pytest.raises(TypeError, match="params takes a dict, an argparse.Namespace or a dataclass"):
        flatten(bad)


def test_params_are_recorded_at_once(run_job, account):
    done = run_job("""
        import argparse, dataclasses
        from hyperdash import Experiment

        @dataclasses.dataclass
        class Data:
            batch: int = 32
            shuffle: bool = True

        with Experiment("params", system_metrics=False) as exp:
            got = exp.params({"model": {"layers": 3, "width": {"first": 128}}, "tags": ["a", "b"]})
            assert got == {"model.layers": 3, "model.width.first": 128, "tags": ["a", "b"]}, got
            exp.params(argparse.Namespace(lr=0.01, optimizer="sgd"), log=False)
            exp.params(Data())
            # one name twice: the last value stands, and one line says so (it used to be silent)
            assert exp.params({"a.b": 1, "a": {"b": 2}}, log=False) == {"a.b": 2}
            try:
                exp.params(["not", "params"])
            except TypeError as exc:
                print("refused:", exc)
            try:
                exp.params({"": 1, "ok": 2})
            except ValueError as exc:
                print("refused:", exc)
    """)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "{ model.layers: 3 }" in out and "{ lr: 0.01 }" not in out
    assert out.count("refused:") == 2
    assert "hyperdash: param 'a.b' is given twice; the last value is recorded" in done.stderr.decode()
    run = account.wait_for_run("params", status="success")
    assert account.run(run["uuid"])["params"] == {
        "model.layers": 3, "model.width.first": 128, "tags": '["a", "b"]',
        "lr": 0.01, "optimizer": "sgd", "batch": 32, "shuffle": True, "a.b": 2,
    }  # "ok" neither: a bad name records nothing of its call
