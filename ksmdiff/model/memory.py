"""mm/memory.c (and the bits of mm/swapfile.c, mm/rmap.c, mm/mprotect.c, mm/madvise.c and
mm/vmscan.c the scenarios reach), per era.  Read next to the kernel source: every function
is named after the kernel function it mirrors and every era-dependent branch says which
version and function it follows.

A quiet system is assumed: the page lock's trylock succeeds, ``pte_same`` holds (no
"retry"), swap-cache lookups hit (no memory pressure), and ksmd does not run concurrently.
Where a quiet system still has a genuine choice (a per-CPU LRU-add batch holding a
reference), the model takes the quiet branch and records the alternative
(:meth:`Machine.may_also`, :meth:`Machine.count_choices`).
"""

from __future__ import annotations

from typing import Optional

from ksmdiff.model.machine import Machine
from ksmdiff.model.state import Frame, PageSlot, Process, ZERO_CONTENT
from ksmdiff.versions import Era

# ----------------------------------------------------------------------------- page refs


def page_ref_freeze(page: Frame, count: int) -> bool:
    """include/linux/page_ref.h: ``atomic_cmpxchg(&page->_refcount, count, 0) == count``."""
    if page.refcount == count:
        page.refcount = 0
        return True
    return False


def page_ref_unfreeze(page: Frame, count: int) -> None:
    assert page.refcount == 0, "page_ref_unfreeze of a page that is not frozen"
    page.refcount = count


def page_move_anon_rmap(m: Machine, page: Frame) -> None:
    """mm/rmap.c: mapping = vma->anon_vma | PAGE_MAPPING_ANON, so PageKsm becomes false."""
    page.ksm = False
    page.stable_node = None
    page.anon = True
    # 5.19-6.6 page_move_anon_rmap() also SetPageAnonExclusive (>= 6.7 do_wp_page does it)
    if m.has("anon_exclusive"):
        page.anon_exclusive = True


def delete_from_swap_cache(m: Machine, page: Frame) -> None:
    page.swapcache = False
    m.put_page(page)


def try_to_free_swap(m: Machine, page: Frame) -> bool:
    """mm/swapfile.c: drop the page from the swap cache once no swap pte needs it."""
    if not page.swapcache or page.swap_refs > 0:
        return False
    delete_from_swap_cache(m, page)
    return True


def free_swap_cache(m: Machine, page: Frame) -> None:
    """mm/swap_state.c free_swap_cache(): PageSwapCache && !page_mapped -> try_to_free_swap."""
    if page.swapcache and page.mapcount == 0:
        try_to_free_swap(m, page)


# ----------------------------------------------------------------------------- faults


def anon_vma_prepare(slot: PageSlot) -> None:
    """The vma gets an anon_vma with its first anonymous page (not with the zero page)."""
    slot.had_anon = True
    r = slot.region
    if r is not None:
        if r.av is None:
            r.av = object()
            r.av_chain = r.av_chain | {r.av}


def handle_mm_fault(m: Machine, p: Process, slot: PageSlot, *, write: bool = False,
                    unshare: bool = False, extra_refs: int = 0) -> None:
    """handle_mm_fault -> handle_pte_fault for one small anonymous page."""
    pte = slot.pte
    if not pte.present:
        if pte.swap is not None:
            do_swap_page(m, p, slot, write=write)
        else:
            do_anonymous_page(m, p, slot, write=write or unshare)
        return
    if (write or unshare) and not pte.writable:
        do_wp_page(m, p, slot, unshare=unshare and not write, extra_refs=extra_refs)
        return
    if write:
        pte.dirty = True


