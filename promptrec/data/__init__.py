"""The data stage: load catalogues, logs and ready ranking sets; build label-safe evaluation cases."""

from promptrec.data.catalog import Catalog, InteractionLog, RawInteraction, interaction_sort_key, load_catalog
from promptrec.data.dataset import RankingDataset, load_dataset
from promptrec.data.llmrank import load_llmrank_cases
from promptrec.data.movielens import load_movielens
from promptrec.data.quality import DataQualityReport, IssueTally
from promptrec.data.recbole import UserSequence, load_atomic_inter, load_item_file, load_sequence_inter
from promptrec.data.splits import LeaveOneOutSplit, leave_one_out, llmrank_train_histories, sequence_case
from promptrec.data.tallrec import PointwiseCase, load_tallrec

__all__ = [
    "Catalog",
    "DataQualityReport",
    "InteractionLog",
    "IssueTally",
    "LeaveOneOutSplit",
    "PointwiseCase",
    "RankingDataset",
    "RawInteraction",
    "UserSequence",
    "interaction_sort_key",
    "leave_one_out",
    "llmrank_train_histories",
    "load_atomic_inter",
    "load_catalog",
    "load_dataset",
    "load_item_file",
    "load_llmrank_cases",
    "load_movielens",
    "load_sequence_inter",
    "load_tallrec",
    "sequence_case",
]
