"""Inputs checked like settings and the unclear cases of issue 25 (points 2 and 4): every unreadable timestamp is
one error line; `evaluate` refuses duplicate architectures or protocols and `reference` without its teacher
before training; `--time-budget 0` is refused; a run that never planned records no placeholder step count."""

from __future__ import annotations

import pandas as pd
import pytest

from td3rec.cli import main
from td3rec.data.readers import read_interactions
from td3rec.errors import DataError

from pipeline_support import DISTILL_TINY


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- timestamps -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["t1", "t2", "00h", "xa", "10:00", "now", "today", "0001-01-01", "2500-01-01"])
def test_every_unreadable_timestamp_is_one_error_line(tmp_path, capsys, bad):
    """'t1' and '00h' used to be read as the year 1 and end in an OutOfBoundsDatetime traceback; '10:00' and
    'now' as today's date (a different data set every day)."""
    path = tmp_path / "events.csv"
    path.write_text(f"user_id,item_id,timestamp\n1,a,2021-01-01\n1,b,{bad}\n1,c,2021-01-03\n")
    with pytest.raises(DataError, match=rf"line 3: cannot read '{bad}' in column 'timestamp' as a timestamp"):
        read_interactions(path)
    assert main(["stats", str(path), "--k-core", "0"]) == 2
    assert f"'{bad}'" in one_error_line(capsys, "stats")


def test_a_whole_column_of_bad_dates_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,t1\n1,b,t2\n1,c,t3\n")
    assert main(["stats", str(path), "--k-core", "0"]) == 2
    assert "line 2: cannot read 't1'" in one_error_line(capsys, "stats")


def test_dates_with_a_year_are_still_read(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\nu,x,\"Jan 2, 2020\"\nu,y,2020-01-01 10:00\nu,z,1999-12-31T23:59:59Z\n")
    raw = read_interactions(path)
    assert raw.timestamps.tolist() == [pd.Timestamp(t, tz="UTC").timestamp()
                                       for t in ("2020-01-02", "2020-01-01 10:00", "1999-12-31 23:59:59")]


def test_a_datetime_column_out_of_range_is_one_error_line(tmp_path):
    times = pd.Series(pd.to_datetime(["2020-01-01", "0001-01-01"], format="mixed"))  # microseconds: year 1 fits
    pd.DataFrame({"user_id": [1, 1], "item_id": ["a", "b"], "time": times}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="outside the dates td3rec reads"):
        read_interactions(tmp_path / "t.parquet")


# -- evaluate: duplicates, reference without its teacher, nothing to evaluate ------------------------------------
def _evaluate(toy_data, *extra: str) -> list[str]:
    return ["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--subset", "random", "--n", "5", "--seeds", "1",
            "--steps", "1", "--set", "eval.protocols=[full]", *extra]


@pytest.fixture
def no_training(monkeypatch):
    """Make any learner training fail the test: every refusal here must come before it."""
    import td3rec.commands.evaluate as evaluate

    def refuse(*args, **kwargs):
        raise AssertionError("learners were trained before the refusal")

    monkeypatch.setattr(evaluate, "run_suite", refuse)


@pytest.mark.parametrize("extra, message", [
    (["--arch", "sasrec,sasrec"], "--arch names sasrec twice (sasrec,sasrec); give each architecture once"),
    (["--arch", "sasrec,gru4rec,sasrec", "--init", "scratch"], "--arch names sasrec twice"),
    (["--init", "scratch,scratch"], "--init names scratch twice (scratch,scratch)"),
    (["--init", "reference"], "--init reference starts every learner from its architecture's teacher: give --teacher"),
    (["--init", "reference,scratch"], "give --teacher RUN_DIR (one per --arch) or drop reference from --init"),
])
def test_evaluate_refuses_unclear_requests_before_loading_anything(toy_data, no_training, capsys, extra, message):
    assert main(_evaluate(toy_data, *extra)) == 2
    assert message in one_error_line(capsys, "evaluate")


def test_evaluate_reference_needs_a_teacher_of_every_architecture(toy_data, toy_teacher, no_training, tmp_path, capsys):
    args = _evaluate(toy_data, "--teacher", str(toy_teacher), "--arch", "sasrec,gru4rec", "--init", "reference")
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 2
    assert "no gru4rec teacher among --teacher (given: sasrec)" in one_error_line(capsys, "evaluate")
    assert not (tmp_path / "r.json").exists()
    assert main(_evaluate(toy_data, "--teacher", str(toy_teacher), "--teacher", str(toy_teacher))) == 2
    assert "is a second sasrec teacher" in one_error_line(capsys, "evaluate")


def test_evaluate_with_nothing_to_train_is_refused(toy_data, no_training, capsys):
    """A subset has no item factor of its own: shared-item-factor alone without a summary or teacher used to
    skip every cell and exit 0 having evaluated nothing."""
    assert main(_evaluate(toy_data, "--init", "shared-item-factor")) == 2
    assert "nothing would be evaluated" in one_error_line(capsys, "evaluate")


def test_evaluate_default_protocols_skip_reference_without_a_teacher(toy_data, tmp_path, capsys):
    """Not given, --init means all three, reference only where there is a teacher: the others still run."""
    out = tmp_path / "r.json"
    assert main([*_evaluate(toy_data), "--json", str(out)]) == 0
    import json

    assert sorted(row["init"].split(" ")[0] for row in json.loads(out.read_text())["rows"]) == ["scratch"]


# -- distill: --time-budget 0, planned_steps ---------------------------------------------------------------------
def test_time_budget_zero_is_refused(toy_data, toy_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                 "--time-budget", "0", *DISTILL_TINY]) == 2
    assert "--time-budget 0 leaves no time to distil" in one_error_line(capsys, "distill")
    assert not out.exists()


def test_a_budget_run_that_never_planned_records_no_placeholder(toy_data, toy_teacher, tmp_path):
    """The plan is made after 3 measured steps; a run whose budget ran out before (one step per epoch, a
    millisecond's budget: it stops after its first epoch) has no plan: null, not the 10**9 placeholder."""
    import json

    out = tmp_path / "run"
    assert main(["distill", "--dataset", str(toy_data), "--teacher", str(toy_teacher), "--out", str(out),
                 *DISTILL_TINY, "--real-batch-size", "949", "--time-budget", "0.001"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["outer_steps"] == 1 and metrics["time_budget_seconds"] == 0.001
    assert metrics["planned_steps"] is None
