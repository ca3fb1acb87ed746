"""td3rec.data: reading interaction logs, preprocessing them into user sequences, the leave-one-out split,
real training examples, and the dataset registry (download, checksum, cache).

Typical use::

    from td3rec.data import load_dataset, leave_one_out, prefix_examples
    ds = load_dataset("ml-100k")              # registry name or a file path
    split = leave_one_out(ds)
    train = prefix_examples(split, max_len=50)
"""

from td3rec.data.loading import dataset_stats, default_preprocess_config, load_dataset
from td3rec.data.preprocess import PreprocessConfig, preprocess
from td3rec.data.readers import FORMATS, RawInteractions, detect_format, read_interactions
from td3rec.data.registry import REGISTRY, DatasetEntry, cache_dir, list_datasets
from td3rec.data.sequences import (
    Examples,
    LeaveOneOutSplit,
    SequenceDataset,
    evaluation_examples,
    iterate_batches,
    leave_one_out,
    prefix_examples,
)

__all__ = [
    "FORMATS",
    "REGISTRY",
    "DatasetEntry",
    "Examples",
    "LeaveOneOutSplit",
    "PreprocessConfig",
    "RawInteractions",
    "SequenceDataset",
    "cache_dir",
    "dataset_stats",
    "default_preprocess_config",
    "detect_format",
    "evaluation_examples",
    "iterate_batches",
    "leave_one_out",
    "list_datasets",
    "load_dataset",
    "prefix_examples",
    "preprocess",
    "read_interactions",
]
