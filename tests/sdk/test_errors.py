"""The SDK's exceptions form one tree: a caller that catches ``HyperdashError`` catches them all."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import hyperdash
from hyperdash import errors


def sdk_modules():
    """Every module of the SDK and its command line (the server has a tree of its own)."""
    for info in pkgutil.iter_modules(hyperdash.__path__, "hyperdash."):
        if info.name in ("hyperdash.server", "hyperdash.__main__"):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional extra (IPython for the magic) is not installed
            continue


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in vars(module) if not name.startswith("_")]
    return [(name, getattr(module, name)) for name in names]


def test_every_public_exception_of_the_sdk_is_a_hyperdash_error():
    found, outside = set(), []
    for module in sdk_modules():
        for name, value in public_names(module):
            if inspect.isclass(value) and issubclass(value, BaseException):
                found.add(value)
                if not issubclass(value, errors.HyperdashError):
                    outside.append(f"{module.__name__}.{name}")
    assert outside == []
    # The ones the front ends raise are among them (so the walk above looked where they are).
    assert {errors.CommandError, errors.NoCredentials, errors.WrongPassword, errors.EmailTaken,
            errors.DemoError} <= found


@pytest.mark.parametrize("module, name", [
    ("hyperdash.account", "NoCredentials"),
    ("hyperdash.account", "WrongPassword"),
    ("hyperdash.account", "EmailTaken"),
    ("hyperdash.demo", "DemoError"),
    ("hyperdash.child", "CommandError"),
])
def test_the_old_import_paths_still_give_the_same_classes(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_a_command_error_keeps_the_shell_exit_code():
    exc = errors.CommandError("command not found: nope", 127)
    assert exc.exit_code == 127 and str(exc) == "command not found: nope"
    assert isinstance(exc, errors.HyperdashError)
