"""The manual builds: MkDocs in strict mode (a broken link, a missing page or anchor, a page left out of the
navigation is an error), and the README stays the short entry point that links into it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_manual_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="building the manual needs the docs extra (pip install -e '.[docs]'); "
                                         ".ci/run installs it, so CI always builds the manual")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluate = (site / "commands" / "evaluate" / "index.html").read_text()
    assert "--seq-len" in evaluate and "Command-line reference" in evaluate  # the generated block is rendered


def test_readme_is_short_and_starts_with_install_and_test():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert first_block[0].startswith("pip install") and first_block[1].startswith("python -m pytest -q ")


def test_readme_links_lead_to_files_that_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