def policy_node(m: Machine, p: Process, slot: PageSlot) -> int:
    """mm/mempolicy.c, all eras: the node alloc_page_vma() takes a page of this vma from:
    get_vma_policy(): the vma's own MPOL_BIND (mbind of one node: ``mmap R N node K``),
    else the faulting task's policy (``mempolicy bind K``), else the local node,
    numa_node_id(), within the task's cpuset (``cgroup G mems K``: node K).  A fault taken
    for ksmd or the run=2 writer has their policy and cpuset: the default ones.  The model
    puts every CPU on node 0 (the lab guest's CPU is on node 0; a one-node host has only
    node 0)."""
    r = slot.region
    if r is not None and r.node is not None:
        return r.node
    if m.foreign_fault:
        return 0
    if p.mempolicy is not None:
        return p.mempolicy
    return 0 if p.cpuset_mems is None else p.cpuset_mems


def do_anonymous_page(m: Machine, p: Process, slot: PageSlot, *, write: bool) -> None:
    pte = slot.pte
    if not write:
        # read fault on an anonymous vma maps the shared zero page (special pte)
        pte.present, pte.frame, pte.writable, pte.dirty = True, m.zero_page, False, False
        return
    anon_vma_prepare(slot)
    page = m.alloc_page(ZERO_CONTENT, policy_node(m, p, slot))   # the pte's reference
    page.mapcount = 1                          # page_add_new_anon_rmap
    # >= 5.19: page_add_new_anon_rmap() marks the new page PageAnonExclusive
    page.anon_exclusive = m.has("anon_exclusive")
    # all eras do_anonymous_page(): if (vma->vm_flags & VM_WRITE) pte_mkwrite(pte_mkdirty())
    w = maybe_mkwrite(slot)
    pte.present, pte.frame, pte.writable, pte.dirty = True, page, w, w


def maybe_mkwrite(slot: PageSlot) -> bool:
    """include/linux/mm.h maybe_mkwrite(): pte_mkwrite only if vma->vm_flags & VM_WRITE."""
    return slot.prot == "rw"


def wp_page_reuse(m: Machine, p: Process, slot: PageSlot, page: Frame) -> None:
    """Same PFN; the pte becomes young, dirty and -- maybe_mkwrite() -- writable only in a
    VM_WRITE vma (a FOLL_FORCE or GUP write fault in a read-only vma leaves it read-only);
    no refcount change."""
    slot.pte.writable = maybe_mkwrite(slot)
    slot.pte.dirty = True
    # >= 5.9 wp_page_reuse(): count_vm_event(PGREUSE) (798a6b87ecd7)
    if m.has("pgreuse"):
        m.count("pgreuse")


def wp_page_copy(m: Machine, p: Process, slot: PageSlot, old: Optional[Frame],
                 *, unshare: bool = False) -> None:
    """Allocate a new page (zeroed for the zero page), copy, switch the pte, drop the old
    page's rmap and the pte's reference."""
    pte = slot.pte
    anon_vma_prepare(slot)
    new = m.alloc_page(ZERO_CONTENT if old is None or old.zero else old.content,
                       policy_node(m, p, slot))
    new.mapcount = 1                           # page_add_new_anon_rmap
    new.anon_exclusive = m.has("anon_exclusive")
    if old is None or old.zero:
        # >= 6.6 wp_page_copy(): ksm_might_unmap_zero_page() for a KSM-placed zero pte
        if pte.ksm_zero:
            m.count("ksm_zero_pages", -1)
    else:
        old.mapcount -= 1                      # page_remove_rmap (not the zero page here)
        m.put_page(old)                        # the reference the old pte held
        # >= 5.14 wp_page_copy(): if (page_copied) free_swap_cache(old_page) ("mm: free
        # idle swap cache page after COW", Huang Ying 2021); before, an
        # unmapped swap-cache page (a swapped-in KSM page, say) lingers until reclaim.
        # try_to_free_swap() keeps a page still under writeback: one MADV_PAGEOUT just
        # wrote may be (the environment's swap_writeback)
        if old.swapcache and m.has("wp_page_copy_frees_swap") \
                and not m.env("swap_writeback"):
            free_swap_cache(m, old)
    pte.frame, pte.present = new, True
    pte.ksm_zero = False
    # FAULT_FLAG_UNSHARE (>= 5.19, used by break_ksm >= 6.2): the copy stays read-only and
    # clean; a write: all eras wp_page_copy(): maybe_mkwrite(pte_mkdirty(entry), vma), so
    # the copy is read-only in a read-only vma (a FOLL_FORCE/GUP write, break_ksm <= 6.1)
    pte.writable = (not unshare) and maybe_mkwrite(slot)
    pte.dirty = not unshare


