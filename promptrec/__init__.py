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
from promptrec.validation import RequestLimits, parse_request

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
    "RequestLimits",
    "UserContext",
    "parse_request",
]
__version__ = "0.1.0"
