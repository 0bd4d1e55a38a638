"""promptrec: prompt-driven zero/few-shot LLM recommendation with validated ranked lists."""

import logging

from promptrec.errors import BackendError, DataError, PromptrecError, RequestError, TemplateError
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
    "BackendError",
    "DataError",
    "Diagnostics",
    "Interaction",
    "Item",
    "ItemSource",
    "ParseStatus",
    "PromptrecError",
    "RankMode",
    "RankRequest",
    "RankedList",
    "RankingCase",
    "Recommender",
    "RequestError",
    "RequestLimits",
    "TemplateError",
    "UserContext",
    "parse_request",
]
__version__ = "0.1.0"

# bitsandbytes (imported by peft whenever an adapter loads) warns on CPUs with AVX512-BF16 that it could not
# download an optional kernel from the hub; offline that is expected and it uses its own CPU kernels.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