def _copy(m: Machine, p: Process, slot: PageSlot, page: Frame, unshare: bool) -> None:
    """do_wp_page's copy tail: get_page, unlock the PTL, (COW_KSM), wp_page_copy, put."""
    page.refcount += 1                         # get_page (not the zero page here)
    # >= 5.19 do_wp_page(): if (PageKsm(page)) count_vm_event(COW_KSM) (94bfe85bde18)
    if page.ksm and m.has("cow_ksm"):
        m.count("cow_ksm")
    wp_page_copy(m, p, slot, page, unshare=unshare)
    m.put_page(page)


def reuse_swap_page(m: Machine, page: Frame) -> bool:
    """<= 5.18 mm/swapfile.c reuse_swap_page(): mapcount + swapcount based (not refcount)."""
    if page.ksm:
        return False
    count = page.mapcount + page.swap_refs
    if count == 1 and page.swapcache:
        delete_from_swap_cache(m, page)        # not under writeback in a quiet system
    return count <= 1


def reuse_ksm_page(m: Machine, page: Frame) -> bool:
    """5.1-5.8 mm/ksm.c reuse_ksm_page() (52d1e606ee73), with the mutants of run.MUTANTS."""
    mut = m.mutant
    if page.swapcache and mut != "no-swapcache-check":
        return False
    if page.stable_node is None and mut != "no-stable-node-check":
        return False
    # Prohibit parallel get_ksm_page()
    expected = 2 if mut == "freeze-at-2" else 1
    if mut == "reuse-mapcount-2":
        expected = page.refcount if page.refcount in (1, 2) else 1
    if mut != "no-freeze":
        if not page_ref_freeze(page, expected):
            return False
    page_move_anon_rmap(m, page)
    if mut != "no-freeze":
        page_ref_unfreeze(page, expected)
    return True


def do_wp_page(m: Machine, p: Process, slot: PageSlot, *, unshare: bool = False,
               extra_refs: int = 0) -> None:
    """Write (or unshare) fault on a present, write-protected pte."""
    page = slot.pte.frame
    assert page is not None
    if page.zero:
        # all eras: vm_normal_page() == NULL -> wp_page_copy() allocates a zeroed page;
        # no COW_KSM (no folio)
        wp_page_copy(m, p, slot, None, unshare=unshare)
        return
    page.refcount += extra_refs                # e.g. <= 6.1 break_ksm()'s FOLL_GET
    try:
        variant = m.era_variant.get("do_wp_page")
        if variant is None:
            variant = m.era_variant["do_wp_page"] = _DO_WP_PAGE[m.era]
        variant(m, p, slot, page, unshare)
    finally:
        if extra_refs:
            m.put_page(page, extra_refs)


def _do_wp_page_le_5_0(m, p, slot, page, unshare):
    # <= 5.0 do_wp_page(): if (PageAnon(vmf->page) && !PageKsm(vmf->page)) -> reuse_swap_page
    if page.anon and not page.ksm:
        page.locked = True                     # trylock_page succeeds (quiet)
        if reuse_swap_page(m, page):
            page.locked = False
            wp_page_reuse(m, p, slot, page)
            return
        page.locked = False
    # <= 5.0: a KSM page always takes get_page + wp_page_copy
    _copy(m, p, slot, page, unshare)


