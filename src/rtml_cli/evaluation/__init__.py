"""Choosing between models: routing bandits, off-policy evaluation, contextual bandits."""
