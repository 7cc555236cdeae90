"""The AST mutator of benchmarks/mutation.py: one small syntactic change per mutant.

Operators: comparison swaps (boundary `<`/`<=`, `>`/`>=`; negation `<`/`>=`, `<=`/`>`, `==`/`!=`,
`in`/`not in`, `is`/`is not`), `and`/`or`, `not` dropped, arithmetic and bitwise operators swapped
(also in augmented assignments), integer constants n -> n+1, n-1, 0, and `return x` -> `return
not x` in functions annotated `-> bool`. Left alone: docstrings, type hints, `raise` statements,
f-strings, logging and print calls, `if TYPE_CHECKING:` blocks, booleans and floats.

A site is found by its ordinal in one fixed traversal, so a mutant is made by parsing the module
again, walking to the same ordinal and changing that node (then `ast.unparse`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_COMPARE = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
_BINARY = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
    ast.BitXor: ast.BitOr,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Div: "/",
    ast.Mod: "%",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.And: "and",
    ast.Or: "or",
}
_QUIET_CALLS = {"print", "debug", "info", "warning", "error", "exception", "log"}


@dataclass(frozen=True)
class Site:
    ordinal: int  # the node's place in the traversal
    variant: int  # which replacement at that node
    line: int
    end_line: int
    label: str  # e.g. "`<` -> `<=`"


@dataclass(frozen=True)
class Mutant:
    id: str  # "<module stem>-<n>"
    module: str  # dotted name, e.g. bench.sim.token_decoder
    path: Path
    site: Site
    source: str  # the mutated module

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.site.line}"


class _Walker(ast.NodeTransformer):
    """Visits the mutable nodes in a fixed order; in apply mode replaces the one at `target`."""

    def __init__(self, target: tuple[int, int] | None = None) -> None:
        self.target = target
        self.sites: list[Site] = []
        self.ordinal = 0
        self._bool_returns = False

    # -- what is not visited ------------------------------------------------------------------
    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # a docstring
        return self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        return node if name in _QUIET_CALLS else self.generic_visit(node)

    def visit_If(self, node: ast.If) -> ast.AST:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return node
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node  # its annotation

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        outer = self._bool_returns
        self._bool_returns = isinstance(node.returns, ast.Name) and node.returns.id == "bool"
        node.args = self.visit(node.args)
        node.body = [self.visit(s) for s in node.body]
        self._bool_returns = outer
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        outer, self._bool_returns = self._bool_returns, False
        visited = self.generic_visit(node)
        self._bool_returns = outer
        return visited

    # -- the operators --------------------------------------------------------------------------
    def _site(self, node: ast.AST, labels: list[str]) -> int | None:
        """Record the node's variants; in apply mode, the variant to apply here (else None)."""
        ordinal, self.ordinal = self.ordinal, self.ordinal + 1
        line = getattr(node, "lineno", 0)
        end = getattr(node, "end_lineno", line) or line
        for i, label in enumerate(labels):
            self.sites.append(Site(ordinal, i, line, end, label))
        if self.target is not None and self.target[0] == ordinal:
            return self.target[1]
        return None

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        for k, op in enumerate(node.ops):
            swaps = _COMPARE[type(op)]
            pick = self._site(node, [f"`{_SYMBOL[type(op)]}` -> `{_SYMBOL[s]}`" for s in swaps])
            if pick is not None:
                node.ops[k] = swaps[pick]()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._site(node, [f"`{_SYMBOL[type(node.op)]}` -> `{_SYMBOL[other]}`"]) is not None:
            node.op = other()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.op, ast.Not) and self._site(node, ["`not` dropped"]) is not None:
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        other = _BINARY.get(type(node.op))
        if other and self._site(node, [f"`{_SYMBOL[type(node.op)]}` -> `{_SYMBOL[other]}`"]) is not None:
            node.op = other()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        other = _BINARY.get(type(node.op))
        label = f"`{_SYMBOL.get(type(node.op), '?')}=` -> `{_SYMBOL[other]}=`" if other else ""
        if other and self._site(node, [label]) is not None:
            node.op = other()
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        n = node.value
        if type(n) is not int:
            return node
        values = list(dict.fromkeys(v for v in (n + 1, n - 1, 0) if v != n))
        pick = self._site(node, [f"`{n}` -> `{v}`" for v in values])
        if pick is not None:
            return ast.copy_location(ast.Constant(values[pick]), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        node = self.generic_visit(node)  # type: ignore[assignment]
        value = node.value
        if self._bool_returns and value is not None and not _is_not(value):
            if self._site(node, ["`return x` -> `return not x`"]) is not None:
                node.value = ast.UnaryOp(ast.Not(), value)
        return node


def _is_not(node: ast.AST) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)


def sites(source: str) -> list[Site]:
    walker = _Walker()
    walker.visit(ast.parse(source))
    return walker.sites


def apply(source: str, site: Site) -> str:
    walker = _Walker((site.ordinal, site.variant))
    tree = ast.fix_missing_locations(walker.visit(ast.parse(source)))
    return ast.unparse(tree) + "\n"


def mutants(module: str, path: Path) -> Iterator[Mutant]:
    """Every mutant of one module, in source order; a mutant whose text repeats an earlier one
    (or the original) is left out."""
    source = path.read_text(encoding="utf-8")
    seen = {ast.unparse(ast.parse(source)) + "\n"}
    stem = module.rsplit(".", 1)[-1]
    found = sorted(sites(source), key=lambda s: (s.line, s.ordinal, s.variant))
    n = 0
    for site in found:
        text = apply(source, site)
        if text in seen:
            continue
        seen.add(text)
        n += 1
        yield Mutant(f"{stem}-{n:03d}", module, path, site, text)
