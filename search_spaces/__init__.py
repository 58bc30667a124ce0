"""Search spaces, looked up by name so tools never hard-code one.

A space is an object (``get_space(name)``) that reads, writes, samples, validates and builds the
networks of its architectures; the training code and the study talk only to it (see
docs/architecture.md, "A new search space"). A stored architecture is a dict whose fields say
which space it belongs to (``owns``), so the study's store and checkpoints need no space name to
read one back (:func:`arch_from_dict`).
"""
from unnas.registry import Registry

from .errors import ArchitectureError

SPACES = Registry("search space")


@SPACES.register("darts")
def _darts(**kwargs):
    from .darts import DartsSpace
    return DartsSpace(**kwargs)


@SPACES.register("nasbench101", aliases=("nasbench", "nas_bench", "nas-bench-101"))
def _nasbench101(**kwargs):
    from .nasbench101 import NasBench101Space
    return NasBench101Space(**kwargs)


def get_space(name: str = "darts", **kwargs):
    return SPACES.get(name)(**kwargs)


def space_of(stored: dict):
    """The space whose architectures have the fields of ``stored`` (a dict written by ``to_dict``)."""
    for name in SPACES.names():
        space = get_space(name)
        if space.owns(stored):
            return space
    raise ArchitectureError(f"{str(stored)[:80]!r} is no architecture of a known space ({', '.join(SPACES.names())}): "
                            "a DARTS genotype has normal and reduce, a NAS-Bench-101 spec matrix and ops")


def arch_from_dict(stored: dict):
    """An architecture from its ``to_dict()`` form, in whichever space owns it."""
    return space_of(stored).arch_from_dict(stored)


def arch_from_json(text: str):
    import json
    try:
        return arch_from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ArchitectureError(f"stored architecture is not valid JSON: {exc}") from None


__all__ = ["SPACES", "get_space", "space_of", "arch_from_dict", "arch_from_json", "ArchitectureError"]
