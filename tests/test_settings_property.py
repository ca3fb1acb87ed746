"""Every ``--set`` key of ``train``, ``distill`` and ``evaluate`` with hostile values (issue 15, point 2):
wrong types, NaN, ±inf, huge, negative, zero, empty. Whatever the value, the command ends with exit code 0
(accepted) or 2 (refused, one error line) — never an exception out of ``main`` (a traceback) — and a refused
command leaves no output behind.

The long-running work of an accepted setting (training, the distillation loop, the evaluation suite) is
replaced by a stub: everything before it runs for real (config reading and validation, the dataset, the
teacher, the memory checks, creating the output folder), and that is where a setting must be refused.
"""

from __future__ import annotations

import itertools
import json
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import td3rec.commands.evaluate as evaluate_command
import td3rec.commands.train as train_command
from td3rec.cli import main
from td3rec.config import to_dict
from td3rec.distill.config import DistillConfig
from td3rec.distill.distiller import Distiller
from td3rec.evaluation.suite import SuiteConfig
from td3rec.training.config import TrainConfig

from pipeline_support import distill_args, train_args

#: values every key is tried with (YAML text, as typed after ``--set key=``)
HOSTILE = [".nan", "inf", "-.inf", str(2**70), str(-(2**70)), "1.0e+308", "100000000", "-1", "0", "-0.5", "",
           "abc", "[1, 2]", "{a: 1}", "null"]
#: random values on top of them
VALUES = st.one_of(
    st.sampled_from(HOSTILE),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)


