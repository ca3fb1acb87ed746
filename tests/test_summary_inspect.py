"""`td3rec inspect`: entropy, top-k, coverage and popularity against naive computations on the materialised
summary tensor; the JSON output parses; the figures render to real PNG files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from td3rec.cli import main
from td3rec.data.sequences import SequenceDataset
from td3rec.summary.distributions import SummaryDistributions
from td3rec.summary.figures import FIGURE_FILES
from td3rec.summary.inspect import (
    coverage,
    inspect_distributions,
    inspection_report,
    popularity_profile,
    real_item_counts,
    spearman,
)
from td3rec.summary.readout import naive_summary_probabilities

from pipeline_support import distil_toy_summary, write_toy_dataset
from summary_support import item_tokens, random_factors, write_summary


@pytest.fixture
def factors():
    return random_factors()


@pytest.fixture
def naive(factors):
    """The summary tensor ``S [n, L, I]`` materialised (float64)."""
    return naive_summary_probabilities(*(factors[k].double() for k in ("G", "U", "T", "V")))


@pytest.fixture
def insp(factors):
    # a budget of 100 numbers = 2 positions per block: the streamed path is the one under test
    return inspect_distributions(SummaryDistributions.from_factors(**factors, item_tokens=item_tokens(40)), top_k=5,
                                 max_elements=100)


def test_entropy_and_top_k_match_the_materialised_tensor(insp, naive):
    entropy = -(naive * naive.log()).sum(-1)
    np.testing.assert_allclose(insp.entropy, entropy.numpy(), rtol=1e-10, atol=1e-12)
    values, index = naive.topk(5, dim=-1)
    assert np.array_equal(insp.top_items, index.numpy() + 1)
    np.testing.assert_allclose(insp.top_probs, values.numpy(), rtol=1e-10)
    np.testing.assert_allclose(insp.expected_counts, naive.sum((0, 1)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(insp.item_max_prob, naive.amax((0, 1)).numpy(), rtol=1e-10)
    assert 0 < insp.entropy.min() and insp.entropy.max() < math.log(40)  # peaked, not degenerate


def test_coverage_matches_naive_counts(insp, naive):
    cov = coverage(insp)
    max_prob = naive.amax((0, 1))
    assert cov["argmax_items"] == len(torch.unique(naive.argmax(-1)))
    assert cov["top_k_items"] == len(torch.unique(naive.topk(5, dim=-1).indices))
    assert cov["threshold"] == pytest.approx(1 / 40)
    assert cov["items_above_threshold"] == int((max_prob > 1 / 40).sum())
    assert coverage(insp, 0.3)["items_above_threshold"] == int((max_prob > 0.3).sum())
    marginal = naive.sum((0, 1)) / naive.sum()
    assert cov["effective_items"] == pytest.approx(math.exp(-(marginal * marginal.log()).sum().item()))
    ordered = marginal.sort(descending=True).values
    needed = next(k for k in range(1, 41) if ordered[:k].sum() >= 0.9)
    assert cov["items_for_90pct_mass"] == needed
    assert 1 < cov["argmax_items"] < cov["top_k_items"] < 40  # the example is informative


def test_top_k_is_cut_to_the_catalogue():
    f = random_factors(n_items=3)
    insp = inspect_distributions(SummaryDistributions.from_factors(**f), top_k=10)
    assert insp.top_items.shape[-1] == 3
    np.testing.assert_allclose(insp.top_probs.sum(-1), 1.0, rtol=1e-12)


def test_spearman_against_ranks_by_hand():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ties get average ranks: y ranks are 1, 2, 3.5, 5, 3.5
    x, y_ranks = np.arange(1.0, 6), np.array([1, 2, 3.5, 5, 3.5])
    assert spearman(x, np.array([5.0, 6, 7, 8, 7])) == pytest.approx(np.corrcoef(x, y_ranks)[0, 1])
    assert spearman(x, np.ones(5)) is None


def test_real_counts_are_matched_by_raw_item_id(insp):
    tokens = insp.item_tokens
    # the data numbers its items differently (reversed) and has one item the summary does not know
    data_tokens = np.array(list(reversed(tokens[:30])) + ["unknown"])
    seqs = [np.array([1, 1, 2, 31]), np.array([1, 3, 3])]  # internal ids of the data
    ds = SequenceDataset("d", seqs, np.array(["u1", "u2"]), data_tokens)
    counts, info = real_item_counts(ds, tokens)
    expected = np.zeros(40)
    expected[29], expected[28], expected[27] = 3, 1, 2  # data id 1 = tokens[29], 2 = tokens[28], 3 = tokens[27]
    assert np.array_equal(counts, expected)
    assert info["summary_items_not_in_data"] == 10 and info["data_items_not_in_summary"] == 1


def test_popularity_profile_against_naive_shares(insp, naive):
    real = np.arange(40, dtype=np.float64)[::-1].copy()  # item 0 the most popular
    real[5] = 100
    prof = popularity_profile(insp, real)
    expected = naive.sum((0, 1)).numpy()
    popular = [5, 0, 1, 2]  # ceil(10% of 40) = 4 most popular real items
    assert prof["real"]["popular_items"] == 4
    assert prof["real"]["summary_share_on_popular"] == pytest.approx(expected[popular].sum() / expected.sum())
    assert prof["real"]["real_share_on_popular"] == pytest.approx(real[popular].sum() / real.sum())
    assert prof["real"]["spearman"] == pytest.approx(spearman(expected, real))
    assert prof["expected_interactions"] == pytest.approx(4 * 6)
    top = np.argsort(-expected)[:10]
    assert [t["item"] for t in prof["top_items"]] == [insp.item_tokens[i] for i in top]


def test_report_lists_every_position_with_raw_ids(factors, insp):
    dist = SummaryDistributions.from_factors(**factors, item_tokens=item_tokens(40))
    report = inspection_report(dist, insp)
    assert len(report["positions"]) == 4 * 6
    row = report["positions"][7]  # sequence 2, position 2 (both count from 1)
    assert (row["sequence"], row["position"]) == (2, 2)
    assert [t["item"] for t in row["top"]] == [item_tokens(40)[j - 1] for j in insp.top_items[1, 1]]
    assert row["entropy"] == pytest.approx(insp.entropy[1, 1])


# -- the command ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    toy = write_toy_dataset(folder)
    return toy, distil_toy_summary(toy, folder)


def test_json_output_parses_and_compares_with_the_data(toy_run, capsys):
    toy, summary = toy_run
    assert main(["inspect", str(summary), "--dataset", str(toy), "--k-core", "0", "--top", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_sequences"] == 6 and report["seq_len"] == 8 and report["n_items"] == 120
    assert len(report["positions"]) == 48 and all(len(p["top"]) == 4 for p in report["positions"])
    real = report["popularity"]["real"]
    assert real["fingerprint_match"] is True and real["summary_items_not_in_data"] == 0
    assert -1 <= real["spearman"] <= 1 and real["popular_items"] == 12
    assert report["coverage"]["top_k"] == 4


def test_figures_render(toy_run, tmp_path, capsys):
    toy, summary = toy_run
    folder = tmp_path / "figs"
    assert main(["inspect", str(summary), "--dataset", str(toy), "--k-core", "0", "--figures", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "coverage" in out and "vs real" in out
    for name in FIGURE_FILES.values():
        path = folder / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # drawn content, not a blank canvas
    # figures exist: a second run needs --overwrite
    assert main(["inspect", str(summary), "--figures", str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["inspect", str(summary), "--figures", str(folder), "--overwrite", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["figures"]) == 3


def test_figures_without_data_from_a_hand_built_summary(tmp_path):
    path = write_summary(tmp_path / "s.safetensors")
    assert main(["inspect", str(path), "--figures", str(tmp_path / "f"), "--heatmap-sequences", "2"]) == 0
    assert all((tmp_path / "f" / name).stat().st_size > 5000 for name in FIGURE_FILES.values())


@pytest.mark.parametrize("args, message", [
    (["--top", "0"], "--top must be positive"),
    (["--threshold", "1.5"], "--threshold must be in [0, 1)"),
    (["--heatmap-sequences", "0"], "--heatmap-sequences must be positive"),
    (["--k-core", "0"], "--k-core only applies with --dataset"),
])
def test_bad_options(tmp_path, capsys, args, message):
    path = write_summary(tmp_path / "s.safetensors")
    assert main(["inspect", str(path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_missing_summary(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- text output and the entropy axis ---------------------------------------------------------------
def test_text_output_leads_with_the_overview_and_lists_positions_on_request(tmp_path, capsys):
    path = write_summary(tmp_path / "s.safetensors")  # 4 sequences x 6 positions
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("summary   ") and "4 sequences x 6 positions" in lines[0]
    assert not any(line.split()[:1] == ["seq"] for line in lines) and len(lines) < 10
    assert main(["inspect", str(path), "--positions"]) == 0
    with_positions = capsys.readouterr().out.strip().splitlines()
    assert with_positions[: len(lines)] == lines  # the same overview first
    header = with_positions.index(next(line for line in with_positions if line.split()[:3] == ["seq", "pos", "entropy"]))
    rows = with_positions[header + 1:]
    assert len(rows) == 4 * 6 and rows[7].split()[:2] == ["2", "2"]


def test_entropy_axis_has_no_offset(tmp_path):
    from td3rec.summary.figures import entropy_figure
    from td3rec.summary.inspect import SummaryInspection

    path = write_summary(tmp_path / "s.safetensors")
    insp = inspect_distributions(SummaryDistributions.from_file(path), 3)
    insp = SummaryInspection(**{**vars(insp), "entropy": 7.207 + 1e-6 * np.arange(insp.entropy.size, dtype=float)
                                .reshape(insp.entropy.shape)})  # a near-uniform summary: values 1e-5 apart
    fig = entropy_figure(insp, 7.207)
    fig.canvas.draw()
    axis = fig.axes[0].yaxis
    assert axis.get_major_formatter().get_offset() == ""
    labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
    assert labels and all(abs(float(label.replace("\u2212", "-")) - 7.207) < 1e-4 for label in labels)  # values, not offsets
