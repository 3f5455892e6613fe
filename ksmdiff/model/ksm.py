"""mm/ksm.c: the ksmd scan and merge path, lazy stable-node removal, unmerging.

Read next to mm/ksm.c; each function is named after the one it mirrors.  Simplifications
(each one documented where it is made):

* The stable tree is a list of nodes keyed by content; a stable-tree walk visits every
  node (a real rb-tree walk visits the nodes on one path), so a stale node is dropped by
  the first search of a scan.  Dups of one content form a chain implicitly (same content).
* The unstable tree is a dict keyed by (nid, content), rebuilt at every full scan
  (``root_unstable_tree = RB_ROOT`` when ``seqnr`` advances).
* NUMA (CONFIG_NUMA; 3.9, 90bd6fd31c80 "ksm: allow trees per NUMA node": every era): one
  stable and one unstable tree per node,
  ``root_stable_tree + nid`` / ``root_unstable_tree + nid`` with nid = get_kpfn_nid() of
  the page, all node 0 while merge_across_nodes is 1.  A page's node is where it was
  allocated (memory.policy_node); pages never migrate here, so ``migrate_nodes`` and the
  stable_tree_search() check of a node whose page moved are left out.
* Address order inside one mm: regions by descending mmap sequence (x86-64 mmap is
  top-down, so a later mmap usually lies below the earlier ones), pages ascending.
  mm order: the order in which ``__ksm_enter`` added the mms (the cursor rests on
  ``ksm_mm_head`` between full scans, so new mms go to the tail).
* Runs of pages (LTP ksm01: tens of thousands of pages in a row merge into one node): the
  scan passes over a page already merged into its node (cmp_and_merge_page()'s first test
  returns), and a page that follows one merged into a stable node merges by
  _merge_into_last_node(), which takes cmp_and_merge_page()'s steps where the kernel's
  path is certain and hands the page back to it wherever a step could go another way.
* ksmd's transient references are held explicitly (``follow_page(FOLL_GET)`` of the
  scanned page, ``get_mergeable_page`` of the unstable-tree page, the stable-tree
  search's ``get_ksm_page``), so ``write_protect_page``'s
  ``mapcount + 1 + swapped == refcount`` check is the kernel's formula.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Optional

from ksmdiff.model import memory as M
from ksmdiff.model.machine import Machine
from ksmdiff.model.state import (Frame, PageSlot, Process, RmapItem, StableNode,
                                 ZERO_CONTENT)

EFAULT = 14


def addr_order(key: tuple[int, int]) -> tuple[int, int]:
    seq, index = key
    return (-seq, index)


# ----------------------------------------------------------------------------- mm slots


def ksm_enter(m: Machine, p: Process) -> None:
    """__ksm_enter(): set MMF_VM_MERGEABLE, add an mm_slot at the tail of ksm_mm_head."""
    if not p.ksm_entered:
        p.ksm_entered = True
        m.ksm.mm_slots.append(p)


def ksm_exit(m: Machine, p: Process) -> None:
    """__ksm_exit(): an mm with no rmap_items is freed at once (easy_to_free); otherwise
    ksmd finds it dead on its next visit and removes its rmap_items then."""
    if p.ksm_entered and not p.rmap_items and p in m.ksm.mm_slots:
        m.ksm.mm_slots.remove(p)


# ----------------------------------------------------------------------------- stable tree


def get_kpfn_nid(m: Machine, page: Frame) -> int:
    """get_kpfn_nid(): the tree a page belongs in, 0 while merge_across_nodes is 1, else
    pfn_to_nid() of the page."""
    return 0 if m.ksm.knobs.merge_across_nodes else page.nid


def get_ksm_page(m: Machine, node: StableNode) -> Optional[Frame]:
    """get_ksm_page() / ksm_get_folio(): the page if the keyhole still matches, else the
    node is stale and is removed (``ksm:ksm_remove_ksm_page``)."""
    if _node_is_stale(node):
        remove_node_from_stable_tree(m, node)
        return None
    return node.kpfn


def _node_is_stale(node: StableNode) -> bool:
    """get_ksm_page()'s test: the keyhole no longer matches (the page was freed, or its
    mapping no longer names this node), or get_page_unless_zero() fails (frozen by
    reuse_ksm_page: stale, no spinning)."""
    page = node.kpfn
    if page.freed or not page.ksm or page.stable_node is not node:
        return True
    return page.refcount == 0 and not page.swapcache


def remove_node_from_stable_tree(m: Machine, node: StableNode) -> None:
    n = len(node.hlist)
    for item in node.hlist:
        item.head = None
    # each item: rmap_item->hlist.next ? pages_sharing-- : pages_shared-- (every item but
    # the last has a next one), counted once for the node
    if n > 1:
        m.count("pages_sharing", -(n - 1))
    if n:
        m.count("pages_shared", -1)
    node.hlist.clear()
    if node in m.ksm.stable_tree:
        m.ksm.stable_tree.remove(node)
    # >= 6.4 trace_ksm_remove_ksm_page(kpfn) (739100c88f49): the stable_nodes_removed counter
    m.count("stable_nodes_removed")


def stable_tree_search(m: Machine, page: Frame) -> Optional[Frame]:
    """stable_tree_search(): the KSM page with this content (a dup that can take one more
    sharer, the fullest such one: stable_node_dup()), or the page itself if it is already
    KSM ("ksm page forked")."""
    if page.ksm and page.stable_node is not None:
        return page
    nid = get_kpfn_nid(m, page)               # root = root_stable_tree + nid
    # the walk: stale nodes found on the way go (get_ksm_page(); removing one node leaves
    # the others' keyholes as they were, so they are removed after the walk, in order)
    stale = None
    content = page.content
    max_sharing = m.ksm.knobs.max_page_sharing
    best: Optional[StableNode] = None
    best_len = 0
    for node in m.ksm.stable_tree:
        if node.nid != nid:
            continue
        if _node_is_stale(node):
            if stale is None:
                stale = []
            stale.append(node)
            continue
        c = node.kpfn.content
        if c is not content and c != content:
            continue
        # >= 4.13 is_page_sharing_candidate() (2c653d0ee2ae): rmap_hlist_len &&
        # rmap_hlist_len < ksm_max_page_sharing ("Check that at least one mapping still
        # exists"): a node whose rmap_items have all gone (its page kept only by a pin or
        # the swap cache) takes no new sharer, although it stays valid; a node that still
        # has items does, even when its page is no longer mapped (seen on 6.18)
        n = len(node.hlist)                    # rmap_hlist_len
        if n >= max_sharing or not n:
            continue
        if best is None or n > best_len:
            best, best_len = node, n
    if stale is not None:
        for node in stale:
            remove_node_from_stable_tree(m, node)
    return best.kpfn if best is not None else None


def stable_tree_insert(m: Machine, kpage: Frame) -> StableNode:
    """stable_tree_insert(): a new node (a new dup in the chain if this content already has
    full dups), then set_page_stable_node(kpage, node)."""
    node = StableNode(m.ksm.next_seq, kpage, kpage.content,
                      nid=get_kpfn_nid(m, kpage))   # DO_NUMA(stable_node->nid = nid)
    m.ksm.next_seq += 1
    kpage.stable_node = node
    m.ksm.stable_tree.append(node)
    return node


def stable_tree_append(m: Machine, item: RmapItem, node: StableNode) -> None:
    item.head = node
    node.hlist[item] = None                    # hlist_add_head
    m.count("pages_sharing" if len(node.hlist) > 1 else "pages_shared")


def remove_rmap_item_from_tree(m: Machine, item: RmapItem) -> None:
    if item.head is not None:
        node = item.head
        page = get_ksm_page(m, node)           # GET_KSM_PAGE_LOCK
        if page is None:
            return                             # the node went, and took the item with it
        del node.hlist[item]
        m.count("pages_sharing" if node.hlist else "pages_shared", -1)
        item.head = None
    elif item.unstable:
        # rb_erase(&rmap_item->node, root_unstable_tree + NUMA(rmap_item->nid)): the item
        # keeps the key it was inserted under
        tree = m.ksm.unstable_tree
        entry = tree.get(item.tree_key)
        if entry is not None and entry[0] is item:
            del tree[item.tree_key]
        item.unstable = False
        item.tree_key = None


# ----------------------------------------------------------------------------- merging


def write_protect_page(m: Machine, slot: PageSlot, page: Frame) -> int:
    pte = slot.pte
    if not pte.present or pte.frame is not page:
        return EFAULT
    # all eras: page_address_in_vma() needs page_anon_vma(), which is NULL for a KSM page
    # (mapping has PAGE_MAPPING_KSM): a page that is already KSM -- e.g. one left with a
    # NULL stable node when try_to_merge_two_pages() broke only the *other* pte of a
    # forked page -- is never write-protected (merged) again (found on the host's 6.18)
    if page.ksm:
        return EFAULT
    # >= 5.19 also when PageAnonExclusive (the pte may be clean and read-only)
    anon_exclusive = m.has("anon_exclusive")
    if pte.writable or pte.dirty or (anon_exclusive and page.anon_exclusive):
        swapped = int(page.swapcache)
        # ptep_clear_flush, then: page_mapcount(page) + 1 + swapped != page_count(page)
        # -> restore the pte, -EFAULT (a pin or O_DIRECT holds the page)
        if page.mapcount + 1 + swapped != page.refcount:
            return EFAULT
        # >= 5.19: page_try_share_anon_rmap() (fails only for FOLL_PIN pins)
        if anon_exclusive:
            page.anon_exclusive = False
        pte.writable = False
        pte.dirty = False                      # pte_mkclean(pte_wrprotect()), set_page_dirty
    return 0


def replace_page(m: Machine, slot: PageSlot, page: Frame, kpage: Frame) -> int:
    pte = slot.pte
    if kpage.zero:
        # use_zero_pages: a special zero pte, no refcount; >= 6.6 pte_mkdirty +
        # ksm_map_zero_page() counts it (e2942062e01d)
        pte.frame = kpage
        pte.ksm_zero = m.has("ksm_zero_pages")
        if pte.ksm_zero:
            m.count("ksm_zero_pages")
    else:
        kpage.refcount += 1                    # get_page
        kpage.mapcount += 1                    # page_add_anon_rmap
        pte.frame = kpage
    pte.writable = pte.dirty = False
    page.mapcount -= 1                         # page_remove_rmap (an anon page, not zero)
    if page.mapcount == 0 and page.swapcache:
        M.try_to_free_swap(m, page)
    m.put_page(page)
    return 0


def try_to_merge_one_page(m: Machine, slot: PageSlot, page: Frame,
                          kpage: Optional[Frame]) -> int:
    if page is kpage:                          # ksm page forked
        return 0
    if not page.anon:
        return EFAULT
    page.locked = True                         # trylock_page succeeds (quiet)
    err = EFAULT
    if write_protect_page(m, slot, page) == 0:
        if kpage is None:
            # set_page_stable_node(page, NULL): PageKsm with no node yet
            page.ksm = True
            page.stable_node = None
            err = 0
        elif page.content is kpage.content or page.content == kpage.content:
            # pages_identical()
            err = replace_page(m, slot, page, kpage)
    page.locked = False
    return err


def rmap_walk_ksm_finds(page: Frame, slot: PageSlot) -> bool:
    """all eras: rmap_walk_ksm() (try_to_unmap() of a KSM page) reaches the pte of ``slot``:
    only through the page's stable node (none: nothing is found), and of each of its
    rmap_items only the vmas in rmap_item->anon_vma's tree that cover rmap_item->address
    (its own mm first, then other mms: "forked from the original since ksmd passed").  A
    vma of another fork family, or a parent's vma under its child's item, is not found."""
    node = page.stable_node
    r = slot.region
    if node is None or r is None:
        return False
    key = (r.seq, slot.index)
    chain = r.av_chain
    return any(it.key == key and it.anon_vma in chain for it in node.hlist)


def try_to_merge_with_ksm_page(m: Machine, slot: PageSlot, item: RmapItem, page: Frame,
                               kpage: Optional[Frame]) -> int:
    if not slot.mapped or not slot.mergeable:  # find_mergeable_vma()
        return EFAULT
    err = try_to_merge_one_page(m, slot, page, kpage)
    if not err:
        # all eras: rmap_item->anon_vma = vma->anon_vma (get_anon_vma)
        item.anon_vma = slot.region.av if slot.region is not None else None
    return err


def try_to_merge_two_pages(m: Machine, slot: PageSlot, item: RmapItem, page: Frame,
                           tree_proc: Process, tree_slot: PageSlot, tree_item: RmapItem,
                           tree_page: Frame) -> Optional[Frame]:
    err = try_to_merge_with_ksm_page(m, slot, item, page, None)
    if not err:
        err = try_to_merge_with_ksm_page(m, tree_slot, tree_item, tree_page, page)
        # If that fails, we have a ksm page with only one pte pointing to it: break it.
        if err:
            m.ksm_churn = True
            break_cow(m, item.proc, slot)
    return None if err else page


def try_to_merge_with_zero_page(m: Machine, slot: PageSlot, page: Frame) -> int:
    """use_zero_pages && checksum == zero_checksum -> merge with ZERO_PAGE (>= 4.11)."""
    if not (m.ksm.knobs.use_zero_pages and page.content == ZERO_CONTENT):
        return 1
    if not slot.mergeable:
        return 0
    return try_to_merge_one_page(m, slot, page, m.zero_page)


def unstable_tree_search_insert(m: Machine, p: Process, item: RmapItem, slot: PageSlot,
                                page: Frame):
    nid = get_kpfn_nid(m, page)               # root = root_unstable_tree + nid
    entry = m.ksm.unstable_tree.get((nid, page.content))
    if entry is not None:
        tree_item, tree_proc, tree_slot = entry
        tree_page = tree_slot.pte.frame if tree_slot.pte.present else None
        # get_mergeable_page(): NULL if no longer an anon page -> give up
        if tree_page is None or tree_page.zero or not tree_page.anon:
            return None
        if tree_page is page:
            return None
        # all eras (3.9+): a tree page now on another node is only merged with when
        # merge_across_nodes: !ksm_merge_across_nodes && page_to_nid(tree_page) != nid
        if not m.ksm.knobs.merge_across_nodes and tree_page.nid != nid:
            return None
        if tree_page.content != page.content:
            return None
        return entry
    key = (nid, page.content)
    m.ksm.unstable_tree[key] = (item, p, slot)
    item.unstable = True
    item.tree_key = key
    return None


def _checksum_changed(item: RmapItem, page: Frame) -> bool:
    """calc_checksum() differs from rmap_item->oldchecksum: remember it and stop (a new
    rmap_item starts from 0, so a page needs two scans to reach the unstable tree)."""
    checksum = page.content
    old = item.oldchecksum
    if old is not checksum and old != checksum:
        item.oldchecksum = checksum
        return True
    return False


def cmp_and_merge_page(m: Machine, p: Process, slot: PageSlot, item: RmapItem) -> None:
    page = slot.pte.frame
    assert page is not None
    stable_node = page.stable_node if page.ksm else None   # page_stable_node()
    if stable_node is not None and item.head is stable_node:
        return
    if m.has("ksm_checksum_first") and stable_node is None:
        # >= 6.11 cmp_and_merge_page() (d58a361b0350): a non-KSM page leaves the trees,
        # then checksum and the zero page come first: a fast-changing anon page does not
        # search the stable tree
        remove_rmap_item_from_tree(m, item)
        if _checksum_changed(item, page):
            return
        if try_to_merge_with_zero_page(m, slot, page) == 0:
            return
    kpage = stable_tree_search(m, page)
    if kpage is page and item.head is stable_node:
        return
    if item.head is not None or item.unstable:    # (an item in neither tree stays as it is)
        remove_rmap_item_from_tree(m, item)
    if kpage is not None:
        kpage.refcount += 1                    # the search's reference (get_page)
        err = try_to_merge_with_ksm_page(m, slot, item, page, kpage)
        if not err:
            # max_page_sharing_bypass for a forked KSM page: append anyway
            stable_tree_append(m, item, kpage.stable_node)
        m.put_page(kpage)
        return
    if not m.has("ksm_checksum_first"):
        # <= 6.10 cmp_and_merge_page(): checksum after the stable-tree search
        if _checksum_changed(item, page):
            return
        if try_to_merge_with_zero_page(m, slot, page) == 0:
            return
    entry = unstable_tree_search_insert(m, p, item, slot, page)
    if entry is None:
        return
    tree_item, tree_proc, tree_slot = entry
    tree_page = tree_slot.pte.frame
    m.get_page(tree_page)                      # get_mergeable_page(): follow_page(FOLL_GET)
    kpage = try_to_merge_two_pages(m, slot, item, page, tree_proc, tree_slot, tree_item,
                                   tree_page)
    m.put_page(tree_page)
    if kpage is None:
        return
    remove_rmap_item_from_tree(m, tree_item)
    node = stable_tree_insert(m, kpage)
    stable_tree_append(m, tree_item, node)
    stable_tree_append(m, item, node)


# ----------------------------------------------------------------------------- unmerge


def break_ksm(m: Machine, p: Process, slot: PageSlot) -> None:
    pte = slot.pte
    if not pte.present:
        return
    f = pte.frame
    if slot.prot == "none" and m.has("follow_page_skips_protnone") \
            and not m.has("break_ksm_unshare"):
        # 6.1 break_ksm(): follow_page() finds no page behind a PROT_NONE pte (474098edac26);
        # from 6.2 break_ksm() walks the page table itself (walk_page_range_vma())
        return
    # >= 6.6 break_ksm(): also KSM-placed zero pages (is_ksm_zero_pte, 79271476b336)
    if not (f.ksm or (pte.ksm_zero and m.has("ksm_zero_pages"))):
        return
    if slot.uffd_wp and not m.has("break_ksm_unshare"):
        # 5.7..6.1 break_ksm(): the write fault on a uffd-wp pte goes to handle_userfault(),
        # which without FAULT_FLAG_ALLOW_RETRY returns VM_FAULT_SIGBUS; the loop ends and
        # returns 0: the page stays KSM (fixed by 6cce3314b928: an unshare fault proceeds)
        return
    if m.has("break_ksm_unshare"):
        # >= 6.2 break_ksm() (6cce3314b928): FAULT_FLAG_UNSHARE|FAULT_FLAG_REMOTE: a new
        # exclusive copy, the pte stays read-only; no page reference held
        M.handle_mm_fault(m, p, slot, unshare=True)
    else:
        # <= 6.1 break_ksm(): follow_page(FOLL_GET) is held across
        # handle_mm_fault(FAULT_FLAG_WRITE|FAULT_FLAG_REMOTE), so page_count >= 2 and even
        # 5.1-5.8 copies (no reuse_ksm_page in place); the pte ends up writable
        M.handle_mm_fault(m, p, slot, write=True, extra_refs=1)


def break_cow(m: Machine, p: Process, slot: PageSlot) -> None:
    if slot.mapped and slot.mergeable:         # find_mergeable_vma()
        old = slot.pte.frame
        break_ksm(m, p, slot)
        new = slot.pte.frame
        if new is not None and new is not old:
            # the copy was allocated on ksmd's CPU, after the scan's lru_add_drain_all()
            new.ksmd_pvec = True


def unmerge_ksm_pages(m: Machine, p: Process, slots: list[PageSlot]) -> None:
    for s in slots:
        break_ksm(m, p, s)


# ----------------------------------------------------------------------------- the scan


def lru_add_drain_all(m: Machine) -> None:
    """Every per-CPU LRU-add batch is drained: the pages in one are those allocated since
    the last drain (alloc_page() puts each new page in one), the newest frames; ksmd's
    own copies (break_cow: ksmd_pvec) are among them, made after its scan's drain."""
    for f in m.frames_newest_first():
        if not f.maybe_pvec:
            break                              # (drained before, and so is every older one)
        if not f.freed:
            f.maybe_pvec = False
            f.ksmd_pvec = False


