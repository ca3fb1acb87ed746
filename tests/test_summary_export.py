"""`td3rec export`: hard sequences from a summary (argmax against a materialised softmax, sampling against the
probabilities), every format read back by td3rec's readers with the same raw item ids, and bad input refused
with one line and exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from td3rec.cli import main
from td3rec.data import PreprocessConfig, load_dataset, read_interactions
from td3rec.errors import DataError
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.export import argmax_items, export_summary, hard_sequences, sample_items
from td3rec.summary.readout import naive_summary_probabilities

from pipeline_support import distil_toy_summary, write_toy_dataset
from summary_support import item_tokens, random_factors, write_summary

FORMATS = {"recbole": (".inter", "atomic"), "csv": (".csv", "csv"), "txt": (".txt", "sequence")}


@pytest.fixture
def factors():
    return random_factors()


@pytest.fixture
def summary_file(tmp_path, factors):
    return write_summary(tmp_path / "summary.safetensors", factors)


def naive_probs(f: dict[str, torch.Tensor]) -> torch.Tensor:
    """``S [n, L, I]`` materialised in one einsum (float64)."""
    return naive_summary_probabilities(*(f[k].double() for k in ("G", "U", "T", "V")))


def read_back(path) -> dict[str, list[str]]:
    """``{user: [raw item id, ...]}`` as td3rec reads the file with k-core off."""
    ds = load_dataset(path, PreprocessConfig(k_core=0))
    return {str(u): [str(ds.item_tokens[j - 1]) for j in seq] for u, seq in zip(ds.user_tokens, ds.sequences)}


# -- the hard sequences ------------------------------------------------------------------------------
@pytest.mark.parametrize("max_elements", [1, 80, 1 << 22])
def test_argmax_equals_materialised_softmax_argmax(factors, max_elements):
    dist = SummaryDistributions.from_factors(**factors)
    expected = naive_probs(factors).argmax(-1).numpy() + 1  # internal ids start at 1
    assert np.array_equal(argmax_items(dist, max_elements), expected)


def test_blocks_never_hold_more_than_the_budget(factors):
    dist = SummaryDistributions.from_factors(**factors)  # 40 items, 6 positions
    sizes = [b.log_probs.shape for b in dist.blocks(max_elements=100)]
    assert all(shape == (2, 40) or shape[0] < 2 for shape in sizes)  # 100 // 40 = 2 positions per block
    assert len(sizes) == 4 * 3
    ones = [b.log_probs.shape for b in dist.blocks(max_elements=1)]  # below one row: one position at a time
    assert ones == [(1, 40)] * 24


def test_sampling_frequencies_follow_the_probabilities():
    f = random_factors(n=2, length=3, n_items=6, scale=0.6, seed=3)
    probs = naive_probs(f).numpy()  # [2, 3, 6]
    draws = 20_000
    items = sample_items(SummaryDistributions.from_factors(**f), draws, seed=11)  # [2, draws, 3]
    for a in range(2):
        for b in range(3):
            freq = np.bincount(items[a, :, b] - 1, minlength=6) / draws
            sigma = np.sqrt(probs[a, b] * (1 - probs[a, b]) / draws)
            assert np.all(np.abs(freq - probs[a, b]) <= 5 * sigma + 1e-9), (a, b, freq, probs[a, b])
    # the distributions are far from uniform, so a uniform sampler would fail the check above
    assert np.abs(probs - 1 / 6).max() > 0.05


def test_sampling_is_reproducible_by_seed_and_independent_of_blocking(factors):
    dist = SummaryDistributions.from_factors(**factors)
    first = sample_items(dist, 5, seed=4)
    assert np.array_equal(first, sample_items(dist, 5, seed=4, max_elements=1))
    assert not np.array_equal(first, sample_items(dist, 5, seed=5))
    assert first.min() >= 1 and first.max() <= dist.n_items


def test_zero_probability_items_are_never_drawn():
    # item 2 has logit -1e4 (probability 0 in float64) at every position
    f = {"U": torch.ones(1, 1), "T": torch.ones(4, 1), "G": torch.ones(1, 1, 1),
         "V": torch.tensor([[0.0], [-1e4], [0.0]])}
    items = sample_items(SummaryDistributions.from_factors(**f), 2000, seed=0)
    assert set(np.unique(items).tolist()) == {1, 3}


def test_hard_sequences_name_users_and_keep_origin(factors):
    dist = SummaryDistributions.from_factors(**factors)
    argmax = hard_sequences(dist, "argmax")
    assert argmax.users == ["syn_0001", "syn_0002", "syn_0003", "syn_0004"]
    sampled = hard_sequences(dist, "sample", samples=3, seed=2)
    assert sampled.users[:4] == ["syn_0001_01", "syn_0001_02", "syn_0001_03", "syn_0002_01"]
    assert sampled.origin.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert np.array_equal(sampled.items.reshape(4, 3, -1), sample_items(dist, 3, seed=2))


# -- files round-trip through td3rec's readers ------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_argmax_export_round_trips_with_raw_item_ids(summary_file, factors, tmp_path, fmt, capsys):
    suffix, read_as = FORMATS[fmt]
    out = tmp_path / f"hard{suffix}"
    assert main(["export", str(summary_file), "--format", fmt, "--mode", "argmax", "--out", str(out)]) == 0
    assert "wrote 4 synthetic sequences (24 interactions" in capsys.readouterr().out
    tokens = item_tokens(40)
    naive = naive_probs(factors).argmax(-1).numpy()
    expected = {f"syn_{a + 1:04d}": [tokens[i] for i in naive[a]] for a in range(4)}
    assert read_back(out) == expected
    raw = read_interactions(out)
    assert raw.fmt == read_as
    if fmt != "txt":  # timestamps increase within every user
        for user in expected:
            times = raw.timestamps[raw.users == user]
            assert np.all(np.diff(times) > 0) and len(times) == 6


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_sampled_export_round_trips(summary_file, tmp_path, fmt):
    out = tmp_path / f"sampled{FORMATS[fmt][0]}"
    assert main(["export", str(summary_file), "--format", fmt, "--mode", "sample", "--samples", "3", "--seed", "7",
                 "--out", str(out)]) == 0
    dist = SummaryDistributions.from_file(summary_file)
    drawn = sample_items(dist, 3, seed=7)
    expected = {f"syn_{a + 1:04d}_{k + 1:02d}": [dist.item_tokens[j - 1] for j in drawn[a, k]]
                for a in range(4) for k in range(3)}
    assert read_back(out) == expected


def test_real_summary_round_trips_through_the_cli(tmp_path):
    toy = write_toy_dataset(tmp_path)
    summary = distil_toy_summary(toy, tmp_path)
    out = tmp_path / "toy_summary.inter"
    assert main(["export", str(summary), "--out", str(out)]) == 0
    got = read_back(out)
    expected = hard_sequences(SummaryDistributions.from_file(summary)).token_sequences()
    assert got == expected and len(got) == 6 and all(len(s) == 8 for s in got.values())
    # items are raw ids of the toy data (1..120)
    assert {int(t) for seq in got.values() for t in seq} <= set(range(1, 121))


def test_library_export_writes_the_file(summary_file, tmp_path):
    seqs = export_summary(summary_file, tmp_path / "x.csv", fmt="csv", mode="sample", samples=2, seed=1)
    assert read_back(tmp_path / "x.csv") == seqs.token_sequences()


# -- bad input -------------------------------------------------------------------------------------
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("td3rec export: error:"), err
    return err[0]


def test_missing_summary(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.inter")]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert not (tmp_path / "x.inter").exists()


def test_corrupt_summary(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    assert main(["export", str(bad), "--out", str(tmp_path / "x.inter")]) == 2
    assert "corrupted or not a td3rec summary" in one_line_error(capsys)


def test_summary_without_item_id_map(tmp_path, factors, capsys):
    path = write_summary(tmp_path / "s.safetensors", factors, tokens=["a", "b"])  # 2 tokens for 40 items
    assert main(["export", str(path), "--out", str(tmp_path / "x.inter")]) == 2
    assert "2 item tokens for 40 items" in one_line_error(capsys)


def test_existing_output_needs_overwrite(summary_file, tmp_path, capsys):
    out = tmp_path / "x.inter"
    out.write_text("keep me")
    assert main(["export", str(summary_file), "--out", str(out)]) == 2
    assert "already exists" in one_line_error(capsys)
    assert out.read_text() == "keep me"
    assert main(["export", str(summary_file), "--out", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("user_id:token\titem_id:token\ttimestamp:float\n")


@pytest.mark.parametrize("args, message", [
    (["--mode", "sample", "--samples", "0"], "--samples must be a positive"),
    (["--mode", "sample", "--samples", "-3"], "--samples must be a positive"),
    (["--samples", "2"], "--samples only applies to --mode sample"),
])
def test_bad_samples(summary_file, tmp_path, capsys, args, message):
    assert main(["export", str(summary_file), "--out", str(tmp_path / "x.inter"), *args]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "x.inter").exists()


def test_token_that_the_format_cannot_hold(tmp_path, capsys):
    f = random_factors(n_items=3)
    path = write_summary(tmp_path / "s.safetensors", f, tokens=["a b", "a b", "a b"])
    assert main(["export", str(path), "--format", "txt", "--out", str(tmp_path / "x.txt")]) == 2
    assert "export with --format csv" in one_line_error(capsys)
    # tab-separated atomic files hold spaces: the same summary exports and reads back
    export_summary(path, tmp_path / "y.inter", fmt="recbole")
    assert set(read_back(tmp_path / "y.inter")["syn_0001"]) == {"a b"}
    with pytest.raises(DataError, match="cannot hold"):
        export_summary(path, tmp_path / "z.txt", fmt="txt")


# -- training on an export ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_loads_as_training_data_with_the_summary_ids(tmp_path, fmt):
    """Every export format read back as learner training data gives the exported internal ids, row by row."""
    from td3rec.evaluation.sources import load_hard_sequences

    toy = write_toy_dataset(tmp_path)
    summary = distil_toy_summary(toy, tmp_path)
    dataset = load_dataset(str(toy), PreprocessConfig(k_core=0))
    out = tmp_path / f"export{FORMATS[fmt][0]}"
    seqs = export_summary(summary, out, fmt=fmt, mode="sample", samples=2, seed=3)
    hard = load_hard_sequences(str(out), dataset, max_len=8)
    assert hard.ids.shape == (12, 8) and hard.full_lengths.tolist() == [8] * 12
    expected = {tuple(dataset.item_tokens[j - 1] for j in row) for row in seqs.items.tolist()}
    got = {tuple(dataset.item_tokens[j - 1] for j in row) for row in hard.ids.tolist()}
    assert got == expected
    short = load_hard_sequences(str(out), dataset, max_len=5)  # the last max_len items of each sequence
    assert {tuple(r) for r in short.ids.tolist()} == {tuple(r[-5:]) for r in hard.ids.tolist()}


def test_export_of_other_data_is_refused(tmp_path):
    from td3rec.evaluation.sources import load_hard_sequences

    toy = write_toy_dataset(tmp_path)
    dataset = load_dataset(str(toy), PreprocessConfig(k_core=0))
    other = tmp_path / "other.txt"
    other.write_text("u1 1 2 3\nu2 4 999 5\n")
    with pytest.raises(DataError, match="'999' is not an item of"):
        load_hard_sequences(str(other), dataset, max_len=8)


def test_evaluate_trains_on_an_exported_file(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path)
    summary = distil_toy_summary(toy, tmp_path)
    out = tmp_path / "export.inter"
    assert main(["export", str(summary), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--sequences", str(out), "--summary",
                 str(summary), "--teacher", str(tmp_path / "teacher"), "--init", "shared-item-factor,scratch",
                 "--seeds", "1", "--steps", "5", "--set", "eval.protocols=[full]", "--json", str(tmp_path / "r.json")]) == 0
    import json

    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    labels = {(r["data"], r["init"].split(" ")[0]) for r in rows}
    assert ("sequences:export.inter", "shared-item-factor") in labels and ("sequences:export.inter", "scratch") in labels
    assert main(["evaluate", "--dataset", str(toy), "--k-core", "0", "--sequences", str(tmp_path / "no.inter")]) == 2
    assert "sequences file" in capsys.readouterr().err
