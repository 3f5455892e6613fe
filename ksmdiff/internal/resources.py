"""Where the installed data folders are (grammars, spec): real directories on disk.

``grammars/`` and ``spec/`` carry no ``__init__.py`` (they are for users to read and edit),
so in a wheel they are namespace packages and ``importlib.resources.files`` returns a
``MultiplexedPath``, which is no path to hand to ``open`` or to print.  A wheel installs them
as plain folders, so the package's single search location is the folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem


def data_package_dir(package: str) -> Path:
    """The folder of an installed data package such as ``ksmdiff.spec_files``."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folders = [Path(p) for p in locations if Path(p).is_dir()]
    if len(folders) != 1:
        raise EnvironmentProblem(
            f"the installed package data {package} was not found (searched {locations or 'nothing'}):"
            " reinstall ksmdiff")
    return folders[0]


def cache_dir() -> Path:
    """Where ksmdiff keeps what it can make again (built probes, the lab's kernels, compiled
    specs): ``$KSMDIFF_CACHE``, else ``$XDG_CACHE_HOME/ksmdiff``, else ``~/.cache/ksmdiff``."""
    env = os.environ.get("KSMDIFF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmdiff"


_REPO = Path(__file__).resolve().parents[2]


def data_dir(folder: str, package: str, marker: str) -> Path:
    """``folder`` of the checkout when ``marker`` (a glob) finds a file in it, else the
    installed data package ``package``."""
    local = _REPO / folder
    if any(local.glob(marker)):
        return local
    return data_package_dir(package)


def generated_corpus_dir() -> Path:
    """The generated scenarios whose states seed fuzzing: corpora/generated/ of the
    checkout, else the installed copy."""
    return data_dir("corpora/generated", "ksmdiff.generated_corpus", "*/*.scenario")
