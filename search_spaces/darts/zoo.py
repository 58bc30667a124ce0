"""Named genotypes (published cells and the 12 UnNAS cells) and ``resolve_genotype``.

The cells are data, written in the short notation of docs (``s3`` = sep_conv_3x3, ...): per cell a
string of nodes separated by ``;``, each node two ``op(input)`` terms, in the stored order of the
original releases (DARTS ``genotypes.py``, PC-DARTS, P-DARTS, UnNAS ``genotypes.py``).

Names are looked up case-insensitively; the UnNAS release keys (``darts_v2``, ``nas``,
``pcdarts_c10``, ``unnas_imagenet_rot``, ...) are aliases. ``EVAL_SETTINGS`` is the evaluation
network of each data set's paper recipe (DARTS CIFAR-10: width 36, depth 20; ImageNet-1K mobile
classification: depth 14; Cityscapes segmentation: depth 12) and ``EVAL_WIDTHS`` the UnNAS
evaluation-phase widths of each genotype on the last two; :func:`eval_width` combines them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .genotype import Genotype, GenotypeError, strip_assignment

_OPS = {"s3": "sep_conv_3x3", "s5": "sep_conv_5x5", "s7": "sep_conv_7x7", "d3": "dil_conv_3x3",
        "d5": "dil_conv_5x5", "mp3": "max_pool_3x3", "ap3": "avg_pool_3x3", "skip": "skip_connect",
        "zero": "none", "c71": "conv_7x1_1x7"}

D4 = "2,3,4,5"
# name: (normal, normal concat, reduce, reduce concat, release key)
_TABLE = {
    "NASNet": ("s5(1) s3(0) ; s5(0) s3(0) ; ap3(1) skip(0) ; ap3(0) ap3(0) ; s3(1) skip(1)", "2,3,4,5,6",
               "s5(1) s7(0) ; mp3(1) s7(0) ; ap3(1) s5(0) ; skip(3) ap3(2) ; s3(2) mp3(1)", "4,5,6", "nas"),
    "PNASNet": ("s5(0) mp3(0) ; s7(1) mp3(1) ; s5(1) s3(1) ; s3(4) mp3(1) ; s3(0) skip(1)", "2,3,4,5,6",
                "s5(0) mp3(0) ; s7(1) mp3(1) ; s5(1) s3(1) ; s3(4) mp3(1) ; s3(0) skip(1)", "2,3,4,5,6", "pnas"),
    "AmoebaNet": ("ap3(0) mp3(1) ; s3(0) s5(2) ; s3(0) ap3(3) ; s3(1) skip(1) ; skip(0) ap3(1)", "4,5,6",
                  "ap3(0) s3(1) ; mp3(0) s7(2) ; s7(0) ap3(1) ; mp3(0) mp3(1) ; c71(0) s3(5)", "3,4,6", "amoeba"),
    "DARTS_V1": ("s3(1) s3(0) ; skip(0) s3(1) ; skip(0) s3(1) ; s3(0) skip(2)", D4,
                 "mp3(0) mp3(1) ; skip(2) mp3(0) ; mp3(0) skip(2) ; skip(2) ap3(0)", D4, "darts_v1"),
    "DARTS_V2": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(1) skip(0) ; skip(0) d3(2)", D4,
                 "mp3(0) mp3(1) ; skip(2) mp3(1) ; mp3(0) skip(2) ; skip(2) mp3(1)", D4, "darts_v2"),
    "PDARTS": ("skip(0) d3(1) ; skip(0) s3(1) ; s3(1) s3(3) ; s3(0) d5(4)", D4,
               "ap3(0) s5(1) ; s3(0) d5(2) ; mp3(0) d3(1) ; d3(1) d5(3)", D4, "pdarts"),
    "PC_DARTS_CIFAR": ("s3(1) skip(0) ; s3(0) d3(1) ; s5(0) s3(1) ; ap3(0) d3(1)", D4,
                       "s5(1) mp3(0) ; s5(1) s5(2) ; s3(0) s3(3) ; s3(1) s3(2)", D4, "pcdarts_c10"),
    "PC_DARTS_IMAGENET": ("skip(1) s3(0) ; s3(0) skip(1) ; s3(1) s3(3) ; s3(1) d5(4)", D4,
                          "s3(0) skip(1) ; d5(2) mp3(1) ; s3(2) s3(1) ; s5(0) s3(3)", D4, "pcdarts_in1k"),
    "UNNAS_IMAGENET_CLS": ("s3(1) s3(0) ; s3(1) s3(0) ; s3(0) s3(2) ; s5(1) s3(0)", D4,
                           "mp3(0) skip(1) ; mp3(0) d5(2) ; mp3(0) s3(2) ; s3(4) d5(3)", D4, None),
    "UNNAS_IMAGENET_ROT": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(1) s3(0) ; s3(0) s3(1)", D4,
                           "s3(1) s3(0) ; s3(2) s3(1) ; s3(1) s3(2) ; s3(4) s5(2)", D4, None),
    "UNNAS_IMAGENET_COL": ("skip(0) s3(1) ; s3(1) skip(0) ; s3(0) s3(3) ; s3(0) s3(2)", D4,
                           "mp3(0) s3(1) ; mp3(0) s3(1) ; mp3(0) s5(3) ; mp3(0) s3(4)", D4, None),
    "UNNAS_IMAGENET_JIG": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(0) s3(3) ; s3(1) s5(0)", D4,
                           "s5(0) s3(1) ; s3(0) s3(1) ; s3(0) s3(1) ; s5(0) s3(1)", D4, None),
    "UNNAS_IMAGENET22K_CLS": ("s3(1) skip(0) ; s3(1) s3(2) ; s3(1) s3(2) ; s3(1) s3(0)", D4,
                              "mp3(0) mp3(1) ; d5(2) mp3(0) ; d5(3) d5(2) ; d5(4) d5(3)", D4, None),
    "UNNAS_IMAGENET22K_ROT": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(0) s3(1) ; s3(0) s3(1)", D4,
                              "mp3(0) s5(1) ; d5(2) s5(0) ; d5(3) s3(2) ; s3(4) s3(3)", D4, None),
    "UNNAS_IMAGENET22K_COL": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(2) s3(1) ; s3(3) s3(0)", D4,
                              "mp3(0) skip(1) ; d5(2) s3(0) ; s3(3) s3(0) ; s3(4) s5(1)", D4, None),
    "UNNAS_IMAGENET22K_JIG": ("s3(0) s3(1) ; s3(0) s3(1) ; s3(1) s3(0) ; s3(0) s3(4)", D4,
                              "s5(0) skip(1) ; s5(0) s3(2) ; s5(0) s5(3) ; s5(0) s5(4)", D4, None),
    "UNNAS_CITYSCAPES_SEG": ("skip(0) s5(1) ; s3(1) s3(0) ; s3(0) s3(1) ; s3(0) s3(1)", D4,
                             "s3(0) ap3(1) ; ap3(1) s5(0) ; s3(2) s5(0) ; s3(4) s5(2)", D4, None),
    "UNNAS_CITYSCAPES_ROT": ("s3(1) s3(0) ; s3(2) s3(1) ; s3(0) s3(3) ; s3(1) s3(0)", D4,
                             "mp3(0) s5(1) ; s5(2) s5(1) ; s5(3) d5(2) ; s5(2) s5(0)", D4, None),
    "UNNAS_CITYSCAPES_COL": ("d3(1) s3(0) ; skip(0) s5(2) ; d3(3) skip(0) ; skip(0) s3(1)", D4,
                             "ap3(1) ap3(0) ; ap3(1) ap3(0) ; ap3(1) ap3(0) ; ap3(1) skip(4)", D4, None),
    "UNNAS_CITYSCAPES_JIG": ("d5(1) s5(0) ; s3(0) s3(1) ; s3(0) s3(2) ; s3(0) d5(1)", D4,
                             "ap3(0) skip(1) ; d5(1) d5(2) ; d5(2) d5(0) ; d5(3) d5(2)", D4, None),
}

# UnNAS evaluation-phase widths: (ImageNet-1K cls, depth 14; Cityscapes seg, depth 12).
EVAL_WIDTHS = {
    "DARTS_V2": (48, 82),
    "UNNAS_IMAGENET_CLS": (44, 78), "UNNAS_IMAGENET_ROT": (42, 78),
    "UNNAS_IMAGENET_COL": (46, 80), "UNNAS_IMAGENET_JIG": (42, 78),
    "UNNAS_IMAGENET22K_CLS": (46, 80), "UNNAS_IMAGENET22K_ROT": (42, 78),
    "UNNAS_IMAGENET22K_COL": (42, 78), "UNNAS_IMAGENET22K_JIG": (42, 78),
    "UNNAS_CITYSCAPES_SEG": (44, 80), "UNNAS_CITYSCAPES_ROT": (42, 78),
    "UNNAS_CITYSCAPES_COL": (54, 86), "UNNAS_CITYSCAPES_JIG": (44, 80),
}


@dataclass(frozen=True)
class EvalSetting:
    """The evaluation network of a data set's paper recipe, so tools and tests read one table."""
    num_classes: int
    input_hw: tuple[int, int]  # (H, W) of one test image, as complexity (MACs) is reported
    width: int                 # initial channels when the genotype has no width of its own (EVAL_WIDTHS)
    depth: int                 # cells
    stem: str                  # cifar | imagenet
    aux: bool                  # auxiliary head during training
    task: str                  # cls | seg


