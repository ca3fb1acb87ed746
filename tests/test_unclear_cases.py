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