def skip_age(age: int) -> int:
    """>= 6.7 skip_age(): how many scans to skip next, by how often merging failed."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


def should_skip_rmap_item(m: Machine, page: Frame, item: RmapItem) -> bool:
    """>= 6.7 should_skip_rmap_item() (5e924ff54d08, smart scan): a page that is not KSM is
    skipped for skip_age(age) scans once its rmap_item is 3 scans old; a skipped item
    leaves its tree (remove_rmap_item_from_tree) and counts in pages_skipped.  The age is
    never reset (a new rmap_item starts at 0)."""
    if not m.ksm.knobs.smart_scan:
        return False
    if page.ksm:                               # folio_test_ksm(): never skipped
        return False
    age = item.age
    if age != 255:                             # U8_MAX
        item.age += 1
    if age < 3:
        return False
    if not item.remaining_skips:
        item.remaining_skips = skip_age(age)
        return False
    m.count("pages_skipped")
    item.remaining_skips -= 1
    remove_rmap_item_from_tree(m, item)
    return True


def ksm_do_scan_full(m: Machine) -> None:
    """One full scan: scan_get_next_rmap_item() over every mm_slot, cmp_and_merge_page()
    for each anonymous page of a VM_MERGEABLE vma, dropping the rmap_items of addresses
    that no longer hold one (get_next_rmap_item / remove_trailing_rmap_items).  Faults
    on the way (break_cow()) are ksmd's: memory.policy_node."""
    m.foreign_fault = True
    try:
        _ksm_do_scan_full(m)
    finally:
        m.foreign_fault = False