EVAL_SETTINGS: dict[str, EvalSetting] = {
    "cifar10": EvalSetting(10, (32, 32), 36, 20, "cifar", True, "cls"),
    "imagenet": EvalSetting(1000, (224, 224), 48, 14, "imagenet", True, "cls"),
    "cityscapes": EvalSetting(19, (1025, 2049), 82, 12, "imagenet", False, "seg"),
}


def eval_setting(dataset: str) -> EvalSetting:
    """The :data:`EVAL_SETTINGS` entry of ``dataset`` (cifar10, imagenet or cityscapes)."""
    try:
        return EVAL_SETTINGS[dataset]
    except KeyError:
        raise KeyError(f"no evaluation setting for data set {dataset!r}; available: "
                       f"{', '.join(EVAL_SETTINGS)}") from None


_TERM = re.compile(r"^([a-z0-9]+)\((\d+)\)$")


def _cell(text: str) -> list[tuple[str, int]]:
    pairs = []
    for node in text.split(";"):
        terms = node.split()
        if len(terms) != 2:
            raise ValueError(f"zoo: node {node!r} must have two terms")
        for t in terms:
            m = _TERM.match(t)
            pairs.append((_OPS[m.group(1)], int(m.group(2))))
    return pairs


def _concat(text: str) -> list[int]:
    return [int(i) for i in text.split(",")]


