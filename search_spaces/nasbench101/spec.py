"""A NAS-Bench-101 cell ("module", Ying et al., ICML 2019): an adjacency matrix plus one op per vertex.

Vertex 0 is the input, the last vertex the output, the ones between run an op of :data:`OPS`;
``matrix[i][j] = 1`` is an edge i -> j, so a DAG in topological order is a strictly
upper-triangular 0/1 matrix. NAS-Bench-101's space: at most :data:`MAX_VERTICES` vertices and
:data:`MAX_EDGES` edges, counted on the spec as given (before pruning, as the benchmark's
``api._check_spec``), and the input must reach the output.

Pruning: a vertex not on some input -> output path computes nothing the output sees, so
:meth:`CellSpec.pruned` deletes it (NAS-Bench-101's ``ModelSpec._prune``); the network is always
built from the pruned spec, and two specs that prune to isomorphic graphs are the same network.

Hash (:meth:`CellSpec.graph_hash`): the isomorphism-invariant fingerprint of NAS-Bench-101's
``graph_util.hash_module``, computed by the same rule so it matches the benchmark's keys: every
vertex starts from the MD5 of ``(out-degree, in-degree, label)`` (labels: input -1, output -2,
ops by their index in :data:`OPS`), then, as many rounds as there are vertices, becomes the MD5 of
its in-neighbours' sorted hashes, its out-neighbours' sorted hashes and its own; the spec's hash
is the MD5 of the sorted final hashes. Relabelling the interior vertices leaves it unchanged.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

from ..errors import ArchitectureError

INPUT, OUTPUT = "input", "output"
CONV3X3, CONV1X1, MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)   # the benchmark's canonical order: the hash's labels are these indices
MAX_VERTICES = 7
MAX_EDGES = 9

Matrix = tuple[tuple[int, ...], ...]


class SpecError(ArchitectureError):
    """A NAS-Bench-101 spec that is not in the space; the message names the fault and the fix."""


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _as_matrix(matrix) -> Matrix:
    try:
        rows = tuple(tuple(int(x) for x in row) for row in matrix)
    except (TypeError, ValueError):
        raise SpecError(f"the matrix must be a list of rows of 0/1 integers, got {matrix!r}") from None
    n = len(rows)
    if n < 2 or any(len(r) != n for r in rows):
        raise SpecError(f"the matrix must be square with at least 2 rows (input and output), got row lengths "
                        f"{[len(r) for r in rows]}")
    if any(x not in (0, 1) for r in rows for x in r):
        raise SpecError("the matrix may hold only 0 and 1 (1 = an edge from the row's vertex to the column's)")
    return rows


def _reachable(matrix: Matrix, start: int, forward: bool) -> set[int]:
    """Vertices reachable from ``start`` along edges (``forward``) or against them."""
    n = len(matrix)
    seen, todo = {start}, [start]
    while todo:
        v = todo.pop()
        for w in range(n):
            edge = matrix[v][w] if forward else matrix[w][v]
            if edge and w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


@dataclass(frozen=True)
class CellSpec:
    """An immutable, validated NAS-Bench-101 cell. ``matrix`` and ``ops`` are kept as given
    (``pruned()`` is what the network is built from); equality is on the given form, the
    isomorphism class is :meth:`graph_hash`."""

    matrix: Matrix
    ops: tuple[str, ...]

    def __post_init__(self):
        matrix = _as_matrix(self.matrix)
        if isinstance(self.ops, str) or not isinstance(self.ops, Sequence):
            raise SpecError(f"ops must be a list of vertex ops from input to output, got {self.ops!r}")
        ops = tuple(str(op) for op in self.ops)
        n = len(matrix)
        if len(ops) != n:
            raise SpecError(f"the matrix has {n} vertices but ops lists {len(ops)}; give one op per vertex")
        if n > MAX_VERTICES:
            raise SpecError(f"the spec has {n} vertices; NAS-Bench-101 allows at most {MAX_VERTICES} (input and output included)")
        if ops[0] != INPUT or ops[-1] != OUTPUT:
            raise SpecError(f"ops must start with {INPUT!r} and end with {OUTPUT!r}, got {list(ops)}")
        for k, op in enumerate(ops[1:-1], start=1):
            if op not in OPS:
                raise SpecError(f"vertex {k} has op {op!r}; interior vertices take one of {list(OPS)}")
        for i in range(n):
            for j in range(i + 1):
                if matrix[i][j]:
                    raise SpecError(f"the matrix has an edge {i} -> {j} on or below the diagonal; it must be strictly "
                                    "upper triangular (edges only from a vertex to a later one)")
        edges = sum(map(sum, matrix))
        if edges > MAX_EDGES:
            raise SpecError(f"the spec has {edges} edges; NAS-Bench-101 allows at most {MAX_EDGES}")
        if n - 1 not in _reachable(matrix, 0, forward=True):
            raise SpecError("the output cannot be reached from the input (disconnected graph); add an edge path "
                            "from vertex 0 to the last vertex")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "ops", ops)

    # ---- structure ------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return len(self.matrix)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def pruned(self) -> "CellSpec":
        """The spec without the vertices that lie on no input -> output path (renumbered in order)."""
        n = self.num_vertices
        keep = sorted(_reachable(self.matrix, 0, True) & _reachable(self.matrix, n - 1, False))
        if len(keep) == n:
            return self
        return CellSpec(tuple(tuple(self.matrix[i][j] for j in keep) for i in keep), tuple(self.ops[i] for i in keep))

    def graph_hash(self) -> str:
        """Isomorphism-invariant MD5 of the pruned spec (see the module doc); equal to NAS-Bench-101's."""
        spec = self.pruned()
        m, n = spec.matrix, spec.num_vertices
        labels = [-1] + [OPS.index(op) for op in spec.ops[1:-1]] + [-2]
        out_deg = [sum(m[v]) for v in range(n)]
        in_deg = [sum(m[u][v] for u in range(n)) for v in range(n)]
        hashes = [_md5(str((out_deg[v], in_deg[v], labels[v]))) for v in range(n)]
        for _ in range(n):
            hashes = [_md5("".join(sorted(hashes[u] for u in range(n) if m[u][v])) + "|"
                           + "".join(sorted(hashes[w] for w in range(n) if m[v][w])) + "|" + hashes[v])
                      for v in range(n)]
        return _md5(str(sorted(hashes)))

    def op_names(self) -> list[str]:
        """The interior vertices' ops (what the fake trainer scores)."""
        return list(self.ops[1:-1])

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"matrix": [list(r) for r in self.matrix], "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: dict) -> "CellSpec":
        if not isinstance(d, dict) or "matrix" not in d or "ops" not in d:
            raise SpecError(f"a NAS-Bench-101 spec is an object with 'matrix' and 'ops', got {str(d)[:80]!r}")
        return cls(d["matrix"], d["ops"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> "CellSpec":
        """A spec written as JSON, ``{"matrix": [[...]], "ops": [...]}``, or as ``repr`` prints it,
        ``CellSpec(matrix=[[...]], ops=[...])``."""
        text = str(text).strip()
        if text.startswith("CellSpec"):
            return cls._from_repr(text)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise SpecError('a NAS-Bench-101 spec is JSON like {"matrix": [[0, 1], [0, 0]], "ops": ["input", '
                            f'"output"]}} or CellSpec(matrix=..., ops=...), got {text[:80]!r}') from None
        return cls.from_dict(obj.get("genotype", obj) if isinstance(obj, dict) else obj)

    @classmethod
    def _from_repr(cls, text: str) -> "CellSpec":
        try:
            call = ast.parse(text, mode="eval").body
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "CellSpec"):
                raise ValueError
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            return cls(*args, **kwargs)
        except (SyntaxError, ValueError, TypeError):
            raise SpecError(f"cannot read {text[:80]!r}; write CellSpec(matrix=[[...]], ops=[...]) with literal "
                            "lists") from None

    def __repr__(self) -> str:
        # A call, not a literal: the config system reads a literal (JSON) value as a dict, so this is
        # the text MODEL.GENOTYPE keeps through a stored config; it pastes back into --genotype.
        return f"CellSpec(matrix={[list(r) for r in self.matrix]}, ops={list(self.ops)})"

    __str__ = __repr__
