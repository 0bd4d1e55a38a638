"""Scenarios: where the recommendation is shown, and so what the list should hold.

Each scenario names a template in prompts/ (which declares its output contract) and how the candidate
stage treats the user's items:
  browse        -- the default: things the user will want next;
  cart          -- the history is the cart: complements, not substitutes of what is already in it;
  support_chat  -- a support agent relays the customer's request: the request is the main signal;
  post_purchase -- the history is what was just bought: accessories and follow-ups, not another copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scenario(StrEnum):
    BROWSE = "browse"
    CART = "cart"
    SUPPORT_CHAT = "support_chat"
    POST_PURCHASE = "post_purchase"


@dataclass(frozen=True)
class ScenarioPolicy:
    template: str
    request_weight: float = 1.0  # weight of the text retrievers in fusion
    # Drop candidates this similar (cosine of item embeddings) to a history item: near copies of what is
    # in the cart or was just bought are substitutes, not complements.
    near_copy_similarity: float | None = None


POLICIES: dict[Scenario, ScenarioPolicy] = {
    Scenario.BROWSE: ScenarioPolicy("scenario_browse"),
    Scenario.CART: ScenarioPolicy("scenario_cart", near_copy_similarity=0.9),
    Scenario.SUPPORT_CHAT: ScenarioPolicy("scenario_support_chat", request_weight=2.0),
    Scenario.POST_PURCHASE: ScenarioPolicy("scenario_post_purchase", near_copy_similarity=0.9),
}
