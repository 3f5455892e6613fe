"""Model state: data only, no behaviour (the behaviour lives in memory.py and ksm.py).

The names follow the kernel: a :class:`Frame` is a ``struct page`` (refcount, mapcount,
flags), a :class:`StableNode` is ``struct ksm_stable_node`` (keyhole: ``kpfn`` names the
page, the page's mapping names the node), an :class:`RmapItem` is ``struct
ksm_rmap_item``, a :class:`Pte` is one page-table entry of one process.

Refcount accounting: ``refcount`` = one per mapping pte + one for the
swap cache + one per pin + transient references (ksmd's ``follow_page(FOLL_GET)``, the
``get_page`` before ``wp_page_copy``), which the behaviour code adds and drops around
the step that holds them.  The stable node holds no reference.  Per-CPU LRU-add batches
hold a reference the model does not count; ``maybe_pvec`` marks frames that may still sit
in one (allocated after the last ``lru_add_drain_all`` of a ksmd full scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ksmdiff.scenario.ast import Content

ZERO_CONTENT = Content(None)


@dataclass(eq=False, slots=True)
class StableNode:
    """``struct ksm_stable_node`` (a dup, when it sits in a chain)."""

    seq: int                          # creation order (the model's own name for a node)
    kpfn: "Frame"                     # the KSM page (keyhole: kpfn->mapping == node)
    content: Content                  # the tree key: the page's content at insert time
    # the rmap_items, oldest first (hlist_add_head puts the newest at the head; no decision
    # depends on the order): a dict, so that adding and removing one item of a node with
    # tens of thousands of sharers (LTP ksm01: max_page_sharing 98,304) is O(1)
    hlist: dict["RmapItem", None] = field(default_factory=dict)

    # stable_node->nid (CONFIG_NUMA): the stable tree holding the node, root_stable_tree +
    # nid; get_kpfn_nid(kpfn) at insert (always 0 with merge_across_nodes 1)
    nid: int = 0

    @property
    def rmap_hlist_len(self) -> int:
        return len(self.hlist)


@dataclass(eq=False, slots=True)
class Frame:
    """``struct page`` of an anonymous small page (or the shared zero page)."""

    fid: int | str
    content: Content
    refcount: int = 0
    mapcount: int = 0
    anon: bool = True                 # PageAnon (true for KSM pages too)
    ksm: bool = False                 # mapping & PAGE_MAPPING_KSM
    stable_node: Optional[StableNode] = None   # page_stable_node(): NULL while being linked
    swapcache: bool = False           # PageSwapCache
    swap_refs: int = 0                # swap ptes naming this page's swap slot (swap count)
    locked: bool = False              # PG_locked
    anon_exclusive: bool = False      # PageAnonExclusive (>= 5.19)
    maybe_pvec: bool = False          # may hold a per-CPU LRU-add batch reference
    # allocated by ksmd (break_cow's copy) since its last lru_add_drain_all(): it may sit in
    # the LRU-add batch of ksmd's CPU, which the scenario's CPU does not drain
    ksmd_pvec: bool = False
    zero: bool = False                # the shared zero page (special pte, never counted)
    freed: bool = False               # refcount hit 0: back in the buddy allocator
    nid: int = 0                      # page_to_nid(): the NUMA node the page came from

    def __repr__(self) -> str:
        if self.zero:
            return "Frame(Z)"
        flags = "".join(c for c, on in (("K", self.ksm), ("S", self.swapcache),
                                         ("E", self.anon_exclusive), ("x", self.freed)) if on)
        return (f"Frame(#{self.fid} {self.content} rc={self.refcount} mc={self.mapcount}"
                f"{' ' + flags if flags else ''})")


@dataclass(eq=False, slots=True)
class RmapItem:
    """``struct ksm_rmap_item``: one scanned address of one mm."""

    proc: "Process"
    key: tuple[int, int]              # (region seq, page index): the address
    oldchecksum: Optional[Content] = None   # None: never computed (kzalloc'd 0)
    head: Optional[StableNode] = None       # STABLE_FLAG
    unstable: bool = False                   # UNSTABLE_FLAG, in this scan's unstable tree
    tree_key: Optional[tuple] = None         # ... under this key: (nid, content)
    # rmap_item->anon_vma: its vma's own anon_vma when it merged (Region.av); the only
    # way rmap_walk_ksm() finds the vmas that map the KSM page
    anon_vma: Optional[object] = None
    age: int = 0                             # >= 6.7 smart scan: rmap_age_t age (u8)
    remaining_skips: int = 0                 # >= 6.7 smart scan


@dataclass(eq=False, slots=True)
class Pte:
    present: bool = False
    frame: Optional[Frame] = None     # the mapped page (the zero page included)
    writable: bool = False
    dirty: bool = False
    swap: Optional[Frame] = None      # swap entry: the swap-cache page of that slot
    swp_exclusive: bool = False       # pte_swp_exclusive (>= 5.19)
    ksm_zero: bool = False            # KSM-placed zero page: pte_dirty special (>= 6.6)

    def clear(self) -> None:
        self.present = False
        self.frame = None
        self.writable = False
        self.dirty = False
        self.swap = None
        self.swp_exclusive = False
        self.ksm_zero = False


@dataclass(eq=False, slots=True)
class PageSlot:
    """One virtual page of one process."""

    index: int
    pte: Pte = field(default_factory=Pte)
    mapped: bool = True
    prot: str = "rw"
    mergeable: bool = False           # VM_MERGEABLE of the vma holding the page
    locked: bool = False              # VM_LOCKED (mlock; not inherited by fork)
    logical: Content = ZERO_CONTENT   # what this process wrote or inherited (the oracle)
    last_frame: Optional[Frame] = None  # the frame at the end of the previous step
    region: Optional["Region"] = None   # the vma (region) holding the page
    maybe_absent: bool = False        # a zero-page pte that fork may not have copied
    had_anon: bool = False            # an anonymous page was here: its vma has an anon_vma
    uffd_wp: bool = False             # the pte is uffd-wp protected (UFFDIO_WRITEPROTECT)


@dataclass(eq=False)
class Region:
    name: str
    seq: int                          # mmap sequence: the address order (see ksm.py)
    pages: list[PageSlot]
    split: bool = False               # munmap/mprotect/madvise of part: maybe several vmas
    # another region of the process has an anon_vma: this vma may have been merged with
    # it (adjacent anonymous vmas with equal flags merge), sharing its anon_vma
    maybe_merged_anon_vma: bool = False
    # the vma's own anon_vma (an identity; None until its first anonymous page) and the
    # anon_vmas its anon_vma_chain links it to (its own, and at fork the parent's chain):
    # the vma is in the rmap tree of each of those
    av: Optional[object] = None
    av_chain: frozenset = frozenset()
    # the vma's mempolicy: MPOL_BIND to this node (``mmap R N node K``: mbind), copied at
    # fork (vma_dup_policy); None: the default policy, the local node
    node: Optional[int] = None

    @property
    def anon_vma(self) -> bool:
        """Some page of the region had an anonymous page (or its parent's, at fork)."""
        return self.av is not None

    def __post_init__(self) -> None:
        for s in self.pages:
            s.region = self


@dataclass(eq=False)
class Process:
    """A process and its ``mm_struct``."""

    name: str
    regions: dict[str, Region] = field(default_factory=dict)
    alive: bool = True
    ksm_entered: bool = False         # MMF_VM_MERGEABLE (has a ksm_mm_slot)
    merge_any: bool = False           # MMF_VM_MERGE_ANY (prctl, >= 6.4)
    rmap_items: dict[tuple[int, int], RmapItem] = field(default_factory=dict)
    pins: dict[tuple[str, int], list[Frame]] = field(default_factory=dict)
    # ksm_stat values the mm got at its creation, not from its own rmap_items: dup_mm()
    # copies the parent's mm->ksm_merging_pages/ksm_rmap_items (before the fork-counter fix)
    inherited: dict[str, int] = field(default_factory=dict)
    # the task's mempolicy (set_mempolicy MPOL_BIND: its node; None: MPOL_DEFAULT) and its
    # cpuset's one node (cgroup ... mems; None: every node): both copied at fork
    mempolicy: Optional[int] = None
    cpuset_mems: Optional[int] = None

    def slots(self):
        """(region, slot) of every mapped page, in canonical (mmap) order."""
        for r in self.regions.values():
            for s in r.pages:
                if s.mapped:
                    yield r, s


@dataclass
class Knobs:
    use_zero_pages: int = 0
    max_page_sharing: int = 256
    merge_across_nodes: int = 1
    smart_scan: int = 0               # >= 6.7 (the runner pins it to 0 unless a scenario sets it)


@dataclass(eq=False)
class KsmState:
    """ksmd's globals: mm list, stable trees, unstable trees (one per node: each node and
    rmap_item says its nid), knobs."""

    knobs: Knobs = field(default_factory=Knobs)
    mm_slots: list[Process] = field(default_factory=list)   # ksm_mm_head list order
    stable_tree: list[StableNode] = field(default_factory=list)
    # (nid, content) -> (rmap_item, process, slot): root_unstable_tree + nid
    unstable_tree: dict[tuple[int, Content], tuple] = field(default_factory=dict)
    full_scans: int = 0
    next_seq: int = 0
