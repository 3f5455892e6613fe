"""--kernel lab:NAME without booting: missing kernels, broken boots, CLI wiring."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ksmdiff.lab import guest, run, store
from ksmdiff.observe import ENVIRONMENT, NOT_RUN
from ksmdiff.scenario import parse_file

import ksmdiff

ROOT = Path(__file__).resolve().parents[2]
# the ksmdiff under test (the installed one in CI, the checkout in `python -m pytest`)
HOME = str(Path(ksmdiff.__file__).resolve().parents[1])
SEED = ROOT / "corpora" / "seed" / "reuse-only-pte-mapped.scenario"


@pytest.fixture
def empty_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "kernels"))
    return tmp_path / "kernels"


def _kernel(name="6.1", version="6.1.176"):
    img = Path(store.lab_dir()).parent / "bzImage"
    img.parent.mkdir(parents=True, exist_ok=True)
    img.write_bytes(b"k")
    return store.write_kernel(name, img, {"release": "6.1.0-9-amd64", "version": version,
                                          "origin": "debian", "source_hash": None,
                                          "config_hash": None, "patches": []})


def test_missing_kernel_is_not_run_with_reason(empty_lab):
    scn = parse_file(SEED)
    cells = run.run_lab([scn], ["lab:6.1", "lab:5.4"])
    c61, c54 = cells["lab:6.1"][0], cells["lab:5.4"][0]
    assert c61.status == NOT_RUN and "ksmdiff lab fetch 6.1" in c61.reason
    assert c54.status == NOT_RUN and "ksmdiff lab build" in c54.reason
    assert not c61.ok and not c54.ok
    from ksmdiff.report import cell_text
    assert cell_text(c61) == "not run: not fetched"
    assert cell_text(c54) == "not run: not built"


def test_panic_is_an_environment_result_with_the_console_tail(empty_lab):
    k = _kernel()
    scn = parse_file(SEED)
    console = "booting\n" * 100 + "Kernel panic - not syncing: VFS\n"
    res = guest.BootResult(k, None, "kernel panic; console tail:\n" + guest._tail(console),
                           console)
    cells = run.cells_from_boot([scn], "lab:6.1", res)
    assert cells[0].status == ENVIRONMENT
    assert "Kernel panic - not syncing" in cells[0].reason
    assert cells[0].reason.count("booting") <= guest.CONSOLE_TAIL


def test_a_boot_without_result_is_an_environment_result(empty_lab):
    k = _kernel()
    scn = parse_file(SEED)
    res = guest.BootResult(k, None, "hang: the driver finished no scenario for 180 s")
    cell = run.cells_from_boot([scn], "lab:6.1", res)[0]
    assert cell.status == ENVIRONMENT and "finished no scenario" in cell.reason


def test_a_result_of_the_wrong_length_is_an_environment_result(empty_lab):
    scn = parse_file(SEED)
    cell = run.cells_from_boot([scn], "lab:6.1",
                               guest.BootResult(_kernel(), {"runs": [], "reruns": {}}))[0]
    assert cell.status == ENVIRONMENT and "0 results for 1" in cell.reason


def test_guest_records_are_judged_against_the_kernels_own_version(empty_lab):
    """A fabricated guest result: the seed case copied, as 6.1 does; and the same records
    judged as a 5.4.59 kernel's are a reproducible mismatch (5.1..5.8 reuse)."""
    from ksmdiff.model import run_model
    from ksmdiff.versions import KernelVersion
    scn = parse_file(SEED)
    model = run_model(scn, KernelVersion.parse("6.1.176"))
    from ksmdiff.observe import Record, records_from_json
    from ksmdiff.probe.result import KernelRun
    whole = [Record(r.stmt, r.line, dict(r.fields), r.status, r.note).to_json()
             for r in model.records]
    records = tuple(records_from_json(    # one value each, as a kernel shows
        [{**w, "fields": {k: sorted(v, key=str)[:1] for k, v in w["fields"].items()}}
         for w in whole]))
    kr = KernelRun(scn, KernelVersion.parse("6.1.176"), "ok", "", records, "alone", 1)
    doc = {"runs": [kr], "reruns": {}}
    cell = run.cells_from_boot([scn], "lab:6.1", guest.BootResult(_kernel(), doc))[0]
    assert cell.status == "ok" and not cell.failed and cell.mismatch is None, cell.reason
    old = _kernel("5.4", "5.4.59")
    runs = {0: [kr, kr]}
    cell = run.cells_from_boot([scn], "lab:5.4", guest.BootResult(old, dict(doc, reruns=runs)))[0]
    assert cell.mismatch is not None and cell.mismatch.reproduced == 2
    assert any("reused" in e.text for e in cell.failed)


def _cli(*args, env_extra=None):
    import os
    env = dict(os.environ, PYTHONPATH=HOME, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "ksmdiff.cli", *args], capture_output=True,
                          text=True, cwd=HOME, env=env, timeout=300)


def test_cli_missing_lab_kernel_exits_3_and_says_why(empty_lab, tmp_path):
    out = tmp_path / "run.json"
    r = _cli("run", str(SEED), "--kernel", "lab:6.12", "--kernel", "6.12", "--json", str(out),
             env_extra={"KSMDIFF_LAB_DIR": str(empty_lab)})
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not run: not fetched" in r.stdout
    assert "ksmdiff lab fetch 6.12" in r.stdout
    rec = json.loads(out.read_text())
    assert rec["versions"] == ["lab:6.12", "6.12"]
    assert [x["status"] for x in rec["results"]] == ["not-run", "ok"]


