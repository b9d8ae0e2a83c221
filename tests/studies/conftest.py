"""Trained tiny study runs shared by every test of the studies in one session: each is trained once."""

import subprocess
import sys

import pytest


def icl_lab(*args, cwd=None, timeout=900):
  return subprocess.run([sys.executable, "-m", "icl_lab.cli", *args], capture_output=True, text=True,
                        timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def replicated(tmp_path_factory):
  """`icl-lab replicate --preset tiny` once: its run folder, results and printed table."""
  root = tmp_path_factory.mktemp("rep")
  proc = icl_lab("replicate", "--preset", "tiny", "--runs-dir", str(root / "runs"), "--out", str(root / "figs"))
  assert proc.returncode == 0, proc.stderr
  return root, proc.stdout