def _do_wp_page_5_1(m, p, slot, page, unshare):
    rc_ok = page.refcount == 1 or (m.mutant == "reuse-mapcount-2" and page.refcount == 2)
    sc_blocks = page.swapcache and m.mutant != "no-swapcache-check"
    # 5.1-5.8 do_wp_page(): PageKsm && (PageSwapCache || page_count != 1) -> copy
    if page.ksm and (sc_blocks or not rc_ok):
        _copy(m, p, slot, page, unshare)
        return
    page.locked = True                         # trylock_page succeeds (quiet: no retry)
    if page.ksm:
        # 5.1-5.8 do_wp_page(): if (PageKsm) reused = reuse_ksm_page(); unlock_page
        reused = reuse_ksm_page(m, page)
        page.locked = False
        if not reused:
            _copy(m, p, slot, page, unshare)
            return
        wp_page_reuse(m, p, slot, page)
        return
    # 5.1-5.8 do_wp_page(): non-KSM anon -> reuse_swap_page() (mapcount based)
    if reuse_swap_page(m, page):
        page.locked = False
        wp_page_reuse(m, p, slot, page)
        return
    page.locked = False
    _copy(m, p, slot, page, unshare)


def _pvec_uncertain(m: Machine, slot: PageSlot, page: Frame) -> bool:
    """A refcount-exact reuse test (5.9+, a page that is not PageAnonExclusive) that passes
    in the model may fail on a kernel where a per-CPU folio batch holds a transient
    reference, on another CPU than the faulting one (its lru_add_drain() is local):

    * the LRU-add batch of a freshly faulted page (``maybe_pvec``; d4c470970d45's
      motivation), drained only by ksmd's lru_add_drain_all() at each full scan;
    * the activate batch: mark_page_accessed() from any FOLL_TOUCH GUP, such as the
      harness reading page contents through /proc/PID/mem, takes a reference too (seen
      on the host's 6.18: a page written after its only other mapper exited was copied).

    So the copy is always allowed there."""
    m.may_also(slot, "copied")
    return True


def _reuse_maybe(m, p, slot, page, uncertain: bool) -> None:
    wp_page_reuse(m, p, slot, page)
    if uncertain and m.has("pgreuse"):
        m.count_choices("pgreuse", (0, -1))


def _do_wp_page_5_9(m, p, slot, page, unshare):
    # 5.9-5.17 do_wp_page() (09854ba94c6a): PageKsm || page_count != 1 -> copy
    if page.ksm or page.refcount != 1:
        _copy(m, p, slot, page, unshare)
        return
    uncertain = _pvec_uncertain(m, slot, page)
    # trylock succeeds; PageKsm || page_mapcount != 1 || page_count != 1 -> copy
    if page.ksm or page.mapcount != 1 or page.refcount != 1:
        _copy(m, p, slot, page, unshare)
        return
    # be068f29034f: unlock_page before wp_page_reuse
    _reuse_maybe(m, p, slot, page, uncertain)


def _wp_can_reuse_anon_folio(m: Machine, slot: PageSlot, page: Frame) -> tuple[bool, bool]:
    """5.18 do_wp_page() (d4c470970d45, 53a05ad9f21d) == >= 6.7 wp_can_reuse_anon_folio().
    Returns (reuse, uncertain)."""
    # folio_test_ksm || refcount > 3 -> false
    if page.ksm or page.refcount > 3:
        return False, False
    # !PageLRU -> lru_add_drain() (local CPU only: another CPU's batch may still hold it)
    uncertain = False
    # refcount > 1 + swapcache -> false
    if page.refcount > 1 + int(page.swapcache):
        return False, False
    # trylock succeeds; swapcache -> try_to_free_swap / folio_free_swap
    if page.swapcache:
        try_to_free_swap(m, page)
    if page.ksm or page.refcount != 1:
        return False, False
    uncertain = _pvec_uncertain(m, slot, page)
    return True, uncertain


def _do_wp_page_5_18(m, p, slot, page, unshare):
    reuse, uncertain = _wp_can_reuse_anon_folio(m, slot, page)
    if not reuse:
        _copy(m, p, slot, page, unshare)
        return
    page_move_anon_rmap(m, page)
    _reuse_maybe(m, p, slot, page, uncertain)


