"""Bilevel DARTS search with pluggable objectives."""
from unnas.engine import Hook, NonFiniteLossError

from .bilevel import BilevelStep
from .build import build_search
from .config import search_defaults, validate_search_cfg
from .searcher import Searcher, make_searcher

__all__ = ["BilevelStep", "build_search", "search_defaults", "validate_search_cfg", "Hook", "NonFiniteLossError",
           "Searcher", "cosine_lr", "make_searcher"]
