"""Ranking strategies: each wraps any `Ranker` (promptrec.ranker) and is itself a Ranker."""