def leaf_keys(config: object) -> list[str]:
    """Every dotted ``--set`` key of a config dataclass (a dict-valued setting is one key)."""
    def walk(tree: dict, prefix: str) -> list[str]:
        keys = []
        for key, value in tree.items():
            keys += walk(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [prefix + key]
        return keys

    return walk(to_dict(config), "")


_counter = itertools.count()


#: the configs that reached the stubbed work, to check what an accepted setting looks like
ACCEPTED: list[object] = []


@pytest.fixture
def stubs(monkeypatch):
    """The long-running work of each command, replaced by a stub that records the config it got."""
    result = types.SimpleNamespace(best_epoch=1, history=[{}], seconds_per_epoch=0.0, valid={}, test={},
                                   best_value=0.0, seconds_per_step=0.0)

    def record(config):
        ACCEPTED.append(config)
        return result

    monkeypatch.setattr(train_command, "train_full_data", lambda dataset, config, *a, **k: record(config))
    monkeypatch.setattr(Distiller, "run", lambda self, resume=False: record(self.config))
    monkeypatch.setattr(evaluate_command, "run_suite", lambda dataset, specs, config, *a, **k: record(config) and [])
    ACCEPTED.clear()


def assert_usable(config: object) -> None:
    """What every accepted config must be, checked independently of td3rec's own checks: strict JSON (no NaN
    or infinity) and integers that fit in 64 bits."""
    data = to_dict(config)
    json.dumps(data, allow_nan=False)

    def walk(value):
        if isinstance(value, dict):
            [walk(v) for v in value.values()]
        elif isinstance(value, (list, tuple)):
            [walk(v) for v in value]
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value < 2**63, value

    walk(data)


def run_and_check(capsys, command: str, argv: list[str], output: Path) -> int:
    """Run ``argv``; the exit code is 0 or 2, exit 2 is one error line and leaves ``output`` absent."""
    code = main(["-q", *argv])  # an unexpected exception propagates: the test fails with it
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2, 3), (code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
        assert len(errors) == 1, err
        assert not output.exists(), f"{output} left behind by a refused command: {err}"
    else:
        assert ACCEPTED, "an accepted command must reach its work"
        assert_usable(ACCEPTED.pop())
    return code


def _train(toy_data, root: Path, key: str, value: str, capsys) -> int:
    out = root / f"train-{next(_counter)}"
    return run_and_check(capsys, "train", [*train_args(toy_data, out), "--set", f"{key}={value}"], out)


def _distill(toy_data, teacher, root: Path, key: str, value: str, capsys) -> int:
    out = root / f"distill-{next(_counter)}"
    return run_and_check(capsys, "distill", [*distill_args(toy_data, teacher, out), "--set", f"{key}={value}"], out)


def _evaluate(toy_data, root: Path, key: str, value: str, capsys) -> int:
    out = root / f"evaluate-{next(_counter)}.json"
    argv = ["evaluate", "--dataset", str(toy_data), "--k-core", "0", "--subset", "random", "--n", "5", "--seeds", "1",
            "--steps", "2", "--init", "scratch", "--json", str(out), "--set", f"{key}={value}"]
    return run_and_check(capsys, "evaluate", argv, out)


PROPERTY = settings(max_examples=3, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("key", leaf_keys(TrainConfig()))
def test_every_train_setting(key, toy_data, tmp_path, capsys, stubs):
    for value in HOSTILE:
        _train(toy_data, tmp_path, key, value, capsys)

    @PROPERTY
    @given(value=VALUES)
    def random_values(value):
        _train(toy_data, tmp_path, key, value, capsys)

    random_values()


@pytest.mark.parametrize("key", leaf_keys(DistillConfig()))
def test_every_distill_setting(key, toy_data, toy_teacher, tmp_path, capsys, stubs):
    for value in HOSTILE:
        _distill(toy_data, toy_teacher, tmp_path, key, value, capsys)

    @PROPERTY
    @given(value=VALUES)
    def random_values(value):
        _distill(toy_data, toy_teacher, tmp_path, key, value, capsys)

    random_values()


@pytest.mark.parametrize("key", leaf_keys(SuiteConfig()))
def test_every_evaluate_setting(key, toy_data, tmp_path, capsys, stubs):
    for value in HOSTILE:
        _evaluate(toy_data, tmp_path, key, value, capsys)

    @PROPERTY
    @given(value=VALUES)
    def random_values(value):
        _evaluate(toy_data, tmp_path, key, value, capsys)

    random_values()


@pytest.mark.parametrize("key", ["", ".", "a..b", " ", "eval."])
def test_overrides_without_a_key(key, toy_data, toy_teacher, tmp_path, capsys, stubs):
    """An override whose key is empty or has an empty part is one error line, for every command."""
    assert _train(toy_data, tmp_path, key, "3", capsys) == 2
    assert _distill(toy_data, toy_teacher, tmp_path, key, "3", capsys) == 2
    assert _evaluate(toy_data, tmp_path, key, "3", capsys) == 2


def test_the_hostile_values_are_refused_where_they_must_be(toy_data, toy_teacher, tmp_path, capsys, stubs):
    """The sweep above is not vacuous: these values are refused (and valid ones accepted)."""
    assert _train(toy_data, tmp_path, "lr", ".nan", capsys) == 2
    assert _train(toy_data, tmp_path, "seed", str(2**70), capsys) == 2
    assert _train(toy_data, tmp_path, "max_len", "100000000", capsys) == 2
    assert _train(toy_data, tmp_path, "lr", "0.01", capsys) == 0
    assert _distill(toy_data, toy_teacher, tmp_path, "outer_lr", ".inf", capsys) == 2
    assert _distill(toy_data, toy_teacher, tmp_path, "select_metric", "full:NDCG@3", capsys) == 2
    assert _distill(toy_data, toy_teacher, tmp_path, "inner.momentum", "0.9", capsys) == 2
    assert _distill(toy_data, toy_teacher, tmp_path, "outer_lr", "0.1", capsys) == 0
    assert _evaluate(toy_data, tmp_path, "training.lr", "-.inf", capsys) == 2
    assert _evaluate(toy_data, tmp_path, "eval.negative_seed", "-1", capsys) == 2
    assert _evaluate(toy_data, tmp_path, "training.lr", "0.01", capsys) == 0
