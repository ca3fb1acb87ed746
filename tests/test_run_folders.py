"""Output folders (issue 15, points 1 and 4): ``--overwrite`` replaces only a folder td3rec created and that
holds nothing of the user's (no input of the run, no foreign file); a folder a run writes to is locked, so a
second writer is refused with one line while the first runs (and the lock of a killed run is no obstacle);
temporary files of a writer killed mid-write are removed when the run resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


from td3rec.cli import main
from td3rec.utils.atomic import is_temporary
from td3rec.utils.run_folder import LOCK_FILE, MARKER, foreign_entries
from td3rec.utils.run_state import RESUME_FILE

from pipeline_support import TRAIN_TINY, assert_same_summaries, distill_args, kill_child, start_frozen, train_args

HERE = Path(__file__).parent


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing was deleted or changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- --overwrite ---------------------------------------------------------------------------------------------
def test_overwrite_refuses_the_folder_of_the_dataset(toy_data, tmp_path, capsys):
    """`td3rec train --dataset v/toy.txt --out v --overwrite` used to delete v with the dataset in it."""
    v = tmp_path / "v"
    v.mkdir()
    shutil.copy(toy_data, v / "toy.txt")
    (v / "notes.txt").write_text("mine")
    before = snapshot(v)
    assert main(["train", "--dataset", str(v / "toy.txt"), "--out", str(v), "--overwrite", *TRAIN_TINY]) == 2
    assert "would replace the run's own input" in one_error_line(capsys, "train")
    assert snapshot(v) == before


def test_overwrite_refuses_the_folder_of_the_teacher(toy_data, toy_teacher, tmp_path, capsys):
    """`td3rec distill --teacher v2/teacher --out v2 --overwrite` used to delete the teacher."""
    v2 = tmp_path / "v2"
    shutil.copytree(toy_teacher, v2 / "teacher")
    before = snapshot(v2)
    assert main(distill_args(toy_data, v2 / "teacher", v2, "--overwrite")) == 2
    assert "would replace the run's own input" in one_error_line(capsys, "distill")
    assert snapshot(v2) == before
    # the teacher folder itself as --out: refused too, even though td3rec created it
    assert main(distill_args(toy_data, v2 / "teacher", v2 / "teacher", "--overwrite")) == 2
    assert "would replace the run's own input" in one_error_line(capsys, "distill")
    assert snapshot(v2) == before


def test_overwrite_refuses_a_folder_td3rec_did_not_create(toy_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.csv").write_text("a,b\n")
    before = snapshot(mine)
    assert main(train_args(toy_data, mine, "--overwrite")) == 2
    assert f"no {MARKER} marker" in one_error_line(capsys, "train")
    assert snapshot(mine) == before


def test_overwrite_refuses_a_td3rec_folder_holding_other_files(toy_data, toy_teacher, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(toy_teacher, run)
    (run / "my-analysis.ipynb").write_text("{}")
    (run / "checkpoints" / "keep.txt").write_text("mine")
    before = snapshot(run)
    assert main(train_args(toy_data, run, "--overwrite")) == 2
    line = one_error_line(capsys, "train")
    assert "files td3rec did not write" in line and "my-analysis.ipynb" in line and "checkpoints/keep.txt" in line
    assert snapshot(run) == before


def test_overwrite_replaces_a_folder_td3rec_created(toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(toy_data, run, "--epochs", "1")) == 0
    assert (run / MARKER).read_text().strip() == "train"
    (run / ".best.pt.abcd1234.tmp").write_bytes(b"left by a killed writer")  # td3rec's own: no obstacle
    assert main(train_args(toy_data, run, "--epochs", "1")) == 2  # without --overwrite: refused
    assert "already exists" in one_error_line(capsys, "train")
    assert main(train_args(toy_data, run, "--epochs", "1", "--overwrite")) == 0
    assert (run / MARKER).is_file() and not any(is_temporary(p.name) for p in run.rglob("*"))


def test_runs_write_only_names_overwrite_knows(toy_teacher, toy_distill_reference, tmp_path):
    """OUTPUT_PATTERNS lists every file a real train and distill run writes (else --overwrite would refuse
    td3rec's own folders); an on-the-fly teacher is a nested run folder."""
    for run in (toy_teacher, toy_distill_reference):
        assert (run / MARKER).is_file()
        assert foreign_entries(run) == [], run
    nested = tmp_path / "distill"
    shutil.copytree(toy_distill_reference, nested)
    shutil.copytree(toy_teacher, nested / "teacher")
    assert foreign_entries(nested) == []
    (nested / "teacher" / "extra.bin").write_bytes(b"x")
    assert foreign_entries(nested) == ["teacher/extra.bin"]


# -- locks ---------------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_the_first_runs(toy_data, toy_teacher, tmp_path, capsys):
    """Two `td3rec distill --overwrite --out same`: the second is refused while the first runs, and so is a
    --resume of the running run; once the first is killed its lock is no obstacle."""
    out = tmp_path / "same"
    first = start_frozen(distill_args(toy_data, toy_teacher, out, "--overwrite"), tmp_path / "frozen", n_saved=1)
    try:
        before = snapshot(out)
        assert main(distill_args(toy_data, toy_teacher, out, "--overwrite")) == 2
        assert "in use by another td3rec process" in one_error_line(capsys, "distill")
        assert main(["distill", "--resume", str(out), "--no-progress"]) == 2
        assert "in use by another td3rec process" in one_error_line(capsys, "distill")
        assert snapshot(out) == before  # the running run's files are untouched
    finally:
        kill_child(first)
    assert (out / LOCK_FILE).is_file()  # the killed run's lock file stays, its lock is gone with the process
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0


def test_benchmark_results_folder_is_locked(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from td3rec.utils.run_folder import lock_folder; lock_folder(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(600)"), str(results)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = HERE.parent / "benchmarks" / "grid_small.yaml"
        assert main(["benchmark", str(config), "--results", str(results), "--no-progress"]) == 2
        assert "results folder" in (line := one_error_line(capsys, "benchmark")) and "in use" in line
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


# -- temporary files of a killed writer ----------------------------------------------------------------------
def test_resume_removes_the_temporary_file_of_a_write_killed_midway(toy_data, toy_teacher, toy_distill_reference,
                                                                    tmp_path):
    out = tmp_path / "killed"
    marker = tmp_path / "frozen"
    child = start_frozen(distill_args(toy_data, toy_teacher, out), marker, driver="write_crash_driver.py", n_saved=1)
    kill_child(child)
    leftover = out / marker.read_text()
    assert leftover.is_file() and is_temporary(leftover.name) and leftover.name.startswith(f".{RESUME_FILE}.")
    assert main(["distill", "--resume", str(out), "--no-progress"]) == 0
    assert not any(is_temporary(p.name) for p in out.rglob("*"))
    assert_same_summaries(toy_distill_reference, out)  # the half-written checkpoint changed nothing
