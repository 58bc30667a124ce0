"""Pictures of a genotype's normal and reduction cells, as PNG (like DARTS' visualize.py).

  python tools/plot_genotype.py DARTS_V2                          # ./normal_cell.png, ./reduction_cell.png
  python tools/plot_genotype.py runs/search/genotype.json --out pics
  python tools/plot_genotype.py unnas_imagenet_jig --out pics --prefix jig_   # pics/jig_normal_cell.png, ...
  python tools/plot_genotype.py "Genotype(normal=[('sep_conv_3x3', 0), ...], ...)" --out pics

The genotype is what tools/train.py --genotype takes: a zoo name (tools/info.py --list), a genotype
file (a search's genotype.json or summary.json) or a Genotype(...) / JSON string. Cells are laid out
by graphviz's dot when it is installed, else by a layered layout of our own (--engine chooses).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unnas.cli import command, run_reporting_errors

PROG = "plot_genotype.py"


@command
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("genotype", help="zoo name, genotype file or Genotype(...) string")
    p.add_argument("--out", default=".", help="folder for the pictures (made if missing; default: here)")
    p.add_argument("--prefix", default="", help="prefix of the file names, e.g. darts_v2_")
    p.add_argument("--engine", choices=["auto", "builtin", "dot"], default="auto",
                   help="cell layout: dot when installed (auto), our own (builtin), or dot")
    args = p.parse_args(argv)
    return run_reporting_errors(PROG, _run, args)


def _run(args) -> int:
    from search_spaces.darts import zoo
    from unnas.utils.plots import plot_cell

    genotype = zoo.resolve_genotype(args.genotype)
    name = zoo.canonical_name(args.genotype) or ""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for cell, concat, kind, file in ((genotype.normal, genotype.normal_concat, "normal cell", "normal_cell.png"),
                                     (genotype.reduce, genotype.reduce_concat, "reduction cell", "reduction_cell.png")):
        path = out / f"{args.prefix}{file}"
        layout = plot_cell(cell, concat, path, f"{name} {kind}".strip(), engine=args.engine)
        print(f"{path} ({layout.engine} layout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
