"""The compiled transition system of a model and era, kept on disk between runs.

Compiling the user-level model for one era (compile.py: every action instance executed
symbolically) takes most of a ``ksmdiff generate --kernel K`` run that does not share it
with other eras.  The result depends only on the model (its checked AST), the era, the
fact table's answers for the facts the model reads (``kernel has``), the compiler's own
source and Z3's version, so it is stored under the cache directory
(``$KSMDIFF_CACHE``, else ``$XDG_CACHE_HOME/ksmdiff``, else ``~/.cache/ksmdiff``) keyed
by a hash of all five, and the next run rebuilds the same terms from it.

The terms are stored as their DAG (every node once, children first) and rebuilt with the
same Z3 constructors the compiler calls; a file is written only when the rebuilt terms
are the compiled ones (``eq``: the same hash-consed terms), so a run from the cache asks
Z3 exactly the queries a run that compiles asks.  A file that cannot be read is ignored
(the model is compiled again).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path

import z3
from z3.z3 import _to_expr_ref

from ksmdiff.internal.resources import cache_dir

FORMAT = 1


def _compiler_source() -> bytes:
    here = Path(__file__).resolve().parent
    return b"".join((here / f).read_bytes() for f in ("compile.py", "check.py", "ast.py",
                                                       "tscache.py"))


def cache_key(model, era) -> str:
    h = hashlib.sha256()
    from ksmdiff.kspec.internal.check import era_has
    # `kernel has FACT` compiles to the fact table's answer for the era: a table edit
    # must not meet terms compiled from the old answer
    answers = repr(sorted((f, era_has(f, era)) for f in getattr(model, "facts", ())))
    for part in (str(FORMAT), z3.get_full_version(), era.value, repr(model), answers):
        h.update(part.encode())
        h.update(b"\0")
    h.update(_compiler_source())
    return h.hexdigest()[:24]


def cache_path(model, era) -> Path:
    return cache_dir() / "kspec-ts" / f"{getattr(model, 'name', 'model')}-{cache_key(model, era)}.pickle"


# ----------------------------------------------------------------------------- terms
# Walked and rebuilt through Z3's C API: the Python operators would not do (``a == b``
# with ``b`` a numeral calls ``b.__eq__(a)`` first, which swaps the arguments).

_NARY = {z3.Z3_OP_AND: z3.Z3_mk_and, z3.Z3_OP_OR: z3.Z3_mk_or,
         z3.Z3_OP_DISTINCT: z3.Z3_mk_distinct}
_BINARY = {z3.Z3_OP_IMPLIES: z3.Z3_mk_implies, z3.Z3_OP_EQ: z3.Z3_mk_eq,
           z3.Z3_OP_SLT: z3.Z3_mk_bvslt, z3.Z3_OP_SGT: z3.Z3_mk_bvsgt,
           z3.Z3_OP_SLEQ: z3.Z3_mk_bvsle, z3.Z3_OP_SGEQ: z3.Z3_mk_bvsge,
           z3.Z3_OP_BADD: z3.Z3_mk_bvadd, z3.Z3_OP_BSUB: z3.Z3_mk_bvsub,
           z3.Z3_OP_BSHL: z3.Z3_mk_bvshl}
_UNARY = {z3.Z3_OP_NOT: z3.Z3_mk_not, z3.Z3_OP_BNEG: z3.Z3_mk_bvneg}


class _Unsupported(Exception):
    pass


def dump_terms(roots: list) -> tuple:
    """The DAG of ``roots`` as a list of nodes, children before parents: ("c", name,
    bit width or 0 for a Bool), ("n", value, width), ("t",), ("f",) or (op kind, [child
    positions]); and the positions of the roots."""
    ctx = z3.main_ctx().ref()
    pos: dict = {}
    nodes: list = []
    for root in roots:
        if root.ctx.ref() is not ctx:
            raise _Unsupported("not in the main context")
        stack = [(root.as_ast(), False)]
        while stack:
            a, done = stack.pop()
            i = z3.Z3_get_ast_id(ctx, a)
            if i in pos:
                continue
            if not z3.Z3_is_app(ctx, a):
                raise _Unsupported("not an application")
            app = z3.Z3_to_app(ctx, a)
            n = z3.Z3_get_app_num_args(ctx, app)
            kids = [z3.Z3_get_app_arg(ctx, app, j) for j in range(n)]
            if not done and n:
                stack.append((a, True))
                stack.extend((k, False) for k in reversed(kids))
                continue
            k = z3.Z3_get_decl_kind(ctx, z3.Z3_get_app_decl(ctx, app))
            if k == z3.Z3_OP_UNINTERPRETED and not n:
                srt = z3.Z3_get_sort(ctx, a)
                sk = z3.Z3_get_sort_kind(ctx, srt)
                if sk == z3.Z3_BOOL_SORT:
                    w = 0
                elif sk == z3.Z3_BV_SORT:
                    w = z3.Z3_get_bv_sort_size(ctx, srt)
                else:
                    raise _Unsupported("a constant of another sort")
                name = z3.Z3_get_symbol_string(ctx, z3.Z3_get_decl_name(
                    ctx, z3.Z3_get_app_decl(ctx, app)))
                node = ("c", name, w)
            elif k == z3.Z3_OP_BNUM:
                node = ("n", int(z3.Z3_get_numeral_string(ctx, a)),
                        z3.Z3_get_bv_sort_size(ctx, z3.Z3_get_sort(ctx, a)))
            elif k == z3.Z3_OP_TRUE:
                node = ("t",)
            elif k == z3.Z3_OP_FALSE:
                node = ("f",)
            elif (k in _NARY or (k in _BINARY and n == 2) or (k in _UNARY and n == 1)
                  or (k == z3.Z3_OP_ITE and n == 3)):
                node = (k, [pos[z3.Z3_get_ast_id(ctx, c)] for c in kids])
            else:
                raise _Unsupported(f"operator {k}")
            pos[i] = len(nodes)
            nodes.append(node)
    return nodes, [pos[r.get_id()] for r in roots]


def load_terms(nodes: list) -> list:
    """The terms of ``dump_terms``' nodes (AstRef, in the main context)."""
    c = z3.main_ctx()
    ctx = c.ref()
    bool_sort = z3.Z3_mk_bool_sort(ctx)
    keep = []                   # AstRef: holds a reference on every node made
    raw = []
    for node in nodes:
        tag = node[0]
        if tag == "c":
            srt = bool_sort if node[2] == 0 else z3.Z3_mk_bv_sort(ctx, node[2])
            a = z3.Z3_mk_const(ctx, z3.Z3_mk_string_symbol(ctx, node[1]), srt)
        elif tag == "n":
            a = z3.Z3_mk_numeral(ctx, str(node[1]), z3.Z3_mk_bv_sort(ctx, node[2]))
        elif tag == "t":
            a = z3.Z3_mk_true(ctx)
        elif tag == "f":
            a = z3.Z3_mk_false(ctx)
        else:
            args = [raw[j] for j in node[1]]
            if tag in _NARY:
                arr = (z3.Ast * len(args))(*args)
                a = _NARY[tag](ctx, len(args), arr)
            elif tag in _BINARY:
                a = _BINARY[tag](ctx, *args)
            elif tag in _UNARY:
                a = _UNARY[tag](ctx, args[0])
            else:
                a = z3.Z3_mk_ite(ctx, *args)
        keep.append(z3.AstRef(a, c))
        raw.append(a)
    return keep


