""".ci/run: runs exactly the README's test command, passes pytest's exit code on (explaining code 5, no tests
collected) and leaves no virtual environment behind. Run against stub ``python3`` / ``python`` programs, so no
install happens."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

#: a stand-in for ``python3 -m venv DIR``: DIR/bin/activate puts DIR/bin first on PATH, where ``python`` logs
#: its arguments and, for pytest, exits with $FAKE_PYTEST_RC (after $FAKE_PYTEST_SLEEP seconds)
FAKE_PYTHON3 = textwrap.dedent("""\
    #!/usr/bin/env bash
    set -e
    [ "$1 $2" = "-m venv" ] || { echo "unexpected: $*" >&2; exit 99; }
    mkdir -p "$3/bin"
    echo 'export PATH="'"$3"'/bin:$PATH"' > "$3/bin/activate"
    cat > "$3/bin/python" <<'EOF'
    #!/usr/bin/env bash
    echo "$*" >> "$FAKE_LOG"
    if [ "$1 $2" = "-m pytest" ]; then sleep "${FAKE_PYTEST_SLEEP:-0}"; exit "${FAKE_PYTEST_RC:-0}"; fi
    EOF
    chmod +x "$3/bin/python"
    """)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict:
    """A copy of .ci/run in a fake checkout, stub programs on PATH and an empty TMPDIR to watch."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(ROOT / ".ci" / "run", repo / ".ci" / "run")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python3").write_text(FAKE_PYTHON3)
    (stubs / "python3").chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "TMPDIR": str(temp),
           "FAKE_LOG": str(tmp_path / "log")}
    return {"script": repo / ".ci" / "run", "env": env, "temp": temp, "log": tmp_path / "log"}


def _readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    line = next(line for line in block.splitlines() if "pytest" in line)
    return line.split("#")[0].strip()


@pytest.mark.parametrize("rc", [0, 1, 5])
def test_exit_code_passed_on_and_no_environment_left(sandbox, rc):
    proc = subprocess.run(["bash", str(sandbox["script"])], env={**sandbox["env"], "FAKE_PYTEST_RC": str(rc)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == rc, proc.stderr
    assert list(sandbox["temp"].iterdir()) == []  # the virtual environment's folder is gone
    calls = sandbox["log"].read_text().splitlines()
    assert "python " + next(c for c in calls if "pytest" in c) == _readme_test_command()
    assert ("collected no tests" in proc.stderr) == (rc == 5)


def test_environment_removed_when_interrupted(sandbox):
    proc = subprocess.Popen(["bash", str(sandbox["script"])], env={**sandbox["env"], "FAKE_PYTEST_SLEEP": "30"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (sandbox["log"].exists() and "pytest" in sandbox["log"].read_text()):
            assert time.monotonic() < deadline, "the stub pytest never started"
            time.sleep(0.1)
        assert list(sandbox["temp"].iterdir())  # the environment exists while the tests run
        os.killpg(proc.pid, signal.SIGTERM)  # as a CI runner stops a job: the whole process group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode != 0
    assert list(sandbox["temp"].iterdir()) == []
