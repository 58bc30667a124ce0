"""The DARTS genotype: an immutable cell description with JSON and DARTS-repr round trips.

A cell with ``n`` intermediate nodes is a list of ``2n`` ``(op, input)`` pairs; pair ``2i`` and
``2i+1`` feed node ``i``. Inputs 0 and 1 are the cell inputs (outputs of cells k-2 and k-1),
``2 + j`` is intermediate node ``j``. This matches DARTS' ``Genotype`` namedtuple, so a genotype
printed by DARTS, PC-DARTS, P-DARTS or UnNAS can be pasted as is.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..errors import ArchitectureError
from .ops import KNOWN_OPS, PRIMITIVES

Cell = tuple[tuple[str, int], ...]


class GenotypeError(ArchitectureError):
    """A genotype that cannot be parsed or is not a valid cell description."""


def _as_cell(pairs, what: str) -> Cell:
    try:
        cell = tuple((str(op), int(idx)) for op, idx in pairs)
    except (TypeError, ValueError) as exc:
        raise GenotypeError(f"{what}: expected a list of (op, input) pairs, got {pairs!r}") from exc
    if not cell or len(cell) % 2:
        raise GenotypeError(f"{what}: needs an even, non-zero number of (op, input) pairs, got {len(cell)}")
    for k, (op, idx) in enumerate(cell):
        if op not in KNOWN_OPS:
            raise GenotypeError(f"{what}: unknown op {op!r} at position {k}; known ops: {sorted(KNOWN_OPS)}")
        node = k // 2
        if not 0 <= idx < node + 2:
            raise GenotypeError(f"{what}: node {node} reads input {idx}, but only inputs 0..{node + 1} exist")
    return cell


def _as_concat(concat, cell: Cell, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(i) for i in concat)
    except (TypeError, ValueError) as exc:
        raise GenotypeError(f"{what}: concat must be a list of state indices, got {concat!r}") from exc
    n_states = len(cell) // 2 + 2
    if not out or any(not 0 <= i < n_states for i in out):
        raise GenotypeError(f"{what}: concat {list(out)} must be non-empty indices below {n_states}")
    return out


@dataclass(frozen=True)
class Genotype:
    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        normal = _as_cell(self.normal, "normal cell")
        reduce = _as_cell(self.reduce, "reduce cell")
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(self, "normal_concat", _as_concat(self.normal_concat, normal, "normal cell"))
        object.__setattr__(self, "reduce_concat", _as_concat(self.reduce_concat, reduce, "reduce cell"))

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Genotype":
        missing = {"normal", "reduce"} - set(d)
        if missing:
            raise GenotypeError(f"genotype dict lacks {sorted(missing)}; expected keys normal, normal_concat, reduce, reduce_concat")
        n_norm = len(d["normal"]) // 2
        n_red = len(d["reduce"]) // 2
        return cls(d["normal"], d.get("normal_concat", range(2, n_norm + 2)),
                   d["reduce"], d.get("reduce_concat", range(2, n_red + 2)))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"not valid JSON: {exc}") from exc

    def __repr__(self) -> str:  # the DARTS namedtuple repr, so it can be pasted into other code
        def cell(c):
            return "[" + ", ".join(f"({op!r}, {idx})" for op, idx in c) + "]"
        return (f"Genotype(normal={cell(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={cell(self.reduce)}, reduce_concat={list(self.reduce_concat)})")

    __str__ = __repr__

    @classmethod
    def from_darts_repr(cls, text: str) -> "Genotype":
        """Parse ``Genotype(normal=[...], normal_concat=[...] | range(2, 6), reduce=..., reduce_concat=...)``."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise GenotypeError(f"cannot parse genotype string: {exc.msg}") from exc
        if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", getattr(tree.func, "attr", None)) == "Genotype"):
            raise GenotypeError("expected a string of the form Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])")
        fields = ["normal", "normal_concat", "reduce", "reduce_concat"]
        values = dict(zip(fields, (_literal(a) for a in tree.args)))
        for kw in tree.keywords:
            if kw.arg not in fields:
                raise GenotypeError(f"unknown Genotype field {kw.arg!r}")
            values[kw.arg] = _literal(kw.value)
        return cls.from_dict(values)

    @classmethod
    def from_unnas_list(cls, custom: Sequence) -> "Genotype":
        """UnNAS ``NAS.CUSTOM_GENOTYPE``: ``[normal, normal_concat, reduce, reduce_concat]``."""
        if len(custom) != 4:
            raise GenotypeError(f"CUSTOM_GENOTYPE must have 4 entries (normal, normal_concat, reduce, reduce_concat), got {len(custom)}")
        return cls(*custom)

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Accept JSON (dict or UnNAS list) or a DARTS ``Genotype(...)`` string, also as pasted from a
        log or a ``genotypes.py`` line (``genotype = Genotype(...)``, ``DARTS_V2 = Genotype(...)``)."""
        text = strip_assignment(text)
        if text.startswith("Genotype") or text.startswith("genotypes.Genotype"):
            return cls.from_darts_repr(text)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError("genotype text is neither JSON nor a DARTS Genotype(...) string") from exc
        if isinstance(obj, dict):
            return cls.from_dict(obj.get("genotype", obj))
        if isinstance(obj, list):
            return cls.from_unnas_list(obj)
        raise GenotypeError(f"unsupported genotype JSON of type {type(obj).__name__}")

    @classmethod
    def load(cls, path: str | Path) -> "Genotype":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise GenotypeError(f"cannot read genotype file {path}: {exc.strerror}") from exc
        try:
            return cls.parse(text)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        from unnas.utils.io import atomic_write_text
        atomic_write_text(path, self.to_json(indent=2) + "\n")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def ops(self) -> list[str]:
        return [op for op, _ in self.normal + self.reduce]

    op_names = ops   # the name every space's architecture answers to (the fake trainer scores it)


# ``NAME = `` before a genotype, with anything before it on the line (a log line's time stamp or
# ``[trainer.py: 200]:``): ``genotype = Genotype(...)`` (DARTS/UnNAS logs), ``DARTS_V2 = Genotype(...)``.
_GENOTYPE_START = re.compile(r"^(?:genotypes\.)?Genotype\s*\(")
_ASSIGNMENT = re.compile(r"^[^=(\"'{]*?\b[A-Za-z_][\w.]{0,99}\s*=\s*(?=(?:genotypes\.)?Genotype\s*\(|[\[{])")


def strip_assignment(text: str) -> str:
    """``text`` without a leading ``NAME =`` (and what precedes it on a log line), stripped."""
    text = str(text).strip()
    if _GENOTYPE_START.match(text):
        return text
    m = _ASSIGNMENT.match(text)
    return text[m.end():].strip() if m else text


def _literal(node):
    """Evaluate list/tuple/str/int literals and ``range(a, b)`` without eval()."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        return list(range(*[_literal(a) for a in node.args]))
    try:
        return ast.literal_eval(node)
    except ValueError as exc:
        raise GenotypeError(f"unsupported expression in genotype: {ast.unparse(node)}") from exc


