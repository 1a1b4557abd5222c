"""The ``lvmm-*`` console scripts as installed: they match setup.py, resolve to callables, and start."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from tests.helpers import ROOT


def setup_py_scripts() -> dict[str, str]:
    """``{name: "module:function"}`` of the console scripts that setup.py declares."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup")
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return dict(tuple(part.strip() for part in line.split("=")) for line in entry_points["console_scripts"])


def installed_scripts():
    """The installed distribution's ``lvmm-*`` console-script entry points (skips if lvmm is not installed)."""
    try:
        dist = distribution("lvmm")
    except PackageNotFoundError:
        pytest.skip("the lvmm distribution is not installed (pip install -e .): no console scripts to check")
    return {e.name: e for e in dist.entry_points if e.group == "console_scripts" and e.name.startswith("lvmm-")}


def script_path(name: str) -> Path:
    """The executable of a console script: beside this interpreter, else on PATH (skips if neither)."""
    beside = Path(sys.executable).parent / name
    found = beside if beside.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"console script {name} is not installed beside {sys.executable} nor on PATH")
    return Path(found)


def test_installed_scripts_are_the_ones_setup_py_declares():
    declared = setup_py_scripts()
    assert declared and all(name.startswith("lvmm-") for name in declared)
    installed = {name: ep.value for name, ep in installed_scripts().items()}
    assert installed == declared, "the installed metadata is stale: reinstall (pip install -e .)"


def test_every_script_resolves_to_a_callable():
    scripts = installed_scripts()
    assert scripts
    for name, ep in scripts.items():
        target = ep.load()  # imports the module
        assert callable(target), name
        assert target.__module__ == ep.module and ep.module.startswith("lvmm.cli."), name


@pytest.mark.parametrize("name,expect", [("lvmm-animate", "--loop-guidance"), ("lvmm-make-shards", "--size")])
def test_scripts_start_and_print_their_help(name, expect):
    if name not in installed_scripts():
        pytest.fail(f"{name} is declared in setup.py but not installed")
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [str(script_path(name)), "--help"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"usage: {name}" in proc.stdout and expect in proc.stdout
