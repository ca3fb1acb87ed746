"""td3rec.evaluation: ranks, top-K metrics and the evaluation protocols (full ranking, uni100, pop100).

Ties are ranked pessimistically everywhere (a tie counts against the target); see :mod:`.metrics`.
"""

from td3rec.evaluation.evaluator import EvalConfig, evaluate, evaluation_negatives, parse_protocol, rank_users
from td3rec.evaluation.metrics import DEFAULT_KS, compute_metrics, full_ranks, sample_negatives, sampled_ranks

__all__ = [
    "DEFAULT_KS",
    "EvalConfig",
    "compute_metrics",
    "evaluate",
    "evaluation_negatives",
    "full_ranks",
    "parse_protocol",
    "rank_users",
    "sample_negatives",
    "sampled_ranks",
]
