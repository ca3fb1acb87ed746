"""Summary files that pass the format check but not the content check (issue 15, point 3): metadata that is
not a mapping or has entries of the wrong type, tensors in another dtype, NaN or infinite values, zero
sequences, shapes that contradict each other, the metadata or the learner. Each is one error line (exit 2)
for every reader, and nothing is written; a fuzz test mutates header, metadata and tensor values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from td3rec.cli import main
from td3rec.summary.io import METADATA_KEY


@pytest.fixture(scope="module")
def original(toy_distill_reference) -> tuple[dict[str, torch.Tensor], dict]:
    path = toy_distill_reference / "summary_best.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()[METADATA_KEY])
    return load_file(str(path)), meta


def write(path: Path, tensors: dict[str, torch.Tensor], meta: object, shapes: bool = True) -> Path:
    """A summary file written around td3rec's own checks (as another tool, or a bit flip, could)."""
    if shapes and isinstance(meta, dict) and "factor_shapes" in meta:
        meta = dict(meta, factor_shapes={k: list(v.shape) for k, v in tensors.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"td3rec {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def export(path: Path, out: Path) -> int:
    return main(["-q", "export", str(path), "--out", str(out)])


def bad_summaries(tensors, meta) -> list[tuple[str, dict, object, str]]:
    """(name, tensors, metadata, expected message) of one bad summary per class."""
    def with_(**changes):
        return {**tensors, **changes}

    nan_g = tensors["G"].clone()
    nan_g.view(-1)[3] = math.nan
    inf_v = tensors["V"].clone()
    inf_v[0, 0] = math.inf
    return [
        ("meta-list", tensors, [1, 2], "metadata is a list"),
        ("meta-number", tensors, 7, "metadata is a int"),
        ("meta-method-type", tensors, dict(meta, method=3), "'method' is int"),
        ("meta-tokens-type", tensors, dict(meta, item_tokens="abc"), "'item_tokens' is str"),
        ("meta-tokens-items", tensors, dict(meta, item_tokens=[1] * tensors["V"].shape[0]), "list of item id"),
        ("fp16", with_(G=tensors["G"].half()), meta, "tensor G is float16"),
        ("int64", with_(U=tensors["U"].long()), meta, "tensor U is int64"),
        ("float64", with_(V=tensors["V"].double()), meta, "tensor V is float64"),
        ("nan", with_(G=nan_g), meta, "tensor G holds NaN or infinite values"),
        ("inf", with_(V=inf_v), meta, "tensor V holds NaN or infinite values"),
        ("no-sequences", with_(U=tensors["U"][:0]), dict(meta, config=dict(meta["config"], n_sequences=0)),
         "holds no synthetic sequence"),
        ("seq-len-1", with_(T=tensors["T"][:1]), dict(meta, config=dict(meta["config"], seq_len=1)),
         "a learner needs at least 2"),
        ("meta-seq-len", tensors, dict(meta, config=dict(meta["config"], seq_len=99)), "seq_len = 99"),
        ("meta-n-items", tensors, dict(meta, n_items=3), "metadata says 3 items"),
        ("dims", with_(G=tensors["G"].reshape(tensors["G"].shape[0], -1)), meta, "G has 2 dimensions"),
    ]


def test_every_class_of_bad_content_is_one_line_for_export_and_evaluate(original, toy_data, tmp_path, capsys):
    tensors, meta = original
    for name, bad_tensors, bad_meta, message in bad_summaries(tensors, meta):
        path = write(tmp_path / f"{name}.safetensors", bad_tensors, bad_meta)
        out = tmp_path / f"{name}.inter"
        assert export(path, out) == 2, name
        assert message in one_error_line(capsys, "export"), name
        assert not out.exists(), name
        report = tmp_path / f"{name}.json"
        code = main(["-q", "evaluate", "--dataset", str(toy_data), "--k-core", "0", "--summary", str(path),
                     "--init", "scratch", "--seeds", "1", "--steps", "1", "--json", str(report)])
        assert code == 2, name
        assert message in one_error_line(capsys, "evaluate"), name
        assert not report.exists(), name


def test_factor_shapes_that_contradict_the_tensors(original, tmp_path, capsys):
    tensors, meta = original
    path = write(tmp_path / "s.safetensors", tensors, dict(meta, factor_shapes={"U": [1, 1]}), shapes=False)
    assert export(path, tmp_path / "x.inter") == 2
    assert "records factor shapes" in one_error_line(capsys, "export")


def test_a_summary_longer_than_the_learner_accepts(original, toy_data, toy_teacher, tmp_path, capsys):
    """Sequences longer than the learner's position table (the teacher's max_len 50) are refused before any
    learner is trained."""
    tensors, meta = original
    long_T = tensors["T"].repeat(8, 1)[:60]
    path = write(tmp_path / "long.safetensors", {**tensors, "T": long_T},
                 dict(meta, config=dict(meta["config"], seq_len=60)))
    code = main(["-q", "evaluate", "--dataset", str(toy_data), "--k-core", "0", "--summary", str(path),
                 "--teacher", str(toy_teacher), "--init", "scratch", "--seeds", "1", "--steps", "1"])
    assert code == 2
    assert "has sequences of length 60, longer than the sasrec learner accepts" in one_error_line(capsys, "evaluate")


def test_the_original_summary_passes(original, tmp_path):
    tensors, meta = original
    assert export(write(tmp_path / "ok.safetensors", tensors, meta), tmp_path / "ok.inter") == 0


# -- fuzzing -------------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_fuzz_summary_files(original, tmp_path_factory, data):
    """Mutated metadata entries, tensor values, dtypes and shapes, and flipped header bytes: export ends with
    exit 0 (a usable summary) or 2 (one error line) and never raises."""
    tensors, meta = original
    tensors, meta = dict(tensors), json.loads(json.dumps(meta))
    folder = tmp_path_factory.mktemp("fuzz")
    kind = data.draw(st.sampled_from(["meta", "meta-config", "value", "dtype", "shape", "header"]))
    name = data.draw(st.sampled_from(sorted(tensors)))
    if kind == "meta":
        meta[data.draw(st.sampled_from(sorted(meta) + ["extra"]))] = data.draw(JSON_VALUES)
    elif kind == "meta-config":
        meta["config"][data.draw(st.sampled_from(["n_sequences", "seq_len", "max_len"]))] = data.draw(JSON_VALUES)
    elif kind == "value":
        t = tensors[name].clone()
        t.view(-1)[data.draw(st.integers(0, t.numel() - 1))] = data.draw(st.floats(width=32))
        tensors[name] = t
    elif kind == "dtype":
        tensors[name] = tensors[name].to(data.draw(st.sampled_from([torch.float16, torch.bfloat16, torch.float64,
                                                                    torch.int32, torch.int64, torch.uint8])))
    elif kind == "shape":
        t = tensors[name]
        tensors[name] = t[: data.draw(st.integers(0, t.shape[0]))]
    path = write(folder / "s.safetensors", tensors, meta, shapes=data.draw(st.booleans()))
    if kind == "header":
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, min(len(raw), 400) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(raw))
    out = folder / "x.inter"
    code = export(path, out)  # an exception out of main fails the test
    assert code in (0, 2)
    assert out.exists() == (code == 0)
    if code == 0 and kind != "header":  # what was accepted is a summary td3rec could have written
        assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in tensors.values())
        assert isinstance(meta, dict) and tensors["U"].shape[0] >= 1 and tensors["T"].shape[0] >= 2
