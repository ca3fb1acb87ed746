"""The manual cannot drift from the code: every command has a page in the manual's navigation, each page's
option reference is what the CLI parsers generate now (an option added, renamed or removed without
regenerating fails here), and every setting a command reads from ``--config`` / ``--set`` is described on
its page."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml

from td3rec.cli import COMMANDS
from td3rec.commands import _reference
from td3rec.distill.config import DistillConfig, InnerConfig
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.evaluation.suite import SuiteConfig
from td3rec.experiments.benchmark.config import BenchmarkConfig, BenchmarkDataset, BenchmarkMethod, GridSlice
from td3rec.experiments.proxy import FullTrainingConfig, ProxyCandidate, ProxyConfig
from td3rec.models.registry import MODEL_NAMES, model_config_class
from td3rec.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REGENERATE = "regenerate with: python -m td3rec.commands._reference --write"


def test_every_command_has_a_page_in_the_navigation():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = re.findall(r"commands/[\w-]+\.md", yaml.safe_dump(nav))
    assert listed[0] == "commands/index.md"
    assert listed[1:] == [f"commands/{name}.md" for name in COMMANDS]  # every command, in `td3rec --help` order
    assert all((DOCS / page).is_file() for page in listed)


def test_option_reference_is_current():
    assert _reference.stale_pages(DOCS) == [], REGENERATE


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_on_its_page(name):
    """Each flag and positional argument of the parser appears in the page's generated block (this also
    catches a generator that skipped some)."""
    parser = _reference.command_parsers()[name]
    text = (DOCS / "commands" / f"{name}.md").read_text()
    block = text[text.index(_reference.begin(name)):]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for flag in action.option_strings or [action.metavar or action.dest]:
            assert re.search(rf"`{re.escape(flag)}[` ]", block), f"{flag} of td3rec {name} is not in its page"


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    """A copy of the manual, current, to break."""
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    return copy


def test_an_option_added_without_docs_fails_the_check(docs_copy, monkeypatch):
    from td3rec.commands import export

    plain = export.add_arguments

    def with_new_option(parser: argparse.ArgumentParser) -> None:
        plain(parser)
        parser.add_argument("--brand-new", help="an option nobody documented")

    monkeypatch.setattr(export, "add_arguments", with_new_option)
    assert _reference.stale_pages(docs_copy) == [f"{docs_copy / 'commands' / 'export.md'}: the block of td3rec "
                                                 "export is stale"]
    assert _reference.main(["--check", "--docs", str(docs_copy)]) == 1
    _reference.write(docs_copy)  # regenerating documents it
    assert "`--brand-new BRAND_NEW`" in (docs_copy / "commands" / "export.md").read_text()
    assert _reference.stale_pages(docs_copy) == []


def test_a_removed_option_left_in_the_docs_fails_the_check(docs_copy):
    page = docs_copy / "commands" / "stats.md"
    text = page.read_text()
    row = "| `--json` |  | print the statistics as JSON |\n"
    page.write_text(text.replace("| `--data-dir DIR` |", row + "| `--obsolete` |  | gone |\n| `--data-dir DIR` |", 1))
    assert _reference.stale_pages(docs_copy) == [f"{page}: the block of td3rec stats is stale"]


def test_a_page_without_its_block_fails_the_check(docs_copy):
    page = docs_copy / "commands" / "report.md"
    text = page.read_text()
    page.write_text(text[:text.index(_reference.begin("report"))])
    assert _reference.stale_pages(docs_copy) == [f"{page}: no generated block for td3rec report"]
    assert page in _reference.write(docs_copy) and _reference.stale_pages(docs_copy) == []


#: (page, settings class, key prefix): the keys each command reads from --config / --set, nested sections with
#: their prefix (`inner.lr`); the learner settings of every architecture are on the train page
SETTINGS = [
    ("train", TrainConfig, ""), ("train", EvalConfig, "eval."),
    *[("train", model_config_class(name), "") for name in MODEL_NAMES],
    ("distill", DistillConfig, ""), ("distill", InnerConfig, "inner."), ("distill", EvalConfig, "eval."),
    ("evaluate", SuiteConfig, ""), ("evaluate", LearnerTrainingConfig, "training."), ("evaluate", EvalConfig, "eval."),
    ("proxy", ProxyConfig, ""), ("proxy", ProxyCandidate, ""), ("proxy", EvalConfig, "eval."),
    ("proxy", LearnerTrainingConfig, "summary_training."), ("proxy", FullTrainingConfig, "full_training."),
    ("benchmark", BenchmarkConfig, ""), ("benchmark", BenchmarkDataset, ""), ("benchmark", BenchmarkMethod, ""),
    ("benchmark", GridSlice, ""), ("benchmark", FullTrainingConfig, "whole."), ("benchmark", TrainConfig, "teacher."),
    ("benchmark", DistillConfig, "distill."), ("benchmark", LearnerTrainingConfig, "training."),
    ("benchmark", EvalConfig, "eval."),
]


def described(key: str, prefix: str, spans: list[str]) -> bool:
    """Whether ``prefix + key`` is named in some code span of a page: as itself (`inner.lr`, `inner.lr=0.01`),
    by a shorthand after its section (`.weight_decay`), by the section's wildcard (`eval.*`), or in a brace
    list of keys (`{name, source, format}`)."""
    full = prefix + key
    for span in spans:
        if span == full or re.match(rf"{re.escape(full)}[=: \[]", span):
            return True
        if prefix and (span in (f".{key}", f"{prefix}*")):
            return True
        if span.startswith("{") and key in re.findall(r"\w+", span):
            return True
    return False


@pytest.mark.parametrize(("page", "cls", "prefix"), SETTINGS,
                         ids=[f"{page}-{prefix or ''}{cls.__name__}" for page, cls, prefix in SETTINGS])
def test_every_setting_is_described_on_its_page(page, cls, prefix):
    spans = re.findall(r"`([^`\n]+)`", (DOCS / "commands" / f"{page}.md").read_text())
    keys = [f.name for f in dataclasses.fields(cls)
            if not dataclasses.is_dataclass(f.default_factory() if f.default_factory is not dataclasses.MISSING
                                            else f.default)]  # a nested section: its keys are checked themselves
    missing = [prefix + key for key in keys if not described(key, prefix, spans)]
    assert not missing, f"docs/commands/{page}.md does not describe {', '.join(missing)}"


def test_the_settings_check_sees_a_missing_key():
    assert described("lr", "inner.", ["inner.lr"]) and described("lr", "inner.", ["inner.lr=0.01"])
    assert described("ks", "eval.", ["eval.*"]) and described("top_items", "", ["{name, top_items, distill}"])
    assert not described("learner_start", "", ["learner_starts", "reset"])
    assert not described("lr", "inner.", ["outer_lr", "lr"])
