"""One output guard for every writer (issue 25, point 1).

Every option of the command line that names a file or folder is classified in
:data:`td3rec.commands._outputs.PATH_OPTIONS` (read from the parsers here, so a new one cannot be missed), and
every writing option is run against a folder of the user's, the command's own input and the folder above that
input: each is refused with one line naming the option, through :func:`td3rec.utils.output_guard.check_output`,
and nothing is deleted, changed or created. The guard's rules are then checked one by one.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from td3rec.cli import COMMANDS, build_parser, main
from td3rec.commands._outputs import PATH_OPTIONS, Input, NotAPath, Output
from td3rec.errors import ConfigError
from td3rec.utils import output_guard
from td3rec.utils.output_guard import (
    CONTINUE,
    FIGURES_FOLDER,
    MARKER,
    REPORT_FOLDER,
    RESULTS_FOLDER,
    RUN_FOLDER,
    check_output,
    prepare_folder,
)

from pipeline_support import DISTILL_TINY, TRAIN_TINY

HERE = Path(__file__).parent

#: an option whose metavar or help says it names a file or folder (it must then be in PATH_OPTIONS)
PATH_METAVAR = re.compile(r"FILE|DIR|PATH|RESULTS|SUMMARY|CONFIG|\.ya?ml|\.json", re.I)
PATH_HELP = re.compile(r"\b(write|writes|written|save|saves|output|folder|directory|paths?|files?)\b", re.I)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def value_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options of ``parser`` that take a value (flags and help excluded)."""
    return [a for a in parser._actions if a.nargs != 0 and not isinstance(a, argparse._HelpAction)]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``: proves nothing was deleted, changed or made."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the table of path options is complete -------------------------------------------------------------------
def test_every_path_option_of_the_parsers_is_classified():
    """An option that names a file or folder (by its metavar or its help) is an input, an output or declared
    no path; every classified option exists under the flag given, so the table cannot go stale."""
    parsers = subparsers()
    assert sorted(parsers) == sorted(COMMANDS) == sorted(PATH_OPTIONS)
    for command, parser in parsers.items():
        actions = {a.dest: a for a in value_options(parser)}
        for dest, action in actions.items():
            names_a_path = PATH_METAVAR.search(str(action.metavar or "")) or PATH_HELP.search(action.help or "")
            if names_a_path:
                assert dest in PATH_OPTIONS[command], (
                    f"td3rec {command} {action.option_strings or action.metavar} names a file or folder: classify it "
                    "in td3rec.commands._outputs.PATH_OPTIONS (an Output must go through the output guard)")
        for dest, role in PATH_OPTIONS[command].items():
            assert dest in actions, f"PATH_OPTIONS lists {command} {dest}, which the parser does not have"
            action = actions[dest]
            assert role.flag in (action.option_strings or [action.metavar]), (command, dest, role.flag)


def test_every_output_has_a_guard_scenario():
    outputs = {(command, dest) for command, roles in PATH_OPTIONS.items() for dest, role in roles.items()
               if isinstance(role, Output)}
    assert outputs == set(SCENARIOS), "add a scenario for every output option to SCENARIOS"