def _ksm_do_scan_full(m: Machine) -> None:
    ksm = m.ksm
    # start of a full scan: lru_add_drain_all(); the unstable tree restarts empty (the
    # items in it are the ones with UNSTABLE_FLAG: unstable_tree_search_insert() sets both)
    lru_add_drain_all(m)
    for entry in ksm.unstable_tree.values():
        entry[0].unstable = False
        entry[0].tree_key = None
    ksm.unstable_tree.clear()
    for p in list(ksm.mm_slots):
        if not p.alive:
            # ksm_test_exit(mm): remove_trailing_rmap_items(all), free the mm_slot
            for key in sorted(p.rmap_items, key=addr_order):
                remove_rmap_item_from_tree(m, p.rmap_items[key])
            p.rmap_items.clear()
            ksm.mm_slots.remove(p)
            continue
        # the pages in address order (regions by descending mmap sequence)
        regions = sorted(p.regions.values(), key=lambda r: -r.seq)
        seqs = {r.seq for r in regions}
        if seqs.issuperset(map(_region_seq, p.rmap_items)):   # every item in a region
            _scan_mm(m, p, regions)
        else:
            _scan_mm_with_gone_regions(m, p, regions)
    prune_unreferenced_stale_nodes(m)
    ksm.full_scans += 1
    m.count("full_scans")                      # ksm_scan.seqnr++ (sysfs full_scans)


