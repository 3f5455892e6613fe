"""The kernel facts ksmdiff depends on: one table, data only (read by ``ksmdiff.versions``).

Everything that changes with the kernel version lives here: the eras of ``do_wp_page`` for
a KSM page, the counters and features, and every smaller behaviour the model follows.
The model, the era mapping, the spec checker, the CLI and the tests read this table through
``ksmdiff.versions`` (``Era``, ``has_fact``, ``has_counter``, ``has_feature``); adding an era
or a fact is one row here plus the code that uses it.

Versions are mainline versions: ``"5.9-rc4"`` is the first release candidate that has the
commit, ``"5.18"`` stands for ``5.18-rc1`` (merged in the merge window).  ``last`` is the
last mainline version that still has the behaviour (``None``: still there).  ``backports``
lists stable branches that got the commit later, as ``(branch, first patch level or None
when the level is not known, status)``.

``status`` is ``"verified"`` when the version was checked against kernel sources, a stable
review or a merge/linux-next listing of the commit, and ``"inferred"`` when it follows from
posting dates or a neighbouring commit only.  ``checked`` says what was looked at.
"""

# The eras of do_wp_page() for an anonymous KSM page, oldest first.  ``key`` names the
# ``versions.Era`` member, ``label`` is what reports print, ``slug`` is used in file names,
# ``first`` the first mainline version of the era, ``fact`` the row of FACTS that opens it,
# ``representative`` the version ``ksmdiff run`` and the spec checker use for the era.
ERAS = (
    {"key": "LE_5_0", "label": "<=5.0", "slug": "le-5.0", "first": None,
     "fact": None, "representative": "4.19", "lowest": "4.14",
     "summary": "PageAnon && !PageKsm -> reuse_swap_page(); a KSM page is always copied"},
    {"key": "V5_1_TO_5_8", "label": "5.1-5.8", "slug": "5.1-5.8", "first": "5.1",
     "fact": "reuse_ksm_page", "representative": "5.4", "lowest": "5.1",
     "summary": "reuse_ksm_page(): a singly-mapped KSM page with its stable node, not in the "
                "swap cache, page_count 1 and page_ref_freeze(page, 1) is reused"},
    {"key": "V5_9_TO_5_17", "label": "5.9-5.17", "slug": "5.9-5.17", "first": "5.9-rc4",
     "fact": "do_wp_page_refcount", "representative": "5.10", "lowest": "5.9",
     "summary": "PageKsm || page_count != 1 -> copy"},
    {"key": "V5_18", "label": "5.18", "slug": "5.18", "first": "5.18",
     "fact": "wp_lru_drain", "representative": "5.18", "lowest": "5.18",
     "summary": "refcount-based reuse with lru_add_drain() and try_to_free_swap(); KSM copies"},
    {"key": "V5_19_TO_6_6", "label": "5.19-6.6", "slug": "5.19-6.6", "first": "5.19",
     "fact": "anon_exclusive", "representative": "6.1", "lowest": "5.19",
     "summary": "PageAnonExclusive -> reuse; KSM pages are never exclusive: copy (cow_ksm)"},
    {"key": "GE_6_7", "label": ">=6.7", "slug": "ge-6.7", "first": "6.7",
     "fact": "wp_can_reuse_anon_folio", "representative": "6.12", "lowest": "6.7",
     "summary": "the same checks moved into wp_can_reuse_anon_folio(); folio_test_ksm copies"},
)

# The newest version the tables were checked against (beyond it: accepted, with a note).
NEWEST_CHECKED = "6.18"