def _expr(ref):
    return _to_expr_ref(ref.as_ast(), ref.ctx)


# ----------------------------------------------------------------------------- TS

class _Out(pickle.Pickler):
    def __init__(self, f, model):
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.model = model
        self.terms: list = []
        self.index: dict = {}

    def persistent_id(self, obj):
        if obj is self.model:
            return ("model",)
        if isinstance(obj, z3.AstRef):
            k = obj.get_id()
            if k not in self.index:
                self.index[k] = len(self.terms)
                self.terms.append(obj)
            return ("z3", self.index[k])
        return None


class _In(pickle.Unpickler):
    def __init__(self, f, model, terms):
        super().__init__(f)
        self.model, self.terms = model, terms

    def persistent_load(self, pid):
        if pid[0] == "model":
            return self.model
        return self.terms[pid[1]]


def save(ts, path: Path) -> bool:
    """Write ``ts`` to ``path`` when its terms survive the round trip; False otherwise."""
    buf = io.BytesIO()
    p = _Out(buf, ts.model)
    try:
        p.dump(ts)
        nodes, roots = dump_terms(p.terms)
    except (_Unsupported, pickle.PicklingError, TypeError, AttributeError):
        return False
    back = load_terms(nodes)
    if not all(back[r].get_id() == t.get_id() for r, t in zip(roots, p.terms)):
        return False
    blob = pickle.dumps((FORMAT, nodes, roots, buf.getvalue()),
                        protocol=pickle.HIGHEST_PROTOCOL)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        return False
    return True


def load(model, path: Path):
    """The TS stored at ``path`` for ``model``, or None (no file, or not readable)."""
    try:
        fmt, nodes, roots, body = pickle.loads(path.read_bytes())
        if fmt != FORMAT:
            return None
        built = load_terms(nodes)
        return _In(io.BytesIO(body), model, [_expr(built[r]) for r in roots]).load()
    except Exception:           # a damaged or foreign file: compile again
        return None


def compiled(model, era):
    """engine._compiled (once per model object and era in a process), from the disk cache
    when the same model, era, compiler and Z3 compiled it before."""
    from ksmdiff.kspec.internal import engine
    key = (id(model), era)
    hit = engine._TS_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    path = cache_path(model, era)
    ts = load(model, path) if path.exists() else None
    if ts is None:
        ts = engine._compiled(model, era)
        save(ts, path)
        return ts
    engine._TS_CACHE[key] = (model, ts)
    return ts