_region_seq = itemgetter(0)                    # an rmap_item key's region (mmap sequence)


def _scan_mm(m: Machine, p: Process, regions: list) -> None:
    """scan_get_next_rmap_item() over one mm whose rmap_items all name pages of its
    regions: every page of a VM_MERGEABLE vma in address order, and the rmap_item of a
    page no longer in one goes in its place (get_next_rmap_item() finds it in the list
    before the next address it visits).

    A page that follows one merged into a stable node takes the short way of
    _merge_into_last_node() where the kernel's path is certain (ksm01: tens of thousands
    of pages in a row merge into one node)."""
    rmap_items = p.rmap_items
    smart_scan = m.ksm.knobs.smart_scan
    protnone_skips = m.has("follow_page_skips_protnone")
    checksum_first = m.has("ksm_checksum_first")
    last_node = None        # the node the page visited last merged into (or None)
    for r in regions:
        seq = r.seq
        for s in r.pages:
            if not (s.mapped and s.mergeable):
                if rmap_items:
                    item = rmap_items.pop((seq, s.index), None)
                    if item is not None:
                        remove_rmap_item_from_tree(m, item)
                        last_node = None
                continue
            key = (seq, s.index)
            pte = s.pte
            page = pte.frame if pte.present else None
            if page is not None and protnone_skips and s.prot == "none":
                # 6.1-6.4 follow_page(): pte_protnone() && !gup_can_follow_protnone() ->
                # no page (474098edac26 .. d74943a2f3cd)
                page = None
            if page is None or page.zero or not page.anon:
                # follow_page() found nothing (or not PageAnon): the old item goes
                item = rmap_items.pop(key, None)
                if item is not None:
                    remove_rmap_item_from_tree(m, item)
                    last_node = None
                continue
            item = rmap_items.get(key)
            if item is None:
                item = rmap_items[key] = RmapItem(p, key)
            else:
                head = item.head
                if head is not None and page.ksm and page.stable_node is head \
                        and page.refcount > 0:
                    # cmp_and_merge_page(): "if (stable_node && rmap_item->head ==
                    # stable_node) return" -- a page already merged into its node (and
                    # should_skip_rmap_item() never skips a KSM page; follow_page's
                    # reference goes again): nothing changes
                    continue
            was_ksm = page.ksm
            if last_node is not None and not was_ksm and item.head is None \
                    and not item.unstable \
                    and _merge_into_last_node(m, s, item, page, last_node, checksum_first):
                continue
            if smart_scan and should_skip_rmap_item(m, page, item):
                last_node = None
                continue                       # >= 6.7 smart scan: goto next_page
            page.refcount += 1                 # follow_page(FOLL_GET)
            cmp_and_merge_page(m, p, s, item)
            m.put_page(page)
            # a page that was not KSM went through stable_tree_search()'s walk (every
            # stale node of its tree gone) and, if it now maps its item's node's page,
            # merged into that node: the stable merge or the two-page one (whose search
            # found no candidate node for that content)
            head = item.head
            last_node = head if (head is not None and not was_ksm and not smart_scan
                                 and s.pte.present and s.pte.frame is head.kpfn) else None