FACTS = (
    # ---------------------------------------------------------------- do_wp_page eras
    {"name": "reuse_ksm_page", "commit": "52d1e606ee73",
     "title": "mm: reuse only-pte-mapped KSM page in do_wp_page()",
     "first": "5.1", "last": "5.9-rc3", "backports": (), "status": "verified",
     "checked": "mm/memory.c and mm/ksm.c at 52d1e606ee73; removed by 1a0cf26323c8 in the "
                "'simplify-do_wp_page' merge b25d1dc9474e of 2020-09-04, after 5.9-rc3",
     "summary": "5.1-5.8 do_wp_page() reuses a singly-mapped KSM page (reuse_ksm_page)"},
    {"name": "do_wp_page_refcount", "commit": "09854ba94c6a",
     "title": "mm: do_wp_page() simplification",
     "first": "5.9-rc4", "last": None, "backports": (), "status": "verified",
     "checked": "merge b25d1dc9474e (2020-09-04, 'after -rc3'), so 5.9-rc1..rc3 still have "
                "reuse_ksm_page",
     "summary": "do_wp_page() decides reuse by page_count; PageKsm always copies"},
    {"name": "wp_lru_drain", "commit": "d4c470970d45",
     "title": "mm: optimize do_wp_page() for exclusive pages in the swapcache",
     "first": "5.18", "last": None, "backports": (), "status": "inferred",
     "checked": "mm/memory.c at 53a05ad9f21d; listed next to c145e0b47c77 in linux-next",
     "summary": "do_wp_page(): refcount > 3 copies, lru_add_drain(), try_to_free_swap()"},
    {"name": "anon_exclusive", "commit": "6c287605fd56",
     "title": "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive",
     "first": "5.19", "last": None, "backports": (), "status": "inferred",
     "checked": "mm/memory.c at 6c287605fd56 (5.19-rc1 material)",
     "summary": "PageAnonExclusive: set on new/reused anon pages, cleared by fork and KSM"},
    {"name": "foll_force_writes_exclusive_anon", "commit": "5535be309971",
     "title": "mm/gup: fix FOLL_FORCE COW security issue and remove FOLL_COW",
     "first": "6.0", "last": None, "backports": (), "status": "verified",
     "checked": "mm/gup.c can_follow_write_pte() after 5535be309971: a FOLL_FORCE write "
                "follows a non-writable pte in a private VM_MAYWRITE vma without VM_WRITE "
                "when the page is PageAnonExclusive (no soft-dirty or uffd-wp tracking); "
                "seen on the lab's Debian 6.1.192 (no pgreuse on a /proc/PID/mem write "
                "into an unmerged PROT_NONE page)",
     "summary": "a /proc/PID/mem write into an exclusive anonymous page of a read-only or "
                "PROT_NONE vma writes through GUP without a write fault (no pgreuse); "
                "before, FOLL_FORCE took a write fault and FOLL_COW"},
    {"name": "wp_can_reuse_anon_folio", "commit": None,
     "title": "mm/memory: move exclusivity detection in do_wp_page() into "
              "wp_can_reuse_anon_folio()",
     "first": "6.7", "last": None, "backports": (), "status": "inferred",
     "checked": "the patch (David Hildenbrand, 2023-10-02) and v6.18 mm/memory.c",
     "summary": ">= 6.7 the non-exclusive reuse checks live in wp_can_reuse_anon_folio()"},
    # ---------------------------------------------------------------- GUP
    {"name": "gup_breaks_cow", "commit": "17839856fd58",
     "title": "gup: document and work around \"COW can break either way\" issue",
     "first": "5.8", "last": "5.9-rc3",
     "backports": (("5.7", 3, "verified"), ("5.4", 47, "verified"),
                   ("4.19", 189, "verified"), ("4.14", 232, "verified"),
                   ("4.9", None, "verified"), ("4.4", None, "verified")),
     "status": "verified",
     "checked": "reverted by a308c71bf1e6 in merge b25d1dc9474e (5.9-rc4); the release "
                "announcements of 5.7.3 and 5.4.47 (2020-06-17) and of 4.19.189 and "
                "4.14.232 (2021-04-28) list it; 4.4.y/4.9.y got it in Oct 2021/Jan 2022 "
                "(stable@ threads) at levels not in this table",
     "summary": "a read-only FOLL_GET pin (vmsplice) on a COW mapping breaks COW first"},
    # ---------------------------------------------------------------- swap
    {"name": "madv_pageout", "commit": "1a4e58cce84e", "title": "mm: introduce MADV_PAGEOUT",
     "first": "5.4", "last": None, "backports": (), "status": "inferred",
     "checked": "mm/madvise.c history",
     "summary": "MADV_PAGEOUT (the only way a scenario swaps)"},
    {"name": "swapin_refcount", "commit": "c145e0b47c77",
     "title": "mm: streamline COW logic in do_swap_page()",
     "first": "5.18", "last": None, "backports": (), "status": "inferred",
     "checked": "the patch: should_try_to_free_swap() (swap full, VM_LOCKED, mlocked, or "
                "write && !PageKsm && page_count == 2) and the write maps the page only if "
                "it is a fresh copy or page_count == 1; same series and linux-next batch as "
                "d4c470970d45",
     "summary": ">= 5.18 do_swap_page() decides a write by page_count, not reuse_swap_page()"},
    {"name": "swapin_frees_swap_when_full", "commit": None,
     "title": "do_swap_page(): if (mem_cgroup_swap_full(page) || VM_LOCKED || PageMlocked) "
              "try_to_free_swap(page)",
     "first": "2.6.32", "last": None, "backports": (), "status": "verified",
     "checked": "mm/memory.c do_swap_page() before and after c145e0b47c77 (the condition "
                "moved into should_try_to_free_swap())",
     "summary": "swap-in drops the page from the swap cache when swap is more than half "
                "full (or the vma/page is mlocked); then a singly-mapped 5.1-5.8 KSM page is "
                "reused by the write"},
    {"name": "wp_page_copy_frees_swap", "commit": None,
     "title": "mm: free idle swap cache page after COW",
     "first": "5.14", "last": None, "backports": (), "status": "inferred",
     "checked": "posting date (Huang Ying, 2021)",
     "summary": "wp_page_copy() frees the old page's swap cache once it is unmapped"},
    {"name": "swapin_map_exclusive_writable", "commit": None,
     "title": "mm: swap: reuse exclusive folio directly instead of wp page faults",
     "first": "6.11", "last": None, "backports": (), "status": "inferred",
     "checked": "posting date (Barry Song, 2024)",
     "summary": "do_swap_page() maps an exclusive page writable even on a read fault"},
    # ---------------------------------------------------------------- mprotect
    {"name": "mprotect_try_change_writable", "commit": "64fe24a3e05e",
     "title": "mm/mprotect: try avoiding write faults for exclusive anonymous pages when "
              "changing protection",
     "first": "6.0", "last": None, "backports": (), "status": "verified",
     "checked": "v2 posted 2022-06-10 (after 5.19-rc1); in linux-next 2022-07-04 for 5.20 "
                "(released as 6.0)",
     "summary": "mprotect(PROT_WRITE) makes a dirty exclusive anon pte writable at once"},
    {"name": "mprotect_clean_writable", "commit": None,
     "title": "mm/mprotect: allow clean exclusive anon pages to be writable",
     "first": "6.2", "last": None, "backports": (), "status": "verified",
     "checked": "patch 1/7 of a series posted 2022-11-08 whose 6a56ccbcf6c6 (autonuma: "
                "use can_change_(pte|pmd)_writable()) a KSM changelog lists under 6.2",
     "summary": "the mprotect write-upgrade also takes clean exclusive anon ptes"},
    # ---------------------------------------------------------------- ksm.c
    {"name": "break_ksm_unshare", "commit": "6cce3314b928",
     "title": "mm/ksm: fix KSM COW breaking with userfaultfd-wp via FAULT_FLAG_UNSHARE",
     "first": "6.2", "last": None, "backports": (), "status": "verified",
     "checked": "linux-next 2022-10-21 (after 6.1-rc1), the MM pull for 6.2-rc1, and a KSM "
                "changelog that lists it under 6.2",
     "summary": "break_ksm() unshares (read-only exclusive copy) instead of a write fault "
                "holding a FOLL_GET reference"},
    {"name": "ksm_zero_pages", "commit": "e2942062e01d",
     "title": "ksm: count all zero pages placed by KSM",
     "first": "6.6", "last": None, "backports": (), "status": "verified",
     "checked": "a KSM changelog lists it under 6.6 with 79271476b336 (unsharing "
                "KSM-placed zero pages)",
     "summary": "KSM-placed zero ptes are marked (pte_mkdirty) and counted"},
    {"name": "ksm_checksum_first", "commit": "d58a361b0350",
     "title": "mm/ksm: don't waste time searching stable tree for fast changing page",
     "first": "6.11", "last": None, "backports": (), "status": "verified",
     "checked": "a KSM changelog lists it under 6.11; the patch moves "
                "remove_rmap_item_from_tree() and the checksum of a page with no stable "
                "node before stable_tree_search() in cmp_and_merge_page()",
     "summary": "cmp_and_merge_page() removes a non-KSM page's rmap_item and checks the "
                "checksum before the stable tree"},
    {"name": "ksm_zero_pages_fork", "commit": "4d6fc29f3634",
     "title": "mm/ksm: fix incorrect KSM counter handling in mm_struct during fork",
     "first": "6.18", "last": None,
     "backports": (("6.17", 4, "verified"), ("6.12", 54, "verified")),
     "status": "inferred",
     "checked": "v3 posted 2025-09-24 (Cc stable 6.6+); stable's failed-to-apply notices "
                "of 2025-10-13 follow 6.18-rc1, so mainline 6.18 (not checked against a "
                "tag); ChangeLog-6.17.4 lists it as upstream 4d6fc29f3634; patch 228/277 "
                "of the 6.12.54-rc1 review; 6.6.y levels not checked; seen on the host's "
                "6.18 and on Debian's 6.12.118 (corpora/matrix/fork-ksm-zero-pages.scenario); "
                "ksm_fork() zeroes the child's ksm_merging_pages and ksm_rmap_items and adds "
                "its ksm_zero_pages to the global count",
     "summary": "fork: the child's ksm_merging_pages/ksm_rmap_items start at 0 (before: "
                "dup_mm() copied the parent's) and its KSM zero ptes are counted"},
    {"name": "ksm_tracepoints", "commit": "739100c88f49", "title": "mm: add tracepoints to ksm",
     "first": "6.4", "last": None, "backports": (), "status": "verified",
     "checked": "RFC posted 2023-01-23; a KSM changelog lists it under 6.4 with d7597f59d1d3",
     "summary": "include/trace/events/ksm.h (ksm_remove_ksm_page: stable_nodes_removed)"},
    {"name": "prctl_merge", "commit": "d7597f59d1d3",
     "title": "mm: add new api to enable ksm per process",
     "first": "6.4", "last": None, "backports": (), "status": "verified",
     "checked": "a KSM changelog lists it under 6.4",
     "summary": "prctl(PR_SET_MEMORY_MERGE)"},
    {"name": "kpageflags_ksm_on_every_anon", "commit": "dee3d0bef2b0",
     "title": "proc: rewrite stable_page_flags()",
     "first": "6.10", "last": "7.2-rc2", "backports": (), "status": "verified",
     "checked": "fixed by 81401cebfc15 'fs/proc: fix KPF_KSM reported for all anonymous pages' "
                "after 7.2-rc2 (stable levels of the fix unknown); seen on Debian's 6.12.118, "
                "not on the host's 6.18.44. The runner checks a plain page at run time",
     "summary": "/proc/kpageflags sets KPF_KSM on every anonymous page: 'ksm' unobservable"},
    {"name": "use_zero_pages", "commit": None, "title": "ksm: introduce ksm_use_zero_pages",
     "first": "4.11", "last": None, "backports": (), "status": "inferred",
     "checked": "Documentation/admin-guide/mm/ksm.rst",
     "summary": "the use_zero_pages knob"},
    # ---------------------------------------------------------------- counters
    {"name": "ksm_sysfs", "commit": None, "title": "ksm: the KSM sysfs counters",
     "first": "2.6.32", "last": None, "backports": (), "status": "inferred",
     "checked": "Documentation/admin-guide/mm/ksm.rst",
     "summary": "pages_shared, pages_sharing, pages_unshared, pages_volatile, full_scans"},
    {"name": "ksm_run_unmerge", "commit": None,
     "title": "ksm: run=2 (KSM_RUN_UNMERGE) unmerges every KSM page",
     "first": "2.6.32", "last": None, "backports": (), "status": "verified",
     "checked": "mm/ksm.c unmerge_and_remove_all_rmap_items() in 4.x, 5.x and 6.x: every "
                "mm_slot's VM_MERGEABLE vmas unmerged, every rmap_item removed, the mm_slot "
                "kept unless the mm exits, remove_all_stable_nodes(), ksm_scan.seqnr = 0",
     "summary": "writing 2 to /sys/kernel/mm/ksm/run unmerges the whole machine and resets "
                "full_scans to 0"},
    {"name": "follow_page_skips_protnone", "commit": "474098edac26",
     "title": "mm/gup: replace FOLL_NUMA by gup_can_follow_protnone()",
     "first": "6.1", "last": "6.4", "backports": (), "status": "inferred",
     "checked": "listed with the 6.1 mremap-merge batch in linux-next; fixed by d74943a2f3cd "
                "'mm/gup: reintroduce FOLL_NUMA as FOLL_HONOR_NUMA_FAULT' (2023-08-03, in a "
                "6.5-rc, exact rc not checked), whose changelog says KSM no longer worked "
                "on inaccessible VMAs; its 6.1-stable backport failed to apply (2023-08-26), "
                "later 6.1.y levels not checked",
     "summary": "follow_page() returns no page for a PROT_NONE pte: ksmd neither merges nor "
                "(with the follow_page()-based break_ksm() of <= 6.1) unmerges there"},
    {"name": "ksm_smart_scan", "commit": "5e924ff54d08",
     "title": "mm/ksm: add \"smart\" page scanning mode",
     "first": "6.7", "last": None, "backports": (), "status": "inferred",
     "checked": "posted 2023-09-12 with e5a689912689 'mm/ksm: add pages_skipped metric' "
                "(series v1..v3); both in the mm-stable listing for the 6.7 merge window",
     "summary": "the smart_scan knob and the pages_skipped counter (0 while smart_scan is 0)"},
    {"name": "ksm_stat_rmap_items", "commit": "cb4df4cae4f2",
     "title": "ksm: count allocated ksm rmap_items for each process",
     "first": "6.1", "last": None, "backports": (), "status": "inferred",
     "checked": "fs/proc/base.c blame (proc_pid_ksm_stat: 'ksm_rmap_items', xu xin "
                "2022-08-30, merged for 6.1)",
     "summary": "/proc/PID/ksm_stat with ksm_rmap_items (mm->ksm_rmap_items)"},
    {"name": "ksm_merging_pages", "commit": "7609385337a4",
     "title": "ksm: count ksm merging pages for each process",
     "first": "5.19", "last": None, "backports": (), "status": "verified",
     "checked": "listed next to 94bfe85bde18 (cow_ksm) in linux-next; a review of the "
                "fork-counter fix names it 'Linux-v5.19'; the ksm_stat line followed in "
                "d21077fbc2fc (6.4), so the probe reads /proc/PID/ksm_merging_pages",
     "summary": "/proc/PID/ksm_merging_pages (mm->ksm_merging_pages: rmap_items in the "
                "stable tree)"},
    {"name": "uffd_wp", "commit": "63b2d4174c4a",
     "title": "userfaultfd: wp: add the writeprotect API to userfaultfd ioctl",
     "first": "5.7", "last": None, "backports": (), "status": "inferred",
     "checked": "ioctl_userfaultfd(2): UFFDIO_REGISTER_MODE_WP and UFFDIO_WRITEPROTECT "
                "since Linux 5.7 (anonymous memory); with break_ksm_unshare (6.2) "
                "break_ksm() unshares a uffd-wp KSM page, before it write-faults, and "
                "handle_userfault() without FAULT_FLAG_ALLOW_RETRY gives VM_FAULT_SIGBUS: "
                "the page stays KSM and MADV_UNMERGEABLE returns 0",
     "summary": "userfaultfd write protection of anonymous memory"},
    {"name": "ksm_exec_merge_any", "commit": "3c6f33b7273a",
     "title": "mm/ksm: support fork/exec for prctl",
     "first": "6.6", "last": None, "backports": (), "status": "inferred",
     "checked": "the patch (v4 2023-09-22, Fixes d7597f59d1d3) adds MMF_VM_MERGE_ANY to "
                "the flags mm_init() copies into the exec'd mm (MMF_INIT_MASK); sent in an "
                "mm hotfixes batch during 6.6-rc; 3a9e567ca45f names it as the commit "
                "that inherits the flag across execve()",
     "summary": "execve() keeps MMF_VM_MERGE_ANY (before: the new mm starts without it)"},
    {"name": "ksm_execve", "commit": "3a9e567ca45f",
     "title": "mm/ksm: fix ksm exec support for prctl",
     "first": "6.10", "last": None, "backports": (("6.8", 12, "inferred"),),
     "status": "inferred",
     "checked": "the 6.8-stable review patch (2024-05-27, 442/493, the last 6.8.y) quotes "
                "it as upstream 3a9e567ca45f: __bprm_mm_init() calls ksm_execve(), which "
                "__ksm_enter()s an mm with MMF_VM_MERGE_ANY; without it the exec'd mm has "
                "the flag but no mm_slot and ksmd never scans it. Mainline version from "
                "the review date (after 6.9 was released)",
     "summary": "an exec'd mm with MMF_VM_MERGE_ANY is registered with ksmd at once"},
    {"name": "ksm_merge_any_readback", "commit": "d7597f59d1d3",
     "title": "mm: add new api to enable ksm per process (PR_GET_MEMORY_MERGE)",
     "first": "6.4", "last": None, "backports": (), "status": "verified",
     "checked": "the same commit as prctl_merge: PR_GET_MEMORY_MERGE returns "
                "test_bit(MMF_VM_MERGE_ANY)",
     "summary": "prctl(PR_GET_MEMORY_MERGE)"},
    {"name": "pgreuse", "commit": "798a6b87ecd7", "title": "mm: Add PGREUSE counter",
     "first": "5.9-rc4", "last": None, "backports": (), "status": "verified",
     "checked": "in the 'simplify-do_wp_page' merge b25d1dc9474e (5.9-rc4)",
     "summary": "pgreuse, counted in wp_page_reuse()"},
    {"name": "ksm_swpin_copy", "commit": None,
     "title": "mm/vmstat: add event for ksm swapping in copy",
     "first": "5.18", "last": None, "backports": (), "status": "inferred",
     "checked": "posting date (Yang Yang)",
     "summary": "ksm_swpin_copy, counted in ksm_might_need_to_copy()"},
    {"name": "cow_ksm", "commit": "94bfe85bde18", "title": "mm/vmstat: add events for ksm cow",
     "first": "5.19", "last": None, "backports": (), "status": "inferred",
     "checked": "v4 posted 2022-03-30",
     "summary": "cow_ksm, counted when do_wp_page() copies a KSM page"},
)

