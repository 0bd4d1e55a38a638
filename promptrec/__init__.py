"""promptrec: prompt-driven zero/few-shot LLM recommendation with validated ranked lists."""

from promptrec.models import (
    Diagnostics,
    Interaction,
    Item,
    ItemSource,
    ParseStatus,
    RankedList,
    RankingCase,
    RankMode,
    RankRequest,
    UserContext,
)
from promptrec.recommender import Recommender

__all__ = [
    "Diagnostics",
    "Interaction",
    "Item",
    "ItemSource",
    "ParseStatus",
    "RankMode",
    "RankRequest",
    "RankedList",
    "RankingCase",
    "Recommender",
    "UserContext",
]
__version__ = "0.1.0"