def _merge_into_last_node(m: Machine, slot: PageSlot, item: RmapItem, page: Frame,
                          node: StableNode, checksum_first: bool) -> bool:
    """cmp_and_merge_page() for a page (not KSM; its rmap_item in neither tree) visited
    right after a page that merged into ``node``, when the kernel's path is certain:
    nothing but that merge happened since that page's stable_tree_search() (which
    removed every stale node of the tree and found no other candidate for the content,
    or only ones no fuller than ``node``, which has grown since), so the search finds
    ``node`` again if it is still a sharing candidate; then try_to_merge_with_ksm_page()
    and stable_tree_append().  Every step is taken as those functions take it, in their
    order; where one could go another way (a checksum, the zero page, a full node, a
    page whose counts refuse write-protection, the swap cache) it returns False having
    changed nothing, and the page takes the long way."""
    content = page.content
    if checksum_first:
        # >= 6.11 cmp_and_merge_page() (d58a361b0350): remove_rmap_item_from_tree() (in
        # neither tree: nothing), the checksum must be unchanged and the zero page not
        # taken (try_to_merge_with_zero_page())
        old = item.oldchecksum
        if old is not content and old != content:
            return False
        if m.ksm.knobs.use_zero_pages and content == ZERO_CONTENT:
            return False
    # stable_tree_search(): the same node, if is_page_sharing_candidate() still holds
    n = len(node.hlist)
    if not 0 < n < m.ksm.knobs.max_page_sharing or get_kpfn_nid(m, page) != node.nid:
        return False
    kpage = node.kpfn
    c = kpage.content
    if c is not content and c != content:
        return False
    # try_to_merge_one_page() -> write_protect_page(): page_mapcount(page) + 1 + swapped
    # != page_count(page) -> -EFAULT, page_count counting follow_page()'s reference (the
    # long way takes it around cmp_and_merge_page(); here it is left out on both sides);
    # replace_page() -> try_to_free_swap() for a page in the swap cache: the long way
    pte = slot.pte
    if page.swapcache:
        return False
    anon_exclusive = m.has("anon_exclusive")
    protect = pte.writable or pte.dirty or (anon_exclusive and page.anon_exclusive)
    if protect and page.mapcount != page.refcount:
        return False
    # the merge: write_protect_page() (>= 5.19 page_try_share_anon_rmap()), the
    # search's reference on kpage taken and dropped, replace_page(), stable_tree_append()
    page.locked = False                        # trylock_page ... unlock_page
    if protect and anon_exclusive:
        page.anon_exclusive = False
    kpage.refcount += 1                        # replace_page(): get_page
    kpage.mapcount += 1                        # page_add_anon_rmap
    pte.frame = kpage
    pte.writable = pte.dirty = False
    page.mapcount -= 1                         # page_remove_rmap
    m.put_page(page)                           # the pte's reference
    item.anon_vma = slot.region.av if slot.region is not None else None
    item.head = node
    node.hlist[item] = None                    # hlist_add_head
    m.count("pages_sharing")                   # (the node had a sharer already)
    return True


