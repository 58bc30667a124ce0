"""Search spaces, looked up by name so tools never hard-code one."""
from unnas.registry import Registry

SPACES = Registry("search space")


@SPACES.register("darts")
def _darts(**kwargs):
    from .darts import DartsSpace
    return DartsSpace(**kwargs)


def get_space(name: str = "darts", **kwargs):
    return SPACES.get(name)(**kwargs)
