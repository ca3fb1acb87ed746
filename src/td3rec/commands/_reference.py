"""The manual's option reference, generated from the parsers ``td3rec.cli`` builds, so that it cannot drift.

Each command page ``docs/commands/NAME.md`` holds one generated block between the markers
``<!-- BEGIN GENERATED OPTIONS: td3rec NAME -->`` and ``<!-- END GENERATED OPTIONS -->``: a table per argument
group with every option's flags, argument, default and help text. ``docs/commands/index.md`` holds the generated
list of commands. Everything outside the blocks is written by hand.

    python -m td3rec.commands._reference --write   # regenerate the blocks in place
    python -m td3rec.commands._reference --check   # exit 1, naming the pages, when a block is stale

``tests/test_docs_options.py`` runs the check: an option added to, renamed in or removed from a parser without
regenerating the pages fails the tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: the manual's folder in a source checkout (``docs/`` beside ``src/``)
DOCS = Path(__file__).resolve().parents[3] / "docs"
END = "<!-- END GENERATED OPTIONS -->"
#: the block of the list of commands, in ``docs/commands/index.md``
COMMAND_LIST = "commands"


def begin(name: str) -> str:
    """The opening marker of the generated block of ``name`` (a command, or :data:`COMMAND_LIST`)."""
    return f"<!-- BEGIN GENERATED OPTIONS: td3rec {name} -->"


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser, as ``td3rec.cli`` builds them, in ``td3rec --help`` order."""
    from td3rec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, whitespace collapsed)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _flags(action: argparse.Action) -> str:
    """``--out DIR`` / ``-v, --verbose`` / ``SUMMARY``: how the option is written on the command line."""
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes = action.nargs != 0
    arg = ""
    if takes:
        if action.metavar:
            arg = f" {action.metavar}"
        elif action.choices:
            arg = " {" + ",".join(map(str, action.choices)) + "}"
        else:
            arg = f" {action.dest.upper()}"
    return ", ".join(f"`{flag}{arg}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    """The parser's default when it says something (not ``None``, an empty list, a flag's ``False``)."""
    default = action.default
    if default in (None, argparse.SUPPRESS, False, []) or action.nargs == 0:
        return ""
    return f"`{default}`"


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"default": action.default, "dest": action.dest, "prog": "td3rec"}
    if action.choices and action.option_strings and action.metavar:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    if action.option_strings and action.option_strings[-1] == "--version":
        text = "print td3rec's version and exit"
    return text


def options_markdown(name: str, parser: argparse.ArgumentParser) -> str:
    """The generated block of one command: its usage line (positional arguments, then options), then one table
    per argument group (not argparse's own usage text, which differs between Python versions)."""
    positionals = [a.metavar or a.dest for a in parser._actions if not a.option_strings]
    lines = [begin(name), "", "```text", " ".join(["td3rec", name, *positionals, "[options]"]), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| option | default | meaning |", "|---|---|---|"]
        lines += [f"| {_flags(a)} | {_default(a)} | {_cell(_help(a))} |" for a in actions]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def commands_markdown(parsers: dict[str, argparse.ArgumentParser]) -> str:
    """The generated list of commands: each one's page and its one-line help."""
    lines = [begin(COMMAND_LIST), "", "| command | what it does |", "|---|---|"]
    lines += [f"| [`td3rec {name}`]({name}.md) | {_cell(p.description or '')} |" for name, p in parsers.items()]
    lines += ["", END]
    return "\n".join(lines)


def expected_blocks(docs: Path = DOCS) -> dict[Path, dict[str, str]]:
    """Page -> {block name -> generated text} for every block the manual must hold."""
    parsers = command_parsers()
    pages: dict[Path, dict[str, str]] = {docs / "commands" / "index.md": {COMMAND_LIST: commands_markdown(parsers)}}
    for name, parser in parsers.items():
        pages[docs / "commands" / f"{name}.md"] = {name: options_markdown(name, parser)}
    return pages


def refresh(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each generated block replaced by its current version (a missing block is appended)."""
    for name, block in blocks.items():
        pattern = re.compile(re.escape(begin(name)) + r"\n.*?" + re.escape(END), re.S)
        text, count = pattern.subn(lambda _: block, text)
        if not count:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    return text


def stale_pages(docs: Path = DOCS) -> list[str]:
    """Why each page's generated blocks differ from what the parsers give now (empty: all current)."""
    problems = []
    for page, blocks in expected_blocks(docs).items():
        if not page.is_file():
            problems.append(f"{page}: missing")
            continue
        text = page.read_text(encoding="utf-8")
        for name, block in blocks.items():
            found = re.search(re.escape(begin(name)) + r"\n.*?" + re.escape(END), text, re.S)
            if found is None:
                problems.append(f"{page}: no generated block for td3rec {name}")
            elif found.group(0) != block:
                problems.append(f"{page}: the block of td3rec {name} is stale")
    return problems


def write(docs: Path = DOCS) -> list[Path]:
    """Regenerate every block in place; returns the pages that changed (pages are created when missing)."""
    changed = []
    for page, blocks in expected_blocks(docs).items():
        old = page.read_text(encoding="utf-8") if page.is_file() else ""
        new = refresh(old, blocks)
        if new != old:
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m td3rec.commands._reference", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, default=DOCS, help="the manual's folder (default: docs/ of the checkout)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="regenerate the option reference in place")
    what.add_argument("--check", action="store_true", help="exit 1 when the option reference is stale")
    args = parser.parse_args(argv)
    if args.write:
        for page in write(args.docs):
            print(f"updated {page}")
        return 0
    problems = stale_pages(args.docs)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("regenerate with: python -m td3rec.commands._reference --write", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