def _do_wp_page_5_19(m, p, slot, page, unshare):
    # >= 5.19 do_wp_page(): PageAnonExclusive -> reuse at once (6c287605fd56);
    # >= 6.7 the rest moved into wp_can_reuse_anon_folio() (same checks as 5.18)
    uncertain = False
    if page.anon and not page.anon_exclusive:
        reuse, uncertain = _wp_can_reuse_anon_folio(m, slot, page)
        if not reuse:
            _copy(m, p, slot, page, unshare)
            return
        page_move_anon_rmap(m, page)           # sets PageAnonExclusive
    elif not page.anon:
        _copy(m, p, slot, page, unshare)
        return
    page.anon_exclusive = True
    if unshare:
        # FAULT_FLAG_UNSHARE on an exclusive page: nothing to do, pte stays read-only
        return
    _reuse_maybe(m, p, slot, page, uncertain)


# do_wp_page() per era
_DO_WP_PAGE = {
    Era.LE_5_0: _do_wp_page_le_5_0,
    Era.V5_1_TO_5_8: _do_wp_page_5_1,
    Era.V5_9_TO_5_17: _do_wp_page_5_9,
    Era.V5_18: _do_wp_page_5_18,
    Era.V5_19_TO_6_6: _do_wp_page_5_19,
    Era.GE_6_7: _do_wp_page_5_19,
}


# ----------------------------------------------------------------------------- swap


def ksm_might_need_to_copy(m: Machine, p: Process, slot: PageSlot, page: Frame) -> Frame:
    """mm/ksm.c ksm_might_need_to_copy(): a KSM page with its stable node (and no
    KSM_RUN_UNMERGE) or a page of our own anon_vma is used as is; else a copy."""
    if page.ksm:
        if page.stable_node is not None:
            return page
    else:
        # non-KSM: anon_vma root and index match for pages of this fork family
        return page
    new = m.alloc_page(page.content, policy_node(m, p, slot))      # alloc_page_vma()
    # >= 5.18 ksm_might_need_to_copy(): count_vm_event(KSM_SWPIN_COPY)
    if m.has("ksm_swpin_copy"):
        m.count("ksm_swpin_copy")
    return new


def should_try_to_free_swap(m: Machine, page: Frame, write: bool,
                            slot: PageSlot | None = None) -> bool:
    """>= 5.18 mm/memory.c should_try_to_free_swap() (c145e0b47c77).  Swap more than half
    full (mem_cgroup_swap_full) is the environment's ``swap_full``; VM_LOCKED is the
    slot's ``locked`` (mlock)."""
    if not page.swapcache:
        return False
    if m.env("swap_full") or (slot is not None and slot.locked):
        return True
    return write and not page.ksm and page.refcount == 2


