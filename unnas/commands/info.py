"""Parameters and multiply-adds of a genotype's evaluation network (DARTS, or a NAS-Bench-101 spec).

  python tools/info.py DARTS_V2                          # CIFAR-10 network, width 36, depth 20
  python tools/info.py DARTS_V2 --dataset imagenet       # mobile setting: depth 14, width per genotype (48)
  python tools/info.py unnas_cityscapes_seg --dataset cityscapes   # depth 12, ASPP, 1025x2049 input
  python tools/info.py runs/search/jig_synthetic/genotype.json --dataset imagenet --width 46
  python tools/info.py --list                            # zoo names with their UnNAS eval widths
  python tools/info.py MODEL.SPACE nasbench101 '{"matrix": [[0, 1, 1], [0, 0, 1], [0, 0, 0]], "ops": ["input", "conv3x3-bn-relu", "output"]}'
  python tools/info.py --space nasbench101 spec.json --dataset imagenet    # release ImageNet net: 3 stacks x 4 modules
  python tools/info.py --space nasbench101 spec.json MODEL.NUM_STACKS 2 MODEL.MODULES_PER_STACK 5

KEY VALUE overrides: MODEL.SPACE (as --space), MODEL.WIDTH, MODEL.DEPTH and the space's own keys
(nasbench101: MODEL.NUM_STACKS, MODEL.MODULES_PER_STACK); unset ones take the data set's release
setting (NAS-Bench-101: width 128, 3 stacks of 3 modules on CIFAR-10, of 4 on ImageNet).

Convention: MACs are fvcore's FlopCountAnalysis totals, which count one fused multiply-add as one
flop (the "FLOPs"/"multi-adds" that DARTS and UnNAS report). Parameters exclude the auxiliary head
(DARTS' convention); the "with aux" line adds it (its MACs are only spent in training).
"""
from __future__ import annotations

import argparse
import json
import sys

from search_spaces.darts.zoo import EVAL_SETTINGS
from unnas.cli import add_overrides, command, parse_with_overrides, run_reporting_errors

PROG = "info.py"


@command
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genotype", dest="genotype_flag", metavar="GENOTYPE", help="as the positional GENOTYPE")
    p.add_argument("--space", help="search space: darts (default) or nasbench101 (MODEL.SPACE)")
    p.add_argument("--dataset", choices=sorted(EVAL_SETTINGS), default="cifar10")
    p.add_argument("--width", type=int, help="initial channels (default: the genotype's UnNAS eval width, or 36/48/82)")
    p.add_argument("--depth", type=int, help="cells (default 20 / 14 / 12)")
    p.add_argument("--im-size", type=int, nargs="+", help="input side (or H W); default 32 / 224 / 1025 2049")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the zoo")
    add_overrides(p, "MODEL.SPACE nasbench101")
    args = parse_with_overrides(p, argv)
    return run_reporting_errors(PROG, _run, args, p)


_KEYS = ("MODEL.SPACE", "MODEL.WIDTH", "MODEL.DEPTH")


def _split_args(args) -> tuple[str | None, dict]:
    """The genotype (a positional: the one argument that is not a KEY VALUE pair) and the given
    MODEL.* overrides, checked against the training config's keys and types."""
    from unnas.config import ConfigError, load_cfg
    from unnas.train.config import train_defaults

    rest, given, genotype = list(args.opts), {}, args.genotype_flag
    while rest:
        if rest[0].startswith("MODEL.") and len(rest) >= 2:
            given[rest[0]] = rest[1]
            rest = rest[2:]
        elif genotype is None:
            genotype = rest.pop(0)
        else:
            raise ConfigError(f"unexpected argument {rest[0]!r}; give one genotype and MODEL.* KEY VALUE pairs")
    if args.space:
        given["MODEL.SPACE"] = args.space
    defaults = train_defaults()
    cfg = load_cfg(defaults, None, [x for kv in given.items() for x in kv])   # types and key names
    allowed = set(_KEYS)
    from search_spaces import get_space
    space = get_space(cfg.MODEL.SPACE)
    allowed |= {f"MODEL.{k.upper()}" for k in space.network_options}
    for key in given:
        if key not in allowed:
            raise ConfigError(f"{key} does not change what {PROG} measures; it takes {', '.join(sorted(allowed))}")
    return genotype, {k: cfg.MODEL[k.split(".", 1)[1]] for k in given}


def _run(args, p: argparse.ArgumentParser) -> int:
    from search_spaces.darts import zoo
    from unnas.config import ConfigError

    if args.list:
        for name in zoo.names():
            print(f"{name:24s} imagenet width {zoo.eval_width(name, 'imagenet') or '-'}, "
                  f"cityscapes width {zoo.eval_width(name, 'cityscapes') or '-'}")
        return 0
    text, given = _split_args(args)
    if not text:
        p.print_usage(sys.stderr)
        print(f"{PROG}: error: give a genotype (or --list)", file=sys.stderr)
        return 2
    from search_spaces import get_space
    space = get_space(given.get("MODEL.SPACE", "darts"))
    genotype = space.resolve(text)

    import torch
    from unnas.data import DataInfo
    from unnas.tasks import build_task
    from unnas.train.complexity import complexity

    try:
        setting = space.eval_setting(args.dataset)
    except KeyError as exc:
        raise ConfigError(f"--dataset: {exc.args[0]}") from None
    classes, hw, aux = setting.num_classes, setting.input_hw, setting.aux and space.has_aux_head
    name = zoo.genotype_name(text) if space.name == "darts" else None   # a zoo name, for the header line
    width = args.width or given.get("MODEL.WIDTH") or space.eval_width(text, args.dataset) or setting.width
    depth = args.depth or given.get("MODEL.DEPTH") or setting.depth
    options = {k: given.get(f"MODEL.{k.upper()}", getattr(setting, "options", {}).get(k)) for k in space.network_options}
    if args.im_size:
        hw = (args.im_size[0], args.im_size[-1])
    if width < 2 or width % 2 or depth < 1:
        raise ConfigError("--width must be an even number >= 2 and --depth >= 1")
    info = DataInfo(num_classes=classes, image_size=hw[0], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    dense_labels=setting.task == "seg")
    task = build_task(setting.task, info)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    net = space.build_network(genotype, task.build_head, classes, 3, width, depth, setting.stem, task.single_reduction,
                              aux, **options)
    c = complexity(net, torch.zeros(1, 3, *hw))
    res = {"genotype": name or repr(genotype), "space": space.name, "dataset": args.dataset, "width": width,
           "depth": depth, **options, "input": list(hw), "classes": classes, **c,
           "convention": "params exclude the aux head; MACs = fvcore flops (1 fused multiply-add = 1), one image, eval mode"}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['genotype']} on {args.dataset}: width {width}, {space.shape_text(depth, **options)}, "
          f"input {hw[0]}x{hw[1]}, {classes} classes")
    print(f"  params {c['params'] / 1e6:.3f}M   MACs {c['macs'] / 1e6:.1f}M   (no aux head)")
    if aux:
        print(f"  params {(c['params'] + c['params_aux']) / 1e6:.3f}M   MACs {(c['macs'] + c['macs_aux']) / 1e6:.1f}M"
              f"   (with the training-only aux head)")
    print("  MACs: fvcore FlopCountAnalysis, one fused multiply-add counted as one flop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
