"""Without IPython, `import hyperdash` and the rest of the SDK work; only the magic is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from kernel_notebook import log_texts

# Makes `import IPython` fail in the child exactly as it does where IPython is not installed.
BLOCK_IPYTHON = textwrap.dedent(
    """\
    import sys

    class NoIPython:
        def find_spec(self, name, path=None, target=None):
            if name == "IPython" or name.startswith("IPython."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoIPython())
    """
)


def run_python(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_sdk_works_without_ipython_and_the_magic_says_what_is_missing(account, hyperdash_home):
    child = run_python(
        BLOCK_IPYTHON
        + textwrap.dedent(
            """\
            import hyperdash
            from hyperdash import Experiment, monitor
            try:
                from hyperdash import monitor_cell
            except ImportError as exc:
                print("magic missing:", exc)

            @monitor("without ipython")
            def job():
                print("no IPython here")
                return 7

            assert job() == 7
            assert "IPython" not in sys.modules
            """
        ),
        env=account.sdk_env(hyperdash_home),
    )

    assert child.returncode == 0, child.stderr
    assert "magic missing: the %%monitor_cell magic needs IPython: pip install 'hyperdash[jupyter]'" in child.stdout
    run = account.wait_for_run("without ipython", status="success")
    assert "no IPython here" in log_texts(account, run["uuid"])


def test_import_hyperdash_does_not_import_ipython():
    child = run_python("import sys, hyperdash; print(sorted(m for m in sys.modules if m.startswith('IPython')))")
    assert child.returncode == 0, child.stderr
    assert child.stdout == "[]\n"


def test_the_magic_outside_ipython_says_it_needs_a_shell():
    child = run_python(
        "from hyperdash import monitor_cell\n"
        "try:\n"
        "    monitor_cell('a name', 'print(1)')\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "%%monitor_cell runs inside IPython or a Jupyter kernel\n"