# -- every writing option against a foreign folder, its own input and the folder above it -------------------
@pytest.fixture
def workspace(toy_data, toy_teacher, toy_distill_reference, tmp_path) -> dict[str, Path]:
    """Copies of every input (a broken guard may only destroy copies) and a folder of the user's."""
    ws = {"root": tmp_path}
    data = tmp_path / "data"
    data.mkdir()
    ws["data"] = Path(shutil.copy(toy_data, data / "toy.txt"))
    ws["teacher"] = Path(shutil.copytree(toy_teacher, tmp_path / "runs" / "teacher"))
    ws["summary"] = Path(shutil.copy(toy_distill_reference / "summary_best.safetensors",
                                     tmp_path / "runs" / "summary_best.safetensors"))
    ws["cache"] = tmp_path / "cache"
    (ws["cache"] / "ml-100k").mkdir(parents=True)
    (ws["cache"] / "ml-100k" / "u.data").write_text("1\t2\t3\t4\n")
    configs = tmp_path / "configs"
    configs.mkdir()
    ws["train_config"] = configs / "train.yaml"
    ws["train_config"].write_text("epochs: 1\n")
    ws["suite_config"] = configs / "suite.yaml"
    ws["suite_config"].write_text("training: {steps: 1}\n")
    ws["proxy_config"] = configs / "proxy.yaml"
    ws["proxy_config"].write_text("candidates: [{model: sasrec}, {model: gru4rec}]\neval: {protocols: [full]}\n"
                                  "metrics: ['full:NDCG@10']\n")
    ws["grid"] = configs / "grid.yaml"
    ws["grid"].write_text((HERE.parent / "benchmarks" / "grid_small.yaml").read_text()
                          .replace("source: data/toy.txt", f"source: {ws['data']}"))
    ws["full_from"] = configs / "earlier-proxy.json"
    ws["full_from"].write_text(json.dumps({"status": "finished", "candidates": []}))
    ws["results"] = tmp_path / "bench" / "results"
    ws["results"].mkdir(parents=True)
    (ws["results"] / "results.json").write_text(json.dumps({"rows": [], "status": "finished"}))
    (ws["results"] / "benchmark.yaml").write_text("seeds: 1\n")
    ws["foreign"] = tmp_path / "mine"
    (ws["foreign"] / "sub").mkdir(parents=True)
    (ws["foreign"] / "notes.txt").write_text("years of work")
    (ws["foreign"] / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return ws


#: (command, option dest) -> (the command line with OUT for the output, the workspace inputs it names)
SCENARIOS = {
    ("train", "out"): (lambda w: ["train", "--dataset", w["data"], "--config", w["train_config"], "--data-dir",
                                  w["cache"], "--out", "OUT", "--overwrite", *TRAIN_TINY],
                       ("data", "train_config", "cache")),
    ("train", "resume"): (lambda w: ["train", "--dataset", w["data"], "--resume", "OUT", "--no-progress"],
                          ("data",)),
    ("distill", "out"): (lambda w: ["distill", "--dataset", w["data"], "--teacher", w["teacher"], "--out", "OUT",
                                    "--overwrite", *DISTILL_TINY], ("data", "teacher")),
    ("distill", "resume"): (lambda w: ["distill", "--dataset", w["data"], "--teacher", w["teacher"], "--resume",
                                       "OUT", "--no-progress"], ("data", "teacher")),
    ("evaluate", "json"): (lambda w: ["evaluate", "--dataset", w["data"], "--k-core", "0", "--summary", w["summary"],
                                      "--teacher", w["teacher"], "--config", w["suite_config"], "--json", "OUT"],
                           ("data", "summary", "teacher", "suite_config")),
    ("export", "out"): (lambda w: ["export", w["summary"], "--out", "OUT", "--overwrite"], ("summary",)),
    ("inspect", "figures"): (lambda w: ["inspect", w["summary"], "--dataset", w["data"], "--k-core", "0",
                                        "--figures", "OUT", "--overwrite"], ("summary", "data")),
    ("proxy", "json"): (lambda w: ["proxy", w["proxy_config"], "--dataset", w["data"], "--k-core", "0",
                                   "--summary", w["summary"], "--teacher", w["teacher"], "--full-from",
                                   w["full_from"], "--json", "OUT"],
                        ("proxy_config", "data", "summary", "teacher", "full_from")),
    ("benchmark", "results"): (lambda w: ["benchmark", w["grid"], "--data-dir", w["cache"], "--results", "OUT",
                                          "--no-progress"], ("grid", "cache")),
    ("report", "out"): (lambda w: ["report", w["results"], "--out", "OUT", "--overwrite"], ("results",)),
}


def targets(ws: dict[str, Path], inputs: tuple[str, ...]) -> list[tuple[str, Path]]:
    """A folder of the user's; each input itself; the folder above each input."""
    found = [("a folder of the user's", ws["foreign"])]
    for name in inputs:
        found += [(f"its input {name}", ws[name]), (f"the folder above its input {name}", ws[name].parent)]
    return found


@pytest.mark.parametrize("command, dest", sorted(SCENARIOS))
def test_every_writing_option_refuses_what_is_not_its_own(workspace, capsys, command, dest):
    make, inputs = SCENARIOS[(command, dest)]
    role = PATH_OPTIONS[command][dest]
    for what, target in targets(workspace, inputs):
        before = snapshot(workspace["root"])
        output_guard.CHECKED.clear()
        args = [str(target) if a == "OUT" else str(a) for a in make(workspace)]
        assert main(args) == 2, f"{command} {role.flag} onto {what} was not refused"
        line = one_error_line(capsys, command)
        assert role.flag in line and str(target) in line, (what, line)
        assert (role.flag, target.resolve()) in output_guard.CHECKED, (
            f"{command} {role.flag} did not go through the output guard ({what})")
        assert snapshot(workspace["root"]) == before, f"{command} {role.flag} onto {what} changed files"


def test_report_onto_its_results_deletes_nothing(workspace, capsys):
    """The issue's case: `td3rec report RESULTS --out RESULTS --overwrite` deleted the benchmark results."""
    results = workspace["results"]
    before = snapshot(results.parent)
    assert main(["report", str(results), "--out", str(results), "--overwrite"]) == 2
    assert "would replace the run's own input (RESULTS" in one_error_line(capsys, "report")
    assert snapshot(results.parent) == before


def test_json_onto_an_input_names_the_json_option(workspace, capsys):
    assert main(["evaluate", "--dataset", str(workspace["data"]), "--k-core", "0", "--summary",
                 str(workspace["summary"]), "--json", str(workspace["summary"])]) == 2
    line = one_error_line(capsys, "evaluate")
    assert f"--json {workspace['summary']} would replace the run's own input (--summary" in line
    assert "--out" not in line


def test_json_replaces_only_its_own_earlier_report(workspace, capsys):
    """--json has no --overwrite: an existing file is replaced only when it is the command's own report."""
    notes = workspace["foreign"] / "notes.txt"
    args = ["evaluate", "--dataset", str(workspace["data"]), "--k-core", "0", "--summary", str(workspace["summary"]),
            "--init", "scratch", "--seeds", "1", "--steps", "1", "--set", "eval.protocols=[full]"]
    assert main([*args, "--json", str(notes)]) == 2
    assert "is not this command's earlier output" in one_error_line(capsys, "evaluate")
    assert notes.read_text() == "years of work"
    report = workspace["root"] / "eval.json"
    assert main([*args, "--json", str(report)]) == 0
    first = json.loads(report.read_text())
    assert main([*args, "--json", str(report)]) == 0  # its own earlier report: replaced
    assert json.loads(report.read_text())["rows"] and first["rows"]


# -- the rules, one by one ------------------------------------------------------------------------------------
def _td3rec_folder(path: Path, command: str, *names: str) -> Path:
    path.mkdir(parents=True)
    (path / MARKER).write_text(f"{command}\n")
    for name in names:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("x")
    return path


def test_a_folder_is_replaced_only_if_td3rec_made_it_of_that_kind_and_it_holds_nothing_else(tmp_path):
    report = _td3rec_folder(tmp_path / "report", "report", "report.md", "figures/a.png")
    assert check_output(report, "--out", kind=REPORT_FOLDER, overwrite=True) == report
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        check_output(report, "--out", kind=REPORT_FOLDER, overwrite=False)
    with pytest.raises(ConfigError, match="it is a td3rec report folder, not an output folder"):
        check_output(report, "--out", kind=RUN_FOLDER, overwrite=True)
    (report / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files td3rec did not write \(notes.txt\)"):
        check_output(report, "--out", kind=REPORT_FOLDER, overwrite=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "report.md").write_text("# my own notes\n")
    with pytest.raises(ConfigError, match=f"no {MARKER} marker"):
        check_output(plain, "--out", kind=REPORT_FOLDER, overwrite=True)


def test_reports_and_results_from_before_markers_are_recognised(tmp_path):
    old_report = tmp_path / "old-report"
    (old_report / "figures").mkdir(parents=True)
    (old_report / "report.md").write_text("# td3rec benchmark report\n\nResults: ...\n")
    (old_report / "figures" / "quality.png").write_bytes(b"png")
    assert output_guard.folder_owner(old_report) is REPORT_FOLDER
    check_output(old_report, "--out", kind=REPORT_FOLDER, overwrite=True)
    old_results = tmp_path / "old-results"
    (old_results / "cells").mkdir(parents=True)
    (old_results / "benchmark.yaml").write_text("seeds: 1\n")
    assert output_guard.folder_owner(old_results) is RESULTS_FOLDER
    check_output(old_results, "--results", kind=RESULTS_FOLDER, mode=CONTINUE)
    ahead = tmp_path / "teachers-ahead"  # teachers trained for a grid before its first benchmark run
    (ahead / ".locks").mkdir(parents=True)
    (ahead / "teachers" / "toy-sasrec-1234abcd").mkdir(parents=True)
    (ahead / "teachers" / "toy-sasrec-1234abcd" / "best.pt").write_bytes(b"pt")
    assert output_guard.folder_owner(ahead) is RESULTS_FOLDER
    (ahead / "notes.txt").write_text("mine")
    assert output_guard.folder_owner(ahead) is None
    old_run = tmp_path / "old-run"  # a run from before markers: resumable, replaceable with --overwrite
    (old_run / "checkpoints").mkdir(parents=True)
    for name in ("run.json", "config.yaml", "resume.pt", "checkpoints/epoch_1.pt"):
        (old_run / name).write_text("x")
    assert output_guard.folder_owner(old_run) is RUN_FOLDER
    (old_run / "thesis.tex").write_text("mine")
    assert output_guard.folder_owner(old_run) is None
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "popularity.png").write_bytes(b"png")
    assert output_guard.folder_owner(figures) is FIGURES_FOLDER
    (figures / "holiday.jpg").write_bytes(b"jpg")
    assert output_guard.folder_owner(figures) is None


def test_a_continued_folder_must_be_td3recs_but_is_never_emptied(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=f"--results refuses {mine}: td3rec did not create it"):
        check_output(mine, "--results", kind=RESULTS_FOLDER, mode=CONTINUE)
    results = _td3rec_folder(tmp_path / "results", "benchmark", "cells/a.json", "notes.txt")
    out = prepare_folder(results, "--results", "benchmark", kind=RESULTS_FOLDER, mode=CONTINUE)
    assert (out / "notes.txt").read_text() == "x" and (out / "cells" / "a.json").is_file()
    new = prepare_folder(tmp_path / "new", "--results", "benchmark", kind=RESULTS_FOLDER, mode=CONTINUE)
    assert (new / MARKER).read_text() == "benchmark\n"


def test_no_output_is_holds_or_lies_inside_an_input(tmp_path):
    data = tmp_path / "d" / "data.csv"
    data.parent.mkdir()
    data.write_text("u,i\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    inputs = [("--dataset", data), ("--data-dir", cache)]
    for target, message in ((data, "would replace the run's own input (--dataset"),
                            (data.parent, "would replace the run's own input (--dataset"),
                            (tmp_path, "would replace the run's own input (--dataset"),
                            (cache, "would replace the run's own input (--data-dir"),
                            (cache / "runs" / "new", "lies inside the run's own input (--data-dir")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_output(target, "--out", inputs, kind=RUN_FOLDER, overwrite=True)
    link = tmp_path / "link.csv"
    link.symlink_to(data)  # a link does not hide the input
    with pytest.raises(ConfigError, match="would replace the run's own input"):
        check_output(link, "--json", inputs, overwrite=None)
    with pytest.raises(ConfigError, match="lies inside the run's own input"):
        check_output(cache / "x.json", "--json", inputs, overwrite=None)
    assert check_output(tmp_path / "new-run", "--out", inputs, kind=RUN_FOLDER) == tmp_path / "new-run"


def test_a_file_never_takes_a_name_td3rec_writes_in_its_folders(tmp_path):
    run = _td3rec_folder(tmp_path / "run", "distill", "metrics.json", "teacher/best.pt")
    for name in ("metrics.json", "summary_best.json", "checkpoints/epoch_3.pt", "teacher/best.pt"):
        with pytest.raises(ConfigError, match=f"td3rec's own {re.escape(name)} in the output folder"):
            check_output(run / name, "--out", overwrite=True)
    assert check_output(run / "summary.inter", "--out") == run / "summary.inter"  # README: export into the run
    results = _td3rec_folder(tmp_path / "results", "benchmark", "results.json")
    with pytest.raises(ConfigError, match="td3rec's own results.json in the results folder"):
        check_output(results / "results.json", "--json", overwrite=None, own_file=lambda p: True)


def test_an_existing_file_needs_overwrite_or_must_be_the_commands_own(tmp_path):
    existing = tmp_path / "x.inter"
    existing.write_text("mine")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        check_output(existing, "--out", overwrite=False)
    check_output(existing, "--out", overwrite=True)
    with pytest.raises(ConfigError, match="is not this command's earlier output"):
        check_output(existing, "--json", overwrite=None, own_file=lambda p: False)
    check_output(existing, "--json", overwrite=None, own_file=lambda p: True)
    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        check_output(tmp_path, "--json", overwrite=None)


def test_the_guards_folder_names_are_the_writers_names():
    """The guard spells out what the report and the figures write; they must not drift apart."""
    from td3rec.experiments.report import FIGURES_DIR, REPORT_FILE
    from td3rec.summary.figures import FIGURE_FILES

    assert {REPORT_FILE, FIGURES_DIR, f"{FIGURES_DIR}/*.png"} <= set(REPORT_FOLDER.patterns)
    assert set(FIGURE_FILES.values()) <= set(FIGURES_FOLDER.patterns)
    assert all(isinstance(role, (Input, Output, NotAPath)) for roles in PATH_OPTIONS.values()
               for role in roles.values())
