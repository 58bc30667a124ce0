"""Parameters and multiply-adds of a genotype's evaluation network.

  python tools/info.py DARTS_V2                          # CIFAR-10 network, width 36, depth 20
  python tools/info.py DARTS_V2 --dataset imagenet       # mobile setting: depth 14, width per genotype (48)
  python tools/info.py unnas_cityscapes_seg --dataset cityscapes   # depth 12, ASPP, 1025x2049 input
  python tools/info.py runs/search/jig_synthetic/genotype.json --dataset imagenet --width 46
  python tools/info.py --list                            # zoo names with their UnNAS eval widths

Convention: MACs are fvcore's FlopCountAnalysis totals, which count one fused multiply-add as one
flop (the "FLOPs"/"multi-adds" that DARTS and UnNAS report). Parameters exclude the auxiliary head
(DARTS' convention); the "with aux" line adds it (its MACs are only spent in training).
"""
from __future__ import annotations

import argparse
import json
import sys

from search_spaces.darts.zoo import EVAL_SETTINGS
from unnas.cli import run_reporting_errors

PROG = "info.py"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("genotype", nargs="?", help="zoo name, genotype file or Genotype(...) string")
    p.add_argument("--dataset", choices=sorted(EVAL_SETTINGS), default="cifar10")
    p.add_argument("--width", type=int, help="initial channels (default: the genotype's UnNAS eval width, or 36/48/82)")
    p.add_argument("--depth", type=int, help="cells (default 20 / 14 / 12)")
    p.add_argument("--im-size", type=int, nargs="+", help="input side (or H W); default 32 / 224 / 1025 2049")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the zoo")
    args = p.parse_args(argv)
    return run_reporting_errors(PROG, _run, args, p)


def _run(args, p: argparse.ArgumentParser) -> int:
    from search_spaces.darts import zoo
    from unnas.config import ConfigError

    if args.list:
        for name in zoo.names():
            print(f"{name:24s} imagenet width {zoo.eval_width(name, 'imagenet') or '-'}, "
                  f"cityscapes width {zoo.eval_width(name, 'cityscapes') or '-'}")
        return 0
    if not args.genotype:
        p.print_usage(sys.stderr)
        print(f"{PROG}: error: give a genotype (or --list)", file=sys.stderr)
        return 2
    genotype = zoo.resolve_genotype(args.genotype)

    import torch
    from search_spaces.darts.network import build_network
    from unnas.data import DataInfo
    from unnas.tasks import build_task
    from unnas.train.complexity import complexity

    setting = zoo.eval_setting(args.dataset)
    classes, hw, aux = setting.num_classes, setting.input_hw, setting.aux
    name = zoo.genotype_name(args.genotype)   # a zoo name, or a release YAML naming one
    width = args.width or (name and zoo.eval_width(name, args.dataset)) or setting.width
    depth = args.depth or setting.depth
    if args.im_size:
        hw = (args.im_size[0], args.im_size[-1])
    if width < 2 or width % 2 or depth < 1:
        raise ConfigError("--width must be an even number >= 2 and --depth >= 1")
    info = DataInfo(num_classes=classes, image_size=hw[0], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    dense_labels=setting.task == "seg")
    task = build_task(setting.task, info)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    net = build_network(genotype, task.build_head, classes, 3, width, depth, setting.stem, task.single_reduction, aux)
    c = complexity(net, torch.zeros(1, 3, *hw))
    res = {"genotype": name or repr(genotype), "dataset": args.dataset, "width": width, "depth": depth,
           "input": list(hw), "classes": classes, **c,
           "convention": "params exclude the aux head; MACs = fvcore flops (1 fused multiply-add = 1), one image, eval mode"}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['genotype']} on {args.dataset}: width {width}, depth {depth}, input {hw[0]}x{hw[1]}, {classes} classes")
    print(f"  params {c['params'] / 1e6:.3f}M   MACs {c['macs'] / 1e6:.1f}M   (no aux head)")
    if aux:
        print(f"  params {(c['params'] + c['params_aux']) / 1e6:.3f}M   MACs {(c['macs'] + c['macs_aux']) / 1e6:.1f}M"
              f"   (with the training-only aux head)")
    print("  MACs: fvcore FlopCountAnalysis, one fused multiply-add counted as one flop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
