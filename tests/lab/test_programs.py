"""Static programs run in a lab guest (ksmdiff/lab/programs.py): the script, the /init, the
reading of what comes back; one boot of a tiny program where a lab kernel and qemu exist."""

import shutil
import subprocess

import pytest

from ksmdiff.errors import UsageError
from ksmdiff.lab import guest, programs, store
from ksmdiff.lab.programs import GuestProgram


def test_the_programs_init_is_the_scenarios_init_up_to_its_last_step():
    init = programs.programs_init()
    assert programs.DRIVER_STEP not in init
    assert f"/bin/sh /out/{programs.SCRIPT}\n" in init
    before = guest.INIT_DRIVER.split(programs.DRIVER_STEP)[0]
    assert init.startswith(before)          # modules, the share, swap: as for the driver


def test_the_script_copies_in_first_then_times_every_run_in_order(tmp_path):
    ps = [GuestProgram("a", tmp_path / "a", ("-x", "it's")), GuestProgram("b", tmp_path / "b")]
    text = programs.script(ps, rounds=2)
    lines = text.splitlines()
    assert lines[0] == ": > /out/started"          # the host's mark that the script began
    first_read = next(i for i, l in enumerate(lines) if l.startswith("read t0"))
    assert all(not l.startswith("cp /out/bin/") for l in lines[first_read:])
    runs = [l for l in lines if "echo $? > /tmp/o/st" in l]
    assert len(runs) == 4
    assert runs[0].startswith("{ ./a -x 'it'\"'\"'s' </dev/null;")    # quoted for sh
    assert runs[1].startswith("{ ./b </dev/null;")
    assert [l for l in lines if l.startswith("cp /tmp/o/log")] == [
        "cp /tmp/o/log /out/log.0.0", "cp /tmp/o/log /out/log.0.1",
        "cp /tmp/o/log /out/log.1.0", "cp /tmp/o/log /out/log.1.1"]
    assert lines[-1] == ": > /out/done"
    # no status left over from the run before: each run's is removed first
    assert text.count("rm -f /tmp/o/st\n") == 4


def test_names_are_file_names_and_distinct(tmp_path):
    with pytest.raises(UsageError, match="program name"):
        GuestProgram("../x", tmp_path / "x")
    with pytest.raises(UsageError, match="program name"):
        GuestProgram("a b", tmp_path / "x")


def test_runs_are_read_from_the_times_and_the_stamped_logs(tmp_path):
    ps = [GuestProgram("a", tmp_path / "a"), GuestProgram("b", tmp_path / "b")]
    (tmp_path / "times").write_text("0 0 0 10.50 12.75\n0 1 1 12.80 12.90\ntorn line\n")
    (tmp_path / "log.0.0").write_text("10.51 # [RUN] one\n12.70 ok 1 two words\n")
    runs = programs.read_runs(tmp_path, ps)
    assert [(r.name, r.round, r.status) for r in runs] == [("a", 0, 0), ("b", 0, 1)]
    assert runs[0].seconds == pytest.approx(2.25)
    assert runs[0].lines == [(10.51, "# [RUN] one"), (12.70, "ok 1 two words")]
    assert runs[1].lines == []                       # no log came back: no lines
    assert programs.read_runs(tmp_path / "none", ps) == []


@pytest.mark.slow
@pytest.mark.lab
def test_a_static_program_runs_in_the_guest_and_its_lines_are_stamped(tmp_path):
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    k = store.get_kernel("6.1") or store.get_kernel("6.12")
    if k is None:
        pytest.skip("no lab kernel 6.1 or 6.12 (ksmdiff lab fetch 6.1)")
    try:
        guest.find_busybox()
    except Exception as e:
        pytest.skip(str(e))
    if not shutil.which("gcc"):
        pytest.skip("no gcc to build the static test program")
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n#include <string.h>\n'
                   'int main(int c, char **v) { setvbuf(stdout, NULL, _IOLBF, 0);\n'
                   '  char cwd[256]; printf("first %s\\n", getcwd(cwd, sizeof cwd));\n'
                   '  usleep(300000); printf("second %s\\n", c > 1 ? v[1] : "-");\n'
                   '  return 3; }\n')
    exe = tmp_path / "t"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot link statically: {r.stderr[-300:]}")
    res = programs.boot_programs(k, [GuestProgram("t", exe, ("a b",))], rounds=2)
    assert not res.reason, res.reason
    assert [(x.round, x.status) for x in res.runs] == [(0, 3), (1, 3)]
    for x in res.runs:
        assert [l for _u, l in x.lines] == ["first /tmp/p", "second a b"]
        (u1, _), (u2, _) = x.lines
        assert u2 - u1 >= 0.29 and x.seconds >= 0.29
        assert x.start <= u1 <= u2 <= x.end
    assert res.timings["started"] <= res.timings["done"] <= res.timings["exit"]
