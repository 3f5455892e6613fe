"""Finding and loading spec directories: models (``model NAME``) and mutant overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ksmdiff.errors import InputError, Location
from ksmdiff.internal.resources import data_dir
from ksmdiff.kspec.internal import ast as A
from ksmdiff.kspec.internal.check import Model, build_model
from ksmdiff.kspec.internal.config import FILE as CONFIG_FILE, ProveConfig, load_config
from ksmdiff.kspec.internal.parse import parse_file, parse_text

def spec_dir() -> Path:
    """spec/ of the checkout, else the installed package data ksmdiff.spec_files."""
    return data_dir("spec", "ksmdiff.spec_files", "*.kspec")


@dataclass
class Spec:
    root: str
    models: dict = field(default_factory=dict)        # name -> Model
    mutants: dict = field(default_factory=dict)       # name -> Model (the mutated model)
    mutant_files: dict = field(default_factory=dict)  # name -> path
    config: ProveConfig = field(default_factory=ProveConfig)   # prove.toml


def _model_name(f: A.File) -> str:
    names = [d for d in f.decls if isinstance(d, A.ModelDecl)]
    muts = [d for d in f.decls if isinstance(d, A.MutantDecl)]
    if muts:
        return None
    if len(names) != 1:
        loc = names[1].loc if len(names) > 1 else Location(f.path, 1, 1)
        raise InputError("a spec file declares its model once, first", loc, "model NAME")
    return names[0].name


def load_spec(path=None) -> Spec:
    root = Path(path) if path is not None else spec_dir()
    if root.is_file():
        files = [parse_file(root)]
        mutant_paths = []
    else:
        if not root.is_dir():
            raise InputError("no such spec directory", Location(str(root), 1, 1))
        files = [parse_file(p) for p in sorted(root.glob("*.kspec"))]
        mutant_paths = sorted((root / "mutants").glob("*.kspec"))
        if not files:
            raise InputError("no *.kspec files", Location(str(root), 1, 1), "a spec directory")
    spec = Spec(str(root))
    by_model: dict = {}
    for f in files:
        name = _model_name(f)
        if name is None:
            mutant_paths.append(Path(f.path))
            continue
        by_model.setdefault(name, []).append(f)
    for name, fs in by_model.items():
        spec.models[name] = build_model(name, fs)
    for mp in mutant_paths:
        mf = parse_file(mp)
        md = [d for d in mf.decls if isinstance(d, A.MutantDecl)]
        if len(md) != 1:
            raise InputError("a mutant file starts with: mutant \"NAME\" of MODEL \"what it breaks\"",
                             Location(str(mp), 1, 1), "one mutant declaration")
        md = md[0]
        if md.of not in by_model:
            raise InputError(f"mutant of unknown model {md.of!r}", md.loc,
                             "one of " + ", ".join(sorted(by_model)))
        if md.name in spec.mutants:
            raise InputError(f"mutant {md.name!r} defined twice", md.loc)
        spec.mutants[md.name] = build_model(md.of, by_model[md.of], [mf])
        spec.mutant_files[md.name] = str(mp)
    cfg_path = (root.parent if root.is_file() else root) / CONFIG_FILE
    text = cfg_path.read_text(encoding="utf-8") if cfg_path.is_file() and not root.is_file() \
        else None
    spec.config = load_config(cfg_path, text, spec.models)
    return spec


def check(spec) -> None:
    """Every error is raised while loading; this re-checks an already loaded spec (no-op)
    or loads a path."""
    if not isinstance(spec, Spec):
        load_spec(spec)
