"""ksmdiff/session.py: when a kernel run's model is made beside it (the kernel half is in
tests/kernel/test_scale.py)."""

from ksmdiff import session
from ksmdiff.scenario import parse


def test_small_scenarios_keep_the_model_in_process():
    small = parse('scenario "s"\nprocess A\nA: mmap buf 2\nA: fill buf 0x01\n', "s.scenario")
    assert not session._model_ahead_pays([small] * 100)


def test_forked_processes_count_their_inherited_pages():
    text = ('scenario "s"\nprocess A\nA: mmap buf 4096\nA: fill buf 0x01\nA: fork B\n'
            'A: fork C\n')
    # 4096 + 4096 + 8192 + 12288 page-statements; three statements more of 3 x 4096 pages
    # reach 65,536 (two do not)
    two = text + "B: fill buf 0x02\nC: fill buf 0x02\n"
    assert not session._model_ahead_pays([parse(two, "s.scenario")])
    assert session._model_ahead_pays([parse(two + "A: fill buf 0x02\n", "s.scenario")])
