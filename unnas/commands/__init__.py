"""The command-line programs (``unnas-search``, ``unnas-train``, ``unnas-rank-corr``, ``unnas-info``,
``unnas-plot-genotype``, ``unnas-evolve-loss`` once installed; ``python tools/<name>.py`` from a
clone). Each module is a thin layer over the library: flags to ``KEY VALUE`` overrides, one library
call, printing."""
