"""The code passes the linter configured in pyproject.toml (ruff: pyflakes, pycodestyle, import order, pyupgrade,
bugbear), so an unused import or a shadowed loop variable fails CI rather than waiting for a reader."""

import shutil
import subprocess

import pytest
from conftest import REPO


def test_ruff_check_passes():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    proc = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
