"""``prove.toml``: the prover's settings, kept in the spec directory beside the models
(bounds per model, the mutants' era, how a counterexample becomes a scenario, the
witnesses and known-unreachable branches of the vacuity check).  Every key is checked;
an unknown or ill-typed one is an :class:`InputError` naming the file, line and key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Optional

from ksmdiff.errors import InputError, Location
from ksmdiff.kspec.internal.check import ERA_SLUG
from ksmdiff.versions import Era

FILE = "prove.toml"

# Defaults of a model that prove.toml does not mention.
DEFAULTS = {"bound": 2, "kmax": 1, "equiv": 3, "mutant": 6, "vacuity": 3,
            "explore": 200_000}


@dataclass
class ScenarioMap:
    """How a user-level trace prints as a scenario: the region the pages live in, the
    observable saying a page exists, and the observables of its content (fill, write)."""
    region: str
    live: str
    content: tuple


@dataclass
class ModelConfig:
    bound: int = DEFAULTS["bound"]
    kmax: int = DEFAULTS["kmax"]
    equiv: int = DEFAULTS["equiv"]
    mutant: int = DEFAULTS["mutant"]
    vacuity: int = DEFAULTS["vacuity"]
    explore: int = DEFAULTS["explore"]
    scenario: Optional[ScenarioMap] = None
    witness: dict = field(default_factory=dict)        # label -> [(name, (args...)), ...]
    witness_text: dict = field(default_factory=dict)   # label -> [text, ...]
    unreachable: dict = field(default_factory=dict)    # label -> why


@dataclass
class ProveConfig:
    mutant_era: Era = Era.V5_1_TO_5_8
    models: dict = field(default_factory=dict)         # model name -> ModelConfig
    path: Optional[str] = None

    def model(self, name: str) -> ModelConfig:
        return self.models.get(name) or ModelConfig()


_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(\s*(.*?)\s*\)\s*$")


def _where(path: str, text: str, key: str) -> Location:
    for i, line in enumerate(text.splitlines(), 1):
        col = line.find(key)
        if col >= 0 and not line.lstrip().startswith("#"):
            return Location(path, i, col + 1)
    return Location(path, 1, 1)


def load_config(path, text: Optional[str], models: dict) -> ProveConfig:
    """Parse and check ``text`` (None: no prove.toml, every default) against the models."""
    cfg = ProveConfig(path=str(path) if text is not None else None)
    if text is None:
        return cfg
    path = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        mo = re.search(r"line (\d+), column (\d+)", str(e))
        loc = Location(path, int(mo.group(1)), int(mo.group(2))) if mo else Location(path, 1, 1)
        raise InputError(f"not TOML: {e}", loc, "key = value lines") from None

    def bad(key, msg, expected=None):
        raise InputError(msg, _where(path, text, key), expected)

    for key in data:
        if key not in ("mutant_era", "model"):
            bad(key, f"unknown setting {key!r}", "mutant_era or [model.NAME]")
    if "mutant_era" in data:
        by_slug = {slug: era for era, slug in ERA_SLUG.items()}
        v = data["mutant_era"]
        if v not in by_slug:
            bad("mutant_era", f"unknown era {v!r}", "one of " + ", ".join(by_slug))
        cfg.mutant_era = by_slug[v]
    for name, sect in data.get("model", {}).items():
        if name not in models:
            bad(f"[model.{name}]", f"no model {name!r} in the spec",
                "one of " + ", ".join(sorted(models)))
        m = models[name]
        mc = ModelConfig()
        for key, v in sect.items():
            if key in DEFAULTS:
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    bad(key, f"{key} must be a whole number >= 0, not {v!r}", "an integer")
                setattr(mc, key, v)
            elif key == "scenario":
                mc.scenario = _scenario_map(v, m, bad)
            elif key == "witness":
                for label, steps in v.items():
                    if not isinstance(steps, list) or not all(isinstance(x, str) for x in steps):
                        bad(label, f"witness {label!r} must be a list of \"action(args)\"",
                            '["fill(A, 0, 1)", ...]')
                    mc.witness[label] = [_call(x, m, label, bad) for x in steps]
                    mc.witness_text[label] = list(steps)
            elif key == "unreachable":
                for label, why in v.items():
                    if not isinstance(why, str) or not why.strip():
                        bad(label, f"unreachable {label!r} needs the reason as a string",
                            '"why no execution takes it"')
                    mc.unreachable[label] = why
            else:
                bad(key, f"unknown model setting {key!r}",
                    ", ".join(list(DEFAULTS) + ["scenario", "witness", "unreachable"]))
        labels = {lab for _era, _owner, lab in m.branch_labels()}
        steps = {a.name for a in m.actions} | {f"{t.name}.{st.label}" for t in m.threads
                                               for st in t.steps}
        for label in mc.witness:
            if label not in labels:
                bad(label, f"no branch {label!r} in model {name}", "a `branch` label")
        for label in mc.unreachable:
            if label not in labels and label not in steps:
                bad(label, f"no branch, action or thread step {label!r} in model {name}",
                    "a `branch` label, an action or THREAD.LABEL")
        cfg.models[name] = mc
    return cfg


def _scenario_map(v, m, bad) -> ScenarioMap:
    if not isinstance(v, dict) or set(v) != {"region", "live", "content"}:
        bad("scenario", "[model.NAME.scenario] needs region, live and content",
            'region = "buf", live = "live", content = ["view_fill", "view_write"]')
    for ob in [v["live"]] + list(v["content"]):
        if ob not in m.observes:
            bad(ob, f"no observable {ob!r} in model {m.name}", "an `observe` name")
    if len(v["content"]) != 2:
        bad("content", "content names two observables: the fill byte and the written byte")
    return ScenarioMap(str(v["region"]), v["live"], tuple(v["content"]))


def _call(text, m, label, bad):
    mo = _CALL.match(text)
    if not mo:
        bad(text, f"witness step {text!r} is not NAME(ARGS)", "fill(A, 0, 1)")
    name, args = mo.group(1), [a.strip() for a in mo.group(2).split(",") if a.strip()]
    acts = [a for a in m.actions if a.name == name]
    if not acts:
        bad(text, f"witness step {text!r}: no action {name!r}", "an action of the model")
    params = acts[0].params
    if len(args) != len(params):
        bad(text, f"witness step {text!r}: {name} takes {len(params)} argument(s)")
    codes = []
    for a, p in zip(args, params):
        d = m.domains[p.domain]
        if d.is_enum:
            if a not in d.values:
                bad(text, f"witness step {text!r}: {a!r} is not a {p.domain}",
                    ", ".join(d.values))
            codes.append(d.index_of(a))
        else:
            try:
                c = int(a, 0)
            except ValueError:
                c = None
            if c not in d.values:
                bad(text, f"witness step {text!r}: {a!r} is not a {p.domain}",
                    f"{d.values[0]}..{d.values[-1]}")
            codes.append(c)
    return name, tuple(codes)
