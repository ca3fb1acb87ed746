"""td3rec from Python: load a dataset, train a teacher, distil a TD3 summary, evaluate it, export it.

    python examples/quickstart.py [DATASET_OR_FILE] [OUT_DIR]

Without a dataset a small synthetic one is generated. Every setting is tiny so that it runs in seconds on a
CPU; the README lists the reference settings.
"""

import sys
from pathlib import Path

import torch

from td3rec.data import PreprocessConfig, load_dataset
from td3rec.distill.config import DistillConfig, InnerConfig
from td3rec.distill.distiller import Distiller
from td3rec.evaluation.evaluator import EvalConfig
from td3rec.evaluation.learner_training import LearnerTrainingConfig
from td3rec.evaluation.suite import DataSpec, SuiteConfig, run_suite
from td3rec.summary.export import export_summary
from td3rec.training.config import TrainConfig
from td3rec.training.trainer import train_full_data


def main(data: str | Path, out: Path) -> None:
    # 1. data: a registered name (`td3rec datasets`) or an interaction file; k_core=0 keeps every user and item
    dataset = load_dataset(data, PreprocessConfig(k_core=0))
    metrics = EvalConfig(protocols=("full",))

    # 2. a teacher on the full data; its per-epoch checkpoints are the trajectory distillation starts from
    teacher = train_full_data(dataset, TrainConfig(model="sasrec", model_options={"hidden_size": 16, "inner_size": 16},
                                                   mode="window", epochs=3, eval=metrics),
                              run_dir=out / "teacher", progress=False)

    # 3. distil into 6 synthetic sequences of 8 positions (reference settings: DistillConfig())
    config = DistillConfig(n_sequences=6, seq_len=8, d1=4, d2=4, inner_steps=4, window=2, epochs=1,
                           inner=InnerConfig(batch_size=3), trajectory_epochs=(1, 3), eval_steps=10,
                           select_metric="full:MRR@10", eval=metrics)
    Distiller(dataset, config, run_dir=out / "distill", teacher_run=out / "teacher", progress=False).run()
    summary = out / "distill" / "summary_best.safetensors"

    # 4. evaluate: learners trained for a fixed schedule on the summary and on 6 random real users
    suite = SuiteConfig(inits=("reference", "scratch"), seeds=1, training=LearnerTrainingConfig(steps=20), eval=metrics)
    rows = run_suite(dataset, [DataSpec("summary", path=str(summary)), DataSpec("random", n=6)], suite,
                     torch.device("cpu"), teachers={"sasrec": teacher.model})
    for row in rows:
        print(f"{row['data']:<40} {row['init']:<10} test NDCG@10 {row['mean']['full']['NDCG@10']:.4f}")

    # 5. export the summary as hard sequences (argmax item per position) for RecBole
    hard = export_summary(summary, out / "summary.inter", fmt="recbole", mode="argmax", overwrite=True)
    print(f"exported {len(hard)} sequences to {out / 'summary.inter'}")


def toy_file(folder: Path, users: int = 80, items: int = 120) -> Path:
    """One user per line; each next item is 1 or 2 ids further on, so there is something to learn."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, users + 1):
        seq = np.cumsum(rng.integers(1, 3, size=rng.integers(6, 25))) + rng.integers(items)
        lines.append(" ".join(map(str, [user, *(seq % items + 1)])))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.txt").write_text("\n".join(lines) + "\n")
    return folder / "toy.txt"


if __name__ == "__main__":
    out_dir = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/quickstart")
    main(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else toy_file(out_dir), out_dir)
