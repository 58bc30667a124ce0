"""Parameter counts of our NAS-Bench-101 CIFAR-10 networks for the release's 500 specs.

  python benchmarks/nasbench101_params.py                      # ../shared/data/unnas-sample-archs/...500.json
  python benchmarks/nasbench101_params.py --archs list.json --json out.json

The network is the release's CIFAR-10 setting (stem width 128, 3 stacks x 3 modules) with the
classification head (global average pool, Linear to 10 classes), as NAS-Bench-101 builds and
counts it (trainable parameters: convolutions without bias, BN's gamma and beta, the dense layer).
Only the modules are built, no forward pass. Each count is checked against a closed-form count
from the channel rule (:func:`formula_params`), written from NAS-Bench-101's construction rather
than from our modules. Report: docs/nasbench101.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ROOT.parent / "shared" / "data" / "unnas-sample-archs" / "nasbench101_cifar10_500.json"


def formula_params(spec, width: int = 128, num_stacks: int = 3, modules_per_stack: int = 3, classes: int = 10) -> int:
    """Trainable parameters by NAS-Bench-101's rules: stem conv3x3-BN; per module, a 1x1 conv-BN
    projection of the input for every input edge (to the vertex's channels, or to the module's
    output channels for input -> output), a conv-BN per conv vertex at its channels; the dense layer."""
    from search_spaces.nasbench101 import vertex_channels

    def conv_bn(c_in, c_out, k):
        return c_in * c_out * k * k + 2 * c_out

    kernel = {"conv3x3-bn-relu": 3, "conv1x1-bn-relu": 1, "maxpool3x3": 0}
    p = spec.pruned()
    m, n = p.matrix, p.num_vertices
    total, c_in = conv_bn(3, width, 3), width
    for s in range(num_stacks):
        c_out = width * 2 ** s
        for _ in range(modules_per_stack):
            ch = vertex_channels(m, c_in, c_out)
            total += sum(conv_bn(c_in, ch[v], 1) for v in range(1, n) if m[0][v])
            total += sum(conv_bn(ch[v], ch[v], kernel[p.ops[v]]) for v in range(1, n - 1) if kernel[p.ops[v]])
            c_in = c_out
    return total + c_in * classes + classes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=str(DEFAULT), help="NAS-Bench-101 architecture list (JSON)")
    p.add_argument("--json", help="write {id: params} here")
    args = p.parse_args(argv)

    import torch

    from search_spaces import get_space
    from unnas.study.archs import load_archs
    from unnas.tasks.base import ClassifierHead

    torch.set_num_threads(1)
    space = get_space("nasbench101")
    counts = {}
    for a in load_archs(args.archs, space):
        net = space.build_network(a.genotype, lambda c: ClassifierHead(c, 10), 10, 3, 128, 0, "cifar",
                                  num_stacks=3, modules_per_stack=3)
        n = sum(t.numel() for t in net.parameters())
        if n != formula_params(a.genotype):
            raise SystemExit(f"{a.id}: modules give {n} parameters, the closed form {formula_params(a.genotype)}")
        counts[a.id] = n
    order = sorted(counts, key=lambda k: (counts[k], k))
    values = [counts[k] for k in order]
    print(f"{len(values)} specs, width 128, 3 stacks x 3 modules, 10 classes (modules = closed form for every spec)")
    print(f"min {values[0]:,} ({order[0]})  median {statistics.median(values):,.0f}  max {values[-1]:,} ({order[-1]})")
    print(f"mean {statistics.mean(values):,.0f}; quartiles {values[len(values) // 4]:,} / {values[3 * len(values) // 4]:,}")
    for k in ("000907", "000961", "004346", order[len(order) // 2]):
        if k in counts:
            print(f"  {k}: {counts[k]:,}")
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
