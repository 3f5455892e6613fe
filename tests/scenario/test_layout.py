"""The layout walker: what exists after each statement."""

from ksmdiff.scenario import parse
from ksmdiff.scenario.layout import layout_at, walk

TEXT = """scenario "layout"
process A
A: mmap buf 3
A: write buf[1] 0x11
A: fork B
B: munmap buf[0]
A: mprotect buf[2] ro
B: pin buf[1]
A: exit
"""


def test_layout_after_each_statement():
    scn = parse(TEXT)
    seen = [(i, sorted(lay.alive())) for i, _s, lay in walk(scn)]
    assert seen[0] == (0, ["A"]) and seen[3] == (3, ["A", "B"])
    end = layout_at(scn, len(scn.statements))
    assert end.alive() == ["B"]
    assert end.procs["B"].regions["buf"].mapped == [False, True, True]
    assert end.procs["A"].regions["buf"].faulted == [False, True, False]
    assert end.procs["B"].regions["buf"].faulted == [False, False, False]
    assert end.procs["A"].regions["buf"].prot == ["rw", "rw", "ro"]
    assert end.procs["B"].pins == {("buf", 1): 1}
    assert end.mapped_pages() == [("B", "buf", 1), ("B", "buf", 2)]
    assert end.total_pages == 6 and end.npages("B", "buf") == 3 and end.npages("C", "x") == 0
