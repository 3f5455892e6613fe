"""pytest plugin: ``pytest corpora/`` collects every ``.scenario`` file.

Each file gives one item per model version (``--ksmdiff-kernel``, repeatable; default one
version per era) and one ``host`` item that replays it on the running kernel (skipped,
with the reason, without root).  ``--ksmdiff-kernel lab:NAME`` adds a ``lab[NAME]`` item
per file: the first such item boots the kernel once for every collected scenario (the
others read their cell); a kernel not in the lab store skips with the reason.  JUnit XML
comes from pytest's own ``--junitxml``.
"""

from __future__ import annotations

import pytest

from ksmdiff.cli import ERA_VERSIONS
from ksmdiff.status import RunStatus


def pytest_addoption(parser):
    group = parser.getgroup("ksmdiff")
    group.addoption("--ksmdiff-kernel", action="append", default=None, metavar="VERSION",
                    help="model version(s) for .scenario items (default: one per era); "
                         "'host' adds the running kernel, 'lab:NAME' a lab kernel under qemu")
    group.addoption("--ksmdiff-no-host", action="store_true",
                    help="do not add a host-kernel item per scenario")


# The markers this plugin puts on its items, registered so that a user's pytest (with
# --strict-markers or not) knows them without any configuration of its own.
MARKERS = {
    "kernel": "replays a scenario on the running kernel (needs root and KSM; ksmdiff)",
    "slow": "takes more than a few seconds (ksmdiff)",
    "lab": "replays a scenario on a lab kernel under qemu (ksmdiff)",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".scenario":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        from ksmdiff.scenario import parse_file
        scn = parse_file(self.path)
        versions = list(self.config.getoption("--ksmdiff-kernel") or ERA_VERSIONS)
        if not self.config.getoption("--ksmdiff-no-host") and "host" not in versions:
            versions.append("host")
        for v in versions:
            if v.startswith("lab:"):
                name = f"lab[{v[4:]}]"
            else:
                name = f"{'kernel' if v == 'host' else 'model'}[{v}]"
            yield ScenarioItem.from_parent(self, name=name, scenario=scn, version=v)


class ScenarioFailure(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario, version, **kw):
        super().__init__(**kw)
        self.scenario = scenario
        self.version = version
        if version == "host":
            self.add_marker(pytest.mark.kernel)
        elif version.startswith("lab:"):
            self.add_marker(pytest.mark.lab)

    def _lab_cell(self):
        """This item's cell from the one boot of its kernel for all collected items."""
        cache = self.config.__dict__.setdefault("_ksmdiff_lab_cells", {})
        if id(self) not in cache:
            from ksmdiff.lab.run import run_lab
            items = [it for it in self.session.items
                     if isinstance(it, ScenarioItem) and it.version == self.version
                     and id(it) not in cache]
            cells = run_lab([it.scenario for it in items], [self.version])[self.version]
            for it, cell in zip(items, cells):
                cache[id(it)] = cell
        return cache[id(self)]

    def runtest(self):
        from ksmdiff import session
        from ksmdiff.versions import KernelVersion
        if self.version == "host":
            cell = session.run_host_cells([self.scenario], batch=False)[0]
            if cell.status == RunStatus.NOT_RUN:
                pytest.skip(cell.reason)
        elif self.version.startswith("lab:"):
            cell = self._lab_cell()
            if cell.status == RunStatus.NOT_RUN:
                pytest.skip(f"{self.version} not run: {cell.reason}")
        else:
            cell = session.run_model_cell(self.scenario, KernelVersion.parse(self.version))
        if cell.status == RunStatus.UNSUPPORTED:
            pytest.skip(f"unsupported on {self.version}: {cell.reason}")
        if cell.status == RunStatus.ENVIRONMENT:
            pytest.skip(f"environment: {cell.reason}")
        problems = [f"line {e.line}: {e.text}\n    observed: {e.reason}" for e in cell.failed]
        problems += [f"violation: {v}" for v in cell.violations]
        if cell.mismatch is not None:
            m = cell.mismatch
            problems.append(f"mismatch ({m.classification}) at line {m.first.line}: "
                            f"{m.statement}\n    {m.first.describe()}")
        if problems:
            raise ScenarioFailure("\n".join(problems))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ScenarioFailure):
            return f"{self.scenario.source} on {self.version}:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.scenario.title} [{self.version}]"