def _scan_mm_with_gone_regions(m: Machine, p: Process, regions: list) -> None:
    """The same walk for an mm that has rmap_items of addresses no region holds any more
    (munmap, a re-mmap): they go in their place in address order too."""
    cands: dict[tuple[int, int], PageSlot] = {}
    for r in regions:
        seq = r.seq
        for s in r.pages:
            if s.mapped and s.mergeable:
                cands[(seq, s.index)] = s
    rmap_items = p.rmap_items
    walk = [(k, cands.get(k)) for k in sorted(set(cands) | set(rmap_items), key=addr_order)]
    for key, s in walk:
        page = s.pte.frame if s is not None and s.pte.present else None
        if page is not None and s.prot == "none" and m.has("follow_page_skips_protnone"):
            # 6.1-6.4 follow_page(): pte_protnone() && !gup_can_follow_protnone() ->
            # no page (474098edac26 .. d74943a2f3cd)
            page = None
        if page is None or page.zero or not page.anon:
            # follow_page() found nothing (or not PageAnon): the old item goes
            item = rmap_items.pop(key, None)
            if item is not None:
                remove_rmap_item_from_tree(m, item)
            continue
        item = rmap_items.get(key)
        if item is None:
            item = rmap_items[key] = RmapItem(p, key)
        if should_skip_rmap_item(m, page, item):
            continue                           # >= 6.7 smart scan: goto next_page
        m.get_page(page)                       # follow_page(FOLL_GET)
        cmp_and_merge_page(m, p, s, item)
        m.put_page(page)