ZOO: dict[str, Genotype] = {
    name: Genotype(_cell(n), _concat(nc), _cell(r), _concat(rc)) for name, (n, nc, r, rc, _) in _TABLE.items()
}

# lower-case alias -> canonical name
_ALIASES: dict[str, str] = {}
for _name, _row in _TABLE.items():
    _ALIASES[_name.lower()] = _name
    if _row[4]:
        _ALIASES[_row[4]] = _name
    if _name.startswith("UNNAS_"):
        _ALIASES[_name.lower()] = _name
_ALIASES.update({"darts": "DARTS_V2", "pc_darts": "PC_DARTS_CIFAR", "pc_darts_image": "PC_DARTS_IMAGENET",
                 "pc_darts_cifar": "PC_DARTS_CIFAR", "amoeba": "AmoebaNet", "nasnet": "NASNet", "pnas": "PNASNet",
                 "p_darts": "PDARTS"})


def names() -> list[str]:
    return list(ZOO)


def canonical_name(name: str) -> str | None:
    return _ALIASES.get(name.strip().lower().replace("-", "_"))


def get(name: str) -> Genotype:
    key = canonical_name(name)
    if key is None:
        raise GenotypeError(f"unknown genotype name {name!r}; zoo names: {', '.join(names())}")
    return ZOO[key]


def eval_width(name: str, dataset: str) -> int | None:
    """UnNAS evaluation width of a zoo genotype for 'imagenet' or 'cityscapes' (None if the release
    has no evaluation config for it); any CIFAR data set gives the DARTS CIFAR width (36) of every cell."""
    key = canonical_name(name)
    if dataset.startswith("cifar"):
        return EVAL_SETTINGS["cifar10"].width
    if key not in EVAL_WIDTHS:
        return None
    cls_w, seg_w = EVAL_WIDTHS[key]
    return seg_w if dataset == "cityscapes" else cls_w


def _is_file(path: Path) -> bool:
    """``path.is_file()``, but False for a name the system cannot hold (too long, a NUL byte) instead
    of an OSError: a pasted genotype string is not a path."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


RELEASE_SUFFIXES = (".yaml", ".yml")


def read_release_yaml(path: str | Path) -> dict:
    """The mapping of an UnNAS release config file (a GenotypeError line if it is not readable YAML)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        from unnas.config import yaml_problem
        raise GenotypeError(f"{path}: not valid YAML ({yaml_problem(exc)}); fix the file") from None
    if not isinstance(doc, dict):
        raise GenotypeError(f"{path}: does not hold a mapping of config keys; expected an UnNAS config")
    return doc


