"""The one error type of an invalid architecture, whatever its space, so the tools and the study
report any of them as a one-line user error (``unnas.cli.USER_ERRORS``)."""


class ArchitectureError(ValueError):
    """An architecture that cannot be parsed or is not in its space; the message names the fault and the fix."""
