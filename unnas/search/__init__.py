"""Bilevel DARTS search with pluggable objectives."""
from .bilevel import BilevelStep
from .config import search_defaults, validate_search_cfg
from .searcher import Hook, NonFiniteLossError, Searcher, cosine_lr

__all__ = ["BilevelStep", "search_defaults", "validate_search_cfg", "Hook", "NonFiniteLossError",
           "Searcher", "cosine_lr"]