def prune_unreferenced_stale_nodes(m: Machine) -> None:
    """A stale node that no rmap_item names (its page was freed after every item had
    left, e.g. a pinned or swap-cached KSM page that nobody mapped) goes only when some
    stable-tree walk passes it.  The host is not quiet there: other KSM users (a qemu
    guest's mergeable RAM) walk the tree too, and it went on the next scan there.  The
    model removes it at the end of the scan and lets the counter be one less as well."""
    for node in list(m.ksm.stable_tree):
        page = node.kpfn
        stale = page.freed or not page.ksm or page.stable_node is not node
        if stale and not node.hlist:
            m.count_choices("stable_nodes_removed", (0, -1))
            remove_node_from_stable_tree(m, node)


def unmerge_and_remove_all_rmap_items(m: Machine) -> None:
    """run_store(KSM_RUN_UNMERGE) -> unmerge_and_remove_all_rmap_items() (every era):
    for every mm_slot, unmerge_ksm_pages() over each VM_MERGEABLE vma, then
    remove_trailing_rmap_items() drops all its rmap_items; the mm_slot (MMF_VM_MERGEABLE,
    MMF_VM_MERGE_ANY, VM_MERGEABLE) stays unless the mm is exiting, so ksmd merges again at
    its next run; then remove_all_stable_nodes() and ``ksm_scan.seqnr = 0``."""
    for p in list(m.ksm.mm_slots):
        if p.alive:
            # for_each_vma: VM_MERGEABLE && anon_vma -> unmerge_ksm_pages(): break_ksm(),
            # faults taken by the task writing run=2, not by p (memory.policy_node)
            m.foreign_fault = True
            try:
                unmerge_ksm_pages(m, p, [s for _r, s in p.slots() if s.mergeable])
            finally:
                m.foreign_fault = False
        # remove_trailing_rmap_items(&mm_slot->rmap_list)
        for key in sorted(p.rmap_items, key=addr_order):
            remove_rmap_item_from_tree(m, p.rmap_items[key])
        p.rmap_items.clear()
        if not p.alive:
            # ksm_test_exit(mm): mm_slot_free(), clear_bit(MMF_VM_MERGEABLE)
            m.ksm.mm_slots.remove(p)
            p.ksm_entered = False
    # "Clean up stable nodes, but don't worry if some are still busy"
    remove_all_stable_nodes(m)
    # ksm_scan.seqnr = 0: full_scans restarts from 0, and the scenario does not know the
    # value it had (every ksm user on the machine moved it)
    m.count_any("full_scans")


def remove_all_stable_nodes(m: Machine) -> bool:
    """remove_all_stable_nodes() (sysfs max_page_sharing / merge_across_nodes): succeeds
    only for nodes whose page is not mapped; such a page keeps PageKsm with a NULL node."""
    ok = True
    for node in list(m.ksm.stable_tree):
        page = get_ksm_page(m, node)
        if page is None:
            continue
        if page.mapcount > 0:
            ok = False
            continue
        page.stable_node = None                # set_page_stable_node(page, NULL)
        remove_node_from_stable_tree(m, node)
    return ok
