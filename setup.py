"""Packaging glue that pyproject.toml cannot say alone.

Every Python package under ``ksmdiff/`` is *found*, so a new subpackage ships without anyone
remembering to list it.  ``grammars/`` and ``spec/`` stay at the top of the tree, where users
read and edit them, and are mapped into the wheel as the data packages ``ksmdiff.grammars``
and ``ksmdiff.spec_files`` (with every subfolder, e.g. ``spec/mutants/equivalent``).
``corpora/generated/`` (the generated corpus whose states seed ``ksmdiff fuzz``) ships as
``ksmdiff.generated_corpus``; its era folders (``5.1-5.8``) are not package names, so their
files are that package's data.
"""

import re
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent
DATA_DIRS = {"ksmdiff.grammars": "grammars", "ksmdiff.spec_files": "spec"}


def _version() -> str:
    text = (HERE / "ksmdiff" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _data_packages():
    """Each data folder and its subfolders as packages, mapped to where they live."""
    packages, package_dir, package_data = [], {}, {}
    for pkg, folder in DATA_DIRS.items():
        root = HERE / folder
        for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            if d.name == "__pycache__":
                continue
            rel = d.relative_to(root)
            name = ".".join([pkg, *rel.parts])
            packages.append(name)
            package_dir[name] = str(Path(folder, rel))
            package_data[name] = ["*"]
    return packages, package_dir, package_data


data_packages, data_dirs, data_files = _data_packages()

setup(
    version=_version(),
    packages=find_namespace_packages(include=["ksmdiff", "ksmdiff.*"],
                                     exclude=["*.__pycache__"]) + data_packages
    + ["ksmdiff.generated_corpus"],
    package_dir={"": ".", **data_dirs, "ksmdiff.generated_corpus": "corpora/generated"},
    package_data={"ksmdiff.probe": ["*.c"],
                  "ksmdiff.lab": ["known.toml", "*.c", "configs/*.config", "patches/*.patch",
                                  "patches/*.md"],
                  "ksmdiff.generated_corpus": ["*.md", "*.json", "*/*.scenario"],
                  **data_files},
)