def release_genotype_name(doc: dict) -> str | None:
    """Our zoo name of an UnNAS config's ``NAS.GENOTYPE`` (``unnas_imagenet_rot`` -> ``UNNAS_IMAGENET_ROT``);
    None when it is ``custom``, absent, or the file holds ``NAS.CUSTOM_GENOTYPE`` without a name."""
    nas = doc.get("NAS") if isinstance(doc, dict) else None
    name = nas.get("GENOTYPE") if isinstance(nas, dict) else None
    if name is None or str(name).strip().lower() == "custom":
        return None
    return canonical_name(str(name))


def release_genotype(doc: dict, source: str = "<config>") -> Genotype:
    """The genotype of an UnNAS sample-based or eval-phase config mapping: ``NAS.GENOTYPE`` (a release
    name, mapped to our zoo) or, when it is ``custom`` (or absent), ``NAS.CUSTOM_GENOTYPE``
    (``[normal, normal_concat, reduce, reduce_concat]``)."""
    nas = doc.get("NAS") if isinstance(doc, dict) else None
    nas = nas if isinstance(nas, dict) else {}
    name, custom = nas.get("GENOTYPE"), nas.get("CUSTOM_GENOTYPE")
    if name is not None and str(name).strip().lower() != "custom":
        key = canonical_name(str(name))
        if key is None:
            raise GenotypeError(f"{source}: NAS.GENOTYPE {name!r} is not a release genotype name; "
                                f"known: {', '.join(release_names())}, custom")
        return ZOO[key]
    if not custom:
        what = "NAS.GENOTYPE custom without NAS.CUSTOM_GENOTYPE" if name is not None else \
            "no NAS.GENOTYPE or NAS.CUSTOM_GENOTYPE (a search-phase config holds no genotype)"
        raise GenotypeError(f"{source}: {what}; expected an UnNAS sample-based or eval-phase config")
    try:
        return Genotype.from_unnas_list(custom)
    except (GenotypeError, TypeError) as exc:
        raise GenotypeError(f"{source}: NAS.CUSTOM_GENOTYPE: {exc}") from None


def release_names() -> list[str]:
    """The UnNAS release's ``GENOTYPES`` keys that our zoo holds (``nas``, ``darts_v2``, ``unnas_imagenet_rot``, ...)."""
    return [row[4] or name.lower() for name, row in _TABLE.items()]


def genotype_name(spec) -> str | None:
    """The zoo name of ``spec``: a zoo name itself, or a release YAML whose ``NAS.GENOTYPE`` names one."""
    if not isinstance(spec, str):
        return None
    key = canonical_name(spec)
    if key is not None:
        return key
    path = Path(spec.strip()).expanduser()
    if path.suffix.lower() in RELEASE_SUFFIXES and _is_file(path):
        try:
            return release_genotype_name(read_release_yaml(path))
        except GenotypeError:
            return None
    return None


def resolve_genotype(spec) -> Genotype:
    """A :class:`Genotype`, a zoo name, a path to a JSON/text genotype file (also a search run's
    ``genotype.json`` or ``summary.json``) or to an UnNAS release config (``ID.yaml`` or an eval-phase
    ``<arch>.yaml``: its ``NAS.GENOTYPE`` / ``NAS.CUSTOM_GENOTYPE``), or a DARTS ``Genotype(...)`` / JSON
    string, also pasted as ``genotype = Genotype(...)`` or ``DARTS_V2 = Genotype(...)``."""
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, dict):
        return Genotype.from_dict(spec.get("genotype", spec))
    text = str(spec).strip()
    if not text:
        raise GenotypeError(f"empty genotype; give a zoo name ({', '.join(names())}), a file or a Genotype(...) string")
    key = canonical_name(text)
    if key is not None:
        return ZOO[key]
    text = strip_assignment(text)
    if text[0] in "{[" or text.startswith("Genotype") or text.startswith("genotypes.Genotype"):
        return Genotype.parse(text)
    path = Path(text).expanduser()
    if _is_file(path):
        if path.suffix.lower() in RELEASE_SUFFIXES:
            return release_genotype(read_release_yaml(path), str(path))
        return Genotype.load(path)
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise GenotypeError(f"unknown genotype {shown!r}: not a zoo name, an existing file or a Genotype(...) string; "
                        f"zoo names: {', '.join(names())}")