# Counters a record may hold -> the fact that adds them.
COUNTERS = {
    "pages_shared": "ksm_sysfs",
    "pages_sharing": "ksm_sysfs",
    "pgreuse": "pgreuse",
    "ksm_swpin_copy": "ksm_swpin_copy",
    "cow_ksm": "cow_ksm",
    "ksm_zero_pages": "ksm_zero_pages",
    "stable_nodes_removed": "ksm_tracepoints",   # the ksm:ksm_remove_ksm_page tracepoint
    # ksmd-wide sysfs gauges: they move only while ksmd runs (or at ``ksm unmerge-all``)
    "pages_unshared": "ksm_sysfs",
    "pages_volatile": "ksm_sysfs",
    "full_scans": "ksm_sysfs",
    "pages_skipped": "ksm_smart_scan",
}

# Per-process counters (``expect counter P NAME +N``) -> the fact that adds them: the
# values of /proc/PID/ksm_stat (and /proc/PID/ksm_merging_pages) of one process.
PROC_COUNTERS = {
    "ksm_rmap_items": "ksm_stat_rmap_items",
    "ksm_merging_pages": "ksm_merging_pages",
    "ksm_zero_pages": "ksm_zero_pages",          # mm->ksm_zero_pages, e2942062e01d
}

# Features a scenario may require -> (the fact that adds them, what "unsupported" says).
FEATURES = {
    "swap": ("madv_pageout", "swap (MADV_PAGEOUT)"),
    "zero-pages": ("use_zero_pages", "zero-pages (use_zero_pages)"),
    "tracepoints": ("ksm_tracepoints", "tracepoints (ksm:*)"),
    "prctl-merge": ("prctl_merge", "prctl-merge (PR_SET_MEMORY_MERGE)"),
    "smart-scan": ("ksm_smart_scan", "smart-scan (the smart_scan knob)"),
    "uffd-wp": ("uffd_wp", "uffd-wp (UFFDIO_WRITEPROTECT of anonymous memory)"),
}