def do_swap_page(m: Machine, p: Process, slot: PageSlot, *, write: bool) -> None:
    pte = slot.pte
    swapcache = pte.swap
    assert swapcache is not None
    # lookup_swap_cache hits: a quiet system still has the page in the swap cache
    # (seen on the host's 6.18); the lookup reference becomes the pte's.  A clean swap-cache page
    # of an ordinary anon page is the first thing reclaim takes, though: under any memory
    # pressure from elsewhere the swap-in reads a new frame (seen on the shared host), so
    # the model allows "copied" there.  A KSM page keeps the exact prediction, and so does
    # a pinned page (reclaim cannot free a page someone holds a reference to).
    if not swapcache.ksm and m.pins_of(swapcache) == 0:
        m.may_also(slot, "copied")
    m.get_page(swapcache)
    page = ksm_might_need_to_copy(m, p, slot, swapcache)
    if page is not swapcache:
        m.put_page(swapcache)                  # the copy is mapped instead
    exclusive_entry = pte.swp_exclusive
    make_writable = False
    was_read = not write
    if m.has("anon_exclusive"):
        # >= 5.19 do_swap_page(): exclusive from the swp pte or from a fresh copy
        exclusive = (not page.ksm) and (exclusive_entry or page is not swapcache)
        swapcache.swap_refs -= 1               # swap_free(entry)
        if should_try_to_free_swap(m, page, write, slot):
            try_to_free_swap(m, page)
        if not page.ksm and (exclusive or page.refcount == 1):
            if write:
                make_writable, write = True, False
            elif m.has("swapin_map_exclusive_writable") and slot.prot == "rw":
                # >= 6.11 do_swap_page() ("mm: swap: reuse exclusive folio directly
                # instead of wp page faults"): an exclusive page is mapped writable (not
                # dirty) even on a read fault
                make_writable = True
            page.anon_exclusive = True
    elif m.has("swapin_refcount"):
        # 5.18 do_swap_page() (c145e0b47c77): swap_free, should_try_to_free_swap(), then a
        # write maps the page writable if it is a fresh copy or page_count == 1; never KSM
        swapcache.swap_refs -= 1               # swap_free(entry)
        if should_try_to_free_swap(m, page, write, slot):
            try_to_free_swap(m, page)
        if write and not page.ksm and (page is not swapcache or page.refcount == 1):
            make_writable, write = True, False
    else:
        # <= 5.17 do_swap_page(): FAULT_FLAG_WRITE && reuse_swap_page(page) -> writable
        # (mapcount + swapcount based; PageKsm -> false)
        if write and page is swapcache and reuse_swap_page(m, page):
            make_writable, write = True, False
        elif write and page is not swapcache:
            make_writable, write = True, False
        swapcache.swap_refs -= 1               # swap_free(entry)
        # <= 5.17 do_swap_page(): if (mem_cgroup_swap_full(page) || (vma->vm_flags &
        # VM_LOCKED) || PageMlocked(page)) try_to_free_swap(page).  A singly-mapped KSM
        # page then leaves the swap cache with page_count 1, and the write below goes
        # through do_wp_page() -> 5.1-5.8 reuse_ksm_page(): the frame is kept
        if m.env("swap_full") or slot.locked:
            try_to_free_swap(m, page)
    pte.swap, pte.swp_exclusive = None, False
    pte.present, pte.frame = True, page
    pte.writable = make_writable and maybe_mkwrite(slot)   # maybe_mkwrite(pte_mkdirty())
    pte.dirty = make_writable and not was_read

    m.page_add_rmap(page)
    # (a KSM page copied by ksm_might_need_to_copy stays in the swap cache, unmapped,
    # until reclaim: never, on a quiet system)
    if write:
        # do_swap_page(): if (vmf->flags & FAULT_FLAG_WRITE) ret |= do_wp_page(vmf)
        do_wp_page(m, p, slot)


# ----------------------------------------------------------------------------- zap / fork


def zap_pte(m: Machine, slot: PageSlot) -> None:
    """zap_pte_range() for one pte (munmap, MADV_DONTNEED, exit_mmap)."""
    pte = slot.pte
    slot.maybe_absent = False
    if pte.present:
        f = pte.frame
        if f.zero:
            # >= 6.6 zap_pte_range(): ksm_might_unmap_zero_page()
            if pte.ksm_zero:
                m.count("ksm_zero_pages", -1)
        else:
            m.page_remove_rmap(f)
            free_swap_cache(m, f)              # free_pages_and_swap_cache()
            m.put_page(f)
    elif pte.swap is not None:
        f = pte.swap
        f.swap_refs -= 1                       # free_swap_and_cache()
        if f.swap_refs == 0 and f.swapcache and f.mapcount == 0:
            delete_from_swap_cache(m, f)       # __try_to_reclaim_swap(TTRS_UNMAPPED)
    pte.clear()


