"""Architecture lists for a study: ids bound to genotypes, loaded from and written to files.

Formats read by :func:`load_archs`:

* our JSON list (written by ``tools/rank_corr.py sample``) and the shared
  ``darts_cifar10_500.json``: ``{"space": ..., "archs": [{"id", "normal", "normal_concat",
  "reduce", "reduce_concat"}, ...]}`` (a bare list of such entries, or of ``{"id", "genotype"}``,
  is accepted too);
* a directory of UnNAS sample-based configs (``ID.yaml`` with ``NAS.CUSTOM_GENOTYPE``; eval-phase
  configs naming a release genotype in ``NAS.GENOTYPE`` work too; the file stem is the id, searched
  recursively so ``configs/sample_based/darts/cifar10/cls`` or its parent both work; the same id
  found twice must hold the same genotype);
* a text file with one genotype per line (JSON or a DARTS ``Genotype(...)`` string), ids a0000...

The same formats hold NAS-Bench-101 specs (``MODEL.SPACE nasbench101``): entries ``{"id", "matrix",
"ops"}`` (the shared ``nasbench101_cifar10_500.json``), a directory of the release's NAS-Bench configs
(``ID.yaml`` with ``NAS.MATRIX``/``NAS.OPS``), or one JSON spec per line. What an entry means is the
space's to say (``space.arch_from_value`` and friends); without a space, DARTS.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from search_spaces import SPACES, get_space
from search_spaces.darts.genotype import Genotype, GenotypeError
from search_spaces.errors import ArchitectureError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Arch:
    id: str
    genotype: Genotype     # or any space's architecture: to_dict(), equality, hashable (a NAS-Bench-101 CellSpec)

    def to_dict(self) -> dict:
        return {"id": self.id, **self.genotype.to_dict()}


def make_id(index: int, prefix: str = "a", digits: int = 4) -> str:
    return f"{prefix}{index:0{digits}d}"


def genotype_key(g) -> str:
    """Canonical text of a genotype (of any space), used to match tables keyed by genotype."""
    return json.dumps(g.to_dict(), separators=(",", ":"))


def _check_ids(archs: Sequence[Arch], source: str) -> list[Arch]:
    seen = {}
    for a in archs:
        if not ID_RE.match(a.id):
            raise GenotypeError(f"{source}: architecture id {a.id!r} must be 1-64 letters, digits, '_', '-' or '.'")
        if a.id in seen and seen[a.id] != a.genotype:
            raise GenotypeError(f"{source}: id {a.id} appears twice with different genotypes")
        seen[a.id] = a.genotype
    out, done = [], set()
    for a in archs:
        if a.id not in done:
            out.append(a)
            done.add(a.id)
    if not out:
        raise GenotypeError(f"{source}: no architectures found; pass a JSON list of architectures, a text file "
                            "of genotypes (one per line) or a directory of UnNAS YAML configs")
    return out


def _entry_to_arch(entry, k: int, source: str, space) -> Arch:
    if not isinstance(entry, dict):
        raise GenotypeError(f"{source}: entry {k} must be an object with id and genotype fields, got {type(entry).__name__}")
    arch_id = str(entry.get("id", make_id(k)))
    geno = entry.get("genotype", entry)
    try:
        g = space.arch_from_value(geno)
    except ArchitectureError as exc:
        raise type(exc)(f"{source}: architecture {arch_id}: {exc}") from None
    return Arch(arch_id, g)


def archs_from_json(obj, source: str = "<json>", space=None) -> list[Arch]:
    space = space if space is not None else get_space("darts")
    stated = obj.get("space") if isinstance(obj, dict) else None
    if isinstance(stated, str) and stated in SPACES and SPACES.canonical(stated) != SPACES.canonical(space.name):
        raise ArchitectureError(f"{source} holds {stated} architectures but the space is {space.name}; set "
                                f"MODEL.SPACE {SPACES.canonical(stated)}")
    entries = obj.get("archs") if isinstance(obj, dict) else obj
    if not isinstance(entries, list):
        raise GenotypeError(f"{source}: expected a JSON object with an 'archs' list (or a list of architectures)")
    return _check_ids([_entry_to_arch(e, k, source, space) for k, e in enumerate(entries)], source)


def _load_yaml_dir(path: Path, space) -> list[Arch]:
    import yaml

    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise GenotypeError(f"{path}: directory holds no .yaml configs; expected UnNAS sample-based configs "
                            "(ID.yaml with NAS.CUSTOM_GENOTYPE)")
    archs = []
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text())
        except (OSError, yaml.YAMLError) as exc:
            from unnas.config import yaml_problem
            why = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else exc.strerror or exc
            raise GenotypeError(f"{f}: cannot read YAML ({why}); fix or remove the file") from None
        if not isinstance(doc, dict):
            raise GenotypeError(f"{f}: no NAS.CUSTOM_GENOTYPE; expected an UnNAS sample-based config")
        archs.append(Arch(f.stem, space.arch_from_release_config(doc, str(f))))   # DARTS: NAS.CUSTOM_GENOTYPE or
        #                                                                     a NAS.GENOTYPE name; NAS-Bench: NAS.MATRIX/OPS
    return _check_ids(archs, str(path))


def load_archs(path: str | Path, space=None) -> list[Arch]:
    """Read an architecture list (see module doc) as architectures of ``space`` (None: DARTS), each
    validated against it."""
    path = Path(path)
    reader = space if space is not None else get_space("darts")
    if path.is_dir():
        archs = _load_yaml_dir(path, reader)
    elif not path.is_file():
        raise GenotypeError(f"architecture list {path} not found; pass a JSON list, a text file of genotypes "
                            "or a directory of UnNAS YAML configs")
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise GenotypeError(f"cannot read {path}: {exc.strerror}") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            obj, err = None, exc
        if isinstance(obj, dict) or (isinstance(obj, list) and obj and all(isinstance(e, dict) for e in obj)):
            archs = archs_from_json(obj, str(path), reader)
        elif text.lstrip().startswith("{") and err.msg != "Extra data":   # "Extra data": one JSON spec per line
            raise GenotypeError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})")
        else:
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            try:
                parsed = [Arch(make_id(k), reader.parse(ln)) for k, ln in enumerate(lines)]
            except ArchitectureError as exc:
                raise type(exc)(f"{path}: {exc}") from None
            archs = _check_ids(parsed, str(path))
    if space is not None:
        for a in archs:
            try:
                space.validate(a.genotype)
            except ArchitectureError as exc:
                raise type(exc)(f"{path}: architecture {a.id}: {exc}") from None
    return archs


def save_archs(archs: Iterable[Arch], path: str | Path, space: str = "darts", source: str = "", **extra) -> None:
    from unnas.utils.io import atomic_write_text

    doc = {"space": space, "source": source, **extra, "archs": [a.to_dict() for a in archs]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def parse_genotype_key(text: str) -> Genotype | None:
    """A genotype written as JSON, a DARTS repr, or the release's ``str(normal + reduce + nc + rc)``."""
    text = text.strip()
    try:
        return Genotype.parse(text)
    except GenotypeError:
        pass
    try:
        flat = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(flat, (list, tuple)):
        pairs = [x for x in flat if isinstance(x, (list, tuple))]
        ints = [x for x in flat if isinstance(x, int)]
        if pairs and len(pairs) % 2 == 0 and len(ints) % 2 == 0 and len(pairs) + len(ints) == len(flat):
            half, ih = len(pairs) // 2, len(ints) // 2
            try:
                return Genotype(pairs[:half], ints[:ih], pairs[half:], ints[ih:])
            except GenotypeError:
                return None
    return None