def edge_index(node: int, inp: int) -> int:
    """Row of the alpha tensor for the edge ``inp -> node`` (node-major enumeration)."""
    return sum(2 + i for i in range(node)) + inp


def num_edges(steps: int = 4) -> int:
    return sum(2 + i for i in range(steps))


def derive_cell(weights: torch.Tensor, primitives: Sequence[str] = PRIMITIVES, steps: int = 4,
                k: int = 2) -> Cell:
    """DARTS parse: per node keep the ``k`` incoming edges with the largest non-`none` weight.

    Ties are broken by the lower index (stable sort), the best non-`none` op per kept edge is
    chosen (first index wins ties), and the pairs are emitted in order of decreasing strength.
    """
    w = weights.detach().to("cpu", torch.float64).tolist()
    none_idx = primitives.index("none") if "none" in primitives else None
    cand = [i for i in range(len(primitives)) if i != none_idx]
    cell = []
    start = 0
    for node in range(steps):
        n_in = node + 2
        rows = w[start:start + n_in]
        strength = [max(rows[j][c] for c in cand) for j in range(n_in)]
        order = sorted(range(n_in), key=lambda j: -strength[j])[:k]
        for j in order:
            best = max(cand, key=lambda c: (rows[j][c], -c))
            cell.append((primitives[best], j))
        start += n_in
    return tuple(cell)


def limit_skip_connections(weights: torch.Tensor, primitives: Sequence[str] = PRIMITIVES, steps: int = 4,
                           max_skips: int = 2) -> tuple[torch.Tensor, list[int]]:
    """P-DARTS' limit on the skip connections of a derived cell (chenxin061/pdarts
    ``train_search.py``: ``check_sk_number``, ``delete_min_sk_prob``, ``keep_1_on``, ``keep_2_branches``).

    While the cell derived from ``weights`` (:func:`derive_cell`) has more than ``max_skips``
    ``skip_connect`` edges, the weight of the kept skip connection with the lowest weight (ties: the
    lower edge row) is set to 0 and the cell is derived again: that edge takes its next-best op
    other than ``none``, and its node re-selects its two inputs with the edge's new strength. A skip
    is replaced only on an edge with another op of positive weight (not pruned away); when none is
    left, the limit stops there. Returns the (float64, CPU) weights to derive from and the rows whose
    skip weight was zeroed, in order.
    """
    w = weights.detach().to("cpu", torch.float64).clone()
    replaced: list[int] = []
    if "skip_connect" not in primitives:
        return w, replaced
    skip = primitives.index("skip_connect")
    others = [c for c, p in enumerate(primitives) if p not in ("none", "skip_connect")]
    while True:
        cell = derive_cell(w, primitives, steps)
        rows = [edge_index(k // 2, j) for k, (op, j) in enumerate(cell) if op == "skip_connect"]
        if len(rows) <= max_skips:
            break
        candidates = [r for r in rows if others and float(w[r, others].max()) > 0]
        if not candidates:
            break
        row = min(candidates, key=lambda r: (float(w[r, skip]), r))
        w[row, skip] = 0.0
        replaced.append(row)
    return w, replaced


def genotype_from_weights(w_normal: torch.Tensor, w_reduce: torch.Tensor,
                          primitives: Sequence[str] = PRIMITIVES, steps: int = 4,
                          max_skips_normal: int = 0) -> Genotype:
    """Genotype from per-edge op strengths (softmaxed alphas, or alphas times edge weights).
    ``max_skips_normal > 0``: at most that many skip connections in the normal cell
    (:func:`limit_skip_connections`, P-DARTS' rule); 0 = no limit."""
    concat = list(range(2, steps + 2))
    if max_skips_normal > 0:
        w_normal, _ = limit_skip_connections(w_normal, primitives, steps, max_skips_normal)
    return Genotype(derive_cell(w_normal, primitives, steps), concat, derive_cell(w_reduce, primitives, steps), concat)


def derive_genotype(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor,
                    primitives: Sequence[str] = PRIMITIVES, steps: int = 4) -> Genotype:
    """Genotype from architecture logits (softmax is applied here, as in DARTS)."""
    return genotype_from_weights(torch.softmax(alpha_normal.detach().float(), dim=-1),
                                 torch.softmax(alpha_reduce.detach().float(), dim=-1), primitives, steps)


def genotypes_from_lines(lines: Iterable[str]) -> list[Genotype]:
    return [Genotype.parse(line) for line in lines if line.strip()]
