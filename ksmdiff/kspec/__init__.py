"""kspec: the formal spec of the KSM write-fault path, compiled to Z3 (docs/kspec-language.md).

Public surface::

    load_spec(path=None) -> Spec          # a directory of *.kspec (default: spec/ of the
                                          # checkout, else the installed ksmdiff.spec_files)
    check(spec)                           # raises InputError (FILE:LINE:COL) on any error
    prove(spec, eras=None, props=None, bound=None, mutants=False, ...) -> list[Result]
    branch_labels(spec) -> list[(model, era, owner, label)]   # the generator's targets

This package never imports ksmdiff.model or the probe.
"""

from __future__ import annotations

from ksmdiff.kspec.internal.loader import Spec, check, load_spec, spec_dir
from ksmdiff.kspec.internal.engine import prove, DEFAULT_BOUNDS
from ksmdiff.kspec.internal.check import ERA_SLUG, ERAS

__all__ = ["Spec", "load_spec", "check", "prove", "branch_labels", "spec_dir", "ERAS",
           "ERA_SLUG", "DEFAULT_BOUNDS"]


def branch_labels(spec: Spec) -> list[tuple[str, str, str, str]]:
    """(model, era slug, owner, label) for every named branch: the coverage targets."""
    out = []
    for name, model in spec.models.items():
        for era, owner, label in model.branch_labels():
            out.append((name, era, owner, label))
    return out
