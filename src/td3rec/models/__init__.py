"""The four learners (SASRec, GRU4Rec, NARM, BERT4Rec) behind one soft/hard-input interface.

Build them by name with :func:`build_model`; every learner is a :class:`SequentialRecommender`.
"""

from td3rec.models.base import SequentialRecommender
from td3rec.models.bert4rec import BERT4Rec, BERT4RecConfig
from td3rec.models.config import ModelConfig
from td3rec.models.gru4rec import GRU4Rec, GRU4RecConfig
from td3rec.models.narm import NARM, NARMConfig
from td3rec.models.registry import MODEL_NAMES, build_model, make_model_config, model_config_class
from td3rec.models.sasrec import SASRec, SASRecConfig

__all__ = [
    "MODEL_NAMES",
    "BERT4Rec",
    "BERT4RecConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "ModelConfig",
    "NARM",
    "NARMConfig",
    "SASRec",
    "SASRecConfig",
    "SequentialRecommender",
    "build_model",
    "make_model_config",
    "model_config_class",
]
