"""Ranking strategies: each wraps rankers (promptrec.ranker.Ranker) and is itself a ranker."""