def test_cli_bad_lab_name_is_a_usage_error(empty_lab):
    r = _cli("run", str(SEED), "--kernel", "lab:../x")
    assert r.returncode == 2 and "bad lab kernel name" in r.stderr


def test_cli_lab_list(empty_lab):
    _kernel()
    r = _cli("lab", "list", env_extra={"KSMDIFF_LAB_DIR": str(empty_lab)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "version", "era", "origin", "release", "patches"]
    assert lines[1].split()[:3] == ["6.1", "6.1.176", "5.19-6.6"]


def test_cli_lab_fetch_unknown_name(empty_lab):
    r = _cli("lab", "fetch", "4.19")
    assert r.returncode == 2 and "5.10, 6.1, 6.12" in r.stderr


def test_pytest_plugin_lab_items_skip_with_the_reason(empty_lab, tmp_path):
    import os
    (tmp_path / "seed.scenario").write_text(SEED.read_text())
    env = dict(os.environ, PYTHONPATH=HOME, KSMDIFF_LAB_DIR=str(empty_lab))
    from importlib.metadata import entry_points
    load = ([] if "ksmdiff.pytest_plugin" in {ep.value for ep in entry_points(group="pytest11")}
            else ["-p", "ksmdiff.pytest_plugin"])
    r = subprocess.run([sys.executable, "-m", "pytest", *load, "-q",
                        "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        str(tmp_path), "--ksmdiff-no-host", "--ksmdiff-kernel", "6.1",
                        "--ksmdiff-kernel", "lab:6.1"], capture_output=True, text=True,
                       cwd=HOME, env=env, timeout=300)
    assert "1 passed, 1 skipped" in r.stdout, r.stdout + r.stderr
    assert "lab:6.1 not run: not fetched" in r.stdout


def test_broken_kpageflags_ksm_is_noted_on_every_cell(empty_lab):
    scn = parse_file(SEED)
    from ksmdiff.probe.result import KernelRun
    from ksmdiff.versions import KernelVersion
    doc = {"runs": [KernelRun(scn, KernelVersion.parse("6.1.176"), "ok", "", ())],
           "reruns": {}, "kpageflags_ksm_on_plain_anon": True}
    cell = run.cells_from_boot([scn], "lab:6.1", guest.BootResult(_kernel(), doc))[0]
    assert "81401cebfc15" in cell.reason
    import io
    from ksmdiff.report import print_summary
    buf = io.StringIO()
    print_summary([scn], ["lab:6.1"], {(0, "lab:6.1"): cell}, out=buf)
    assert buf.getvalue().count("81401cebfc15") == 1


def test_the_ksm_flag_check_reads_a_plain_page_as_root():
    """As root the check reads the page's flags (None only when it cannot); which answer
    is the host kernel's business, the boot test sees both kinds of kernel."""
    import os
    from ksmdiff.probe.system import kpageflags_ksm_on_plain_anon
    if os.geteuid() != 0:
        pytest.skip("PFNs need root")
    assert kpageflags_ksm_on_plain_anon() is not None


def test_boots_start_longest_first_by_the_last_run(empty_lab):
    """With more kernels than CPUs the longest boot starts first; kernels never timed go
    before those timed, and a damaged times file is ignored."""
    a, b, c = _kernel("a"), _kernel("b"), _kernel("c")
    todo = [("lab:a", a), ("lab:b", b), ("lab:c", c)]
    assert [t for t, _k in run.boot_order(todo)] == ["lab:a", "lab:b", "lab:c"]
    run._record_boot_times({"a": 30.0, "b": 90.0})
    assert [t for t, _k in run.boot_order(todo)] == ["lab:c", "lab:b", "lab:a"]
    run._record_boot_times({"c": 10.0})          # merged with what was there
    assert [t for t, _k in run.boot_order(todo)] == ["lab:b", "lab:a", "lab:c"]
    (empty_lab.parent / run.BOOT_TIMES).write_text("{not json")
    assert [t for t, _k in run.boot_order(todo)] == ["lab:a", "lab:b", "lab:c"]


def test_a_finished_run_does_not_stop_later_boots(empty_lab, monkeypatch):
    """run_lab kills its qemus when it ends; that must not refuse the boots of what runs
    next in the same process (a race experiment after a corpus run)."""
    _kernel()
    monkeypatch.setattr(guest, "qemu_available", lambda: "")
    monkeypatch.setattr(guest, "boot_driver",
                        lambda kernel, session, **kw: guest.BootResult(kernel, None, "fake"))
    run.run_lab([parse_file(SEED)], ["lab:6.1"])
    assert not guest._STOP.is_set()


def test_cancelling_a_run_that_already_ended_does_not_stop_later_boots(empty_lab, monkeypatch):
    """The CLI cancels the lab's background run when the host part fails; if that run had
    already ended, the stop must not outlive it."""
    _kernel()
    monkeypatch.setattr(guest, "qemu_available", lambda: "")
    monkeypatch.setattr(guest, "boot_driver",
                        lambda kernel, session, **kw: guest.BootResult(kernel, None, "fake"))
    bg = run.Background([parse_file(SEED)], ["lab:6.1"])
    bg.join()
    bg.cancel()
    assert not guest._STOP.is_set()