def copy_pte(m: Machine, src: PageSlot, dst: PageSlot) -> None:
    """copy_page_range -> copy_present_pte / copy_nonpresent_pte for one private pte.

    All eras: copy_page_range() skips a vma without an anon_vma (vma_needs_copy(): "Don't
    copy ptes where a page fault will fill them correctly"), so zero-page ptes of a vma
    that never had an anonymous page are not copied: the child starts empty there."""
    sp, dp = src.pte, dst.pte
    dst.had_anon = src.had_anon
    r = src.region
    if r is not None and not src.had_anon and not (r.anon_vma and not r.split):
        # not certain that this page's vma has an anon_vma
        if not (sp.present and sp.frame.zero and (r.anon_vma or r.maybe_merged_anon_vma)):
            return
        # its vma may share an anon_vma with another part of the region (before a split)
        # or with a neighbour it merged with (vma_merge at mmap/mprotect/madvise): then the
        # zero pte is copied.  The model copies it and marks the child's pte maybe absent.
        dst.maybe_absent = True
    if sp.present:
        f = sp.frame
        if not f.zero:
            m.get_page(f)
            m.page_add_rmap(f)                 # page_dup_rmap
            # >= 5.19 copy_present_pte(): page_try_dup_anon_rmap clears PageAnonExclusive
            if m.has("anon_exclusive"):
                f.anon_exclusive = False
        # is_cow_mapping && pte_write -> ptep_set_wrprotect on both sides
        sp.writable = False
        dp.present, dp.frame, dp.writable, dp.dirty = True, f, False, sp.dirty
        dp.ksm_zero = sp.ksm_zero
        if src.maybe_absent:
            dst.maybe_absent = True
    elif sp.swap is not None:
        sp.swap.swap_refs += 1                 # swap_duplicate
        # >= 5.19 copy_nonpresent_pte(): pte_swp_clear_exclusive on the parent
        sp.swp_exclusive = False
        dp.swap = sp.swap


# ----------------------------------------------------------------------------- mprotect


def change_pte_range(m: Machine, slot: PageSlot, prot: str) -> None:
    pte = slot.pte
    if prot in ("ro", "none"):
        # PROT_READ / PROT_NONE (x86: _PAGE_PROTNONE, still present for pagemap): no write
        pte.writable = False
        return
    if not pte.present or pte.writable:
        return
    f = pte.frame
    # >= 6.0 change_pte_range(): MM_CP_TRY_CHANGE_WRITABLE + can_change_pte_writable()
    # (64fe24a3e05e): only an exclusive anon page; 6.0-6.1 also needs pte_dirty (>= 6.2
    # "mm/mprotect: allow clean exclusive anon pages to be writable"); <= 5.19 a private
    # anon pte stays read-only until the write fault
    if m.has("mprotect_try_change_writable") and not f.zero and f.anon and not f.ksm \
            and f.anon_exclusive and (pte.dirty or m.has("mprotect_clean_writable")):
        pte.writable = True


# ----------------------------------------------------------------------------- reclaim


def madvise_pageout_page(m: Machine, slot: PageSlot) -> None:
    """madvise_cold_or_pageout_pte_range() + shrink_page_list() for one pte.

    Pages mapped by more than one pte are skipped (``page_mapcount(page) != 1``); the zero
    page and swapped ptes are skipped.  The page goes to the swap cache, is unmapped
    (rmap_walk_ksm for a KSM page) and written out; without memory pressure it stays in
    the swap cache (seen on the host's 6.18)."""
    pte = slot.pte
    if not pte.present:
        return
    f = pte.frame
    if f.zero or f.mapcount != 1:
        return
    if f.ksmd_pvec and m.env("ksmd_pvec"):
        # madvise_cold_or_pageout_pte_range(): folio_isolate_lru() fails for a page not on
        # the LRU yet: ksmd's copy may still sit in its CPU's LRU-add batch (the scenario's
        # lru_add_drain() is local), and the page stays mapped
        return
    if not f.swapcache:
        f.swapcache = True                     # add_to_swap
        m.get_page(f)
    if f.ksm:
        from ksmdiff.model import ksm as K
        if not K.rmap_walk_ksm_finds(f, slot):
            # all eras: shrink_folio_list(): try_to_unmap() left the page mapped ->
            # activate_locked; it stays in the swap cache (swap is not full here)
            return
    # try_to_unmap_one(): the pte becomes a swap entry (exclusive if the page was AE)
    f.swap_refs += 1
    excl = f.anon_exclusive and m.has("anon_exclusive")
    f.anon_exclusive = False
    m.page_remove_rmap(f)
    m.put_page(f)
    pte.clear()
    pte.swap = f
    pte.swp_exclusive = excl
