"""The manual's Python API example (docs/python-api.md) is `examples/quickstart.py`, and it runs end to end on a
tiny dataset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from td3rec.data import PreprocessConfig, load_dataset

from pipeline_support import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart.py"


def test_manual_shows_the_example_that_runs():
    page = (ROOT / "docs" / "python-api.md").read_text()
    block = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    assert block.strip() in EXAMPLE.read_text()  # the manual's code is the tested file, verbatim
    for step in ("load_dataset(", "train_full_data(", "Distiller(", "run_suite(", "export_summary("):
        assert step in block


def test_quickstart_runs_on_a_tiny_dataset(tmp_path):
    toy = write_toy_dataset(tmp_path)
    out = tmp_path / "quickstart"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(toy), str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("summary:summary_best.safetensors") for line in lines) == 2  # reference, scratch
    assert sum(line.startswith("random-6") for line in lines) == 2
    assert (out / "teacher" / "best.pt").is_file() and (out / "distill" / "summary_best.safetensors").is_file()
    exported = load_dataset(out / "summary.inter", PreprocessConfig(k_core=0))
    assert exported.n_users == 6 and all(len(s) == 8 for s in exported.sequences)
    assert set(exported.item_tokens) <= {str(i) for i in range(1, 121)}  # raw ids of the toy data
