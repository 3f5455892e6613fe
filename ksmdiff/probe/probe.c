/* ksmdiff probe: replays a compiled scenario program in real processes and reports
 * what the kernel did, one JSON line per statement (docs/probe-wire.md).
 *
 * C11 + libc only.  Runs as root (PFNs, /proc/kpageflags, /proc/kpagecount).
 *
 * Usage:  ksmdiff-probe PROGRAM_FILE        (stdin: "go" lines: at the start and at syncs)
 *         ksmdiff-probe --check PROGRAM_FILE (parse and validate only)
 *         ksmdiff-probe --server FD          (fork a probe per request on socket FD; below)
 * Environment: KSMDIFF_PROBE_LOCK=PATH serialises counter windows between probes.
 *
 * Exit codes: 0 done; 2 malformed program (one message on stderr); 3 a syscall failed
 * (a JSON {"error":...} line on stdout too); 4 usage; 5 stopped (stdin "stop" or EOF).
 *
 * Process layout.  The probe process itself is the *supervisor*: it parses, validates,
 * talks to the runner, and observes (pagemap, kpageflags, kpagecount; none of them takes a
 * page reference).
 * Scenario processes are clone()d without CLONE_VM (fork semantics) onto stacks that live
 * in one MAP_SHARED anonymous area, and take commands through mailboxes in that area
 * (futex wait/wake).  Because everything a scenario process writes, apart from the
 * scenario's own pages, is shared memory, its steps cause no copy-on-write faults of their
 * own, and the counter window around each operation (cow_ksm, pgreuse, ...) sees only the
 * scenario's faults.  Shared memory is never merged by KSM either.
 *
 * Page contents.  The supervisor does not read them through /proc/PID/mem: that is
 * get_user_pages_remote, which takes a page reference and marks the page accessed, and the
 * folio can stay in a per-CPU LRU batch holding an extra reference afterwards; every later
 * refcount-exact decision (write-fault reuse of a non-exclusive anon page, reuse_ksm_page,
 * write_protect_page's merge check) could see it.  Instead, after each statement, every
 * live process reads its OWN pages that pagemap showed present (plain loads: no fault, no
 * GUP, no reference; scan_content only loads and writes the shared mailbox) and hands a
 * small summary (struct content_scan) back through its mailbox (OP_PEEK, one round trip
 * per live process, outside any counter window); the supervisor formats it
 * (decode_content).  Pages pagemap shows absent or swapped are never touched.
 *
 * Program format (line oriented, ASCII, every number bounded):
 *   ksmdiff-probe 1
 *   salt HEX16                       nonzero 64-bit salt written into non-zero pages
 *   procs N                          1..16   (slot i = the i-th process created)
 *   regions N                        1..64
 *   stmts N                          0..10000
 *   IDX OP ARGS...                   N statement lines, IDX strictly increasing
 *   end
 * OPs:  mmap P R NPAGES [NODE] | fill P R LO HI BYTE|z | write P R LO HI BYTE SALT2(0|1)
 *       read P R LO HI | madv P R LO HI m|u|d|p | mprot P R LO HI r|w | munmap P R LO HI
 *       fork P C | exit P | pin P R LO HI | unpin P R LO HI | prctl P 0|1 | sync
 *       fwrite P R LO HI BYTE SALT2(0|1)  (as write, through /proc/self/mem: FOLL_FORCE)
 *       mlock P R LO HI | munlock P R LO HI | cgroup P G PAGES|max NODE|- | mpol P NODE|-
 *       (mprot's protection: r, w or n for PROT_NONE; a PROT_NONE page is never loaded)
 *       (mmap's NODE, 0..63: mbind(2) MPOL_BIND to that node right after the mmap; every
 *       fill of the region then checks with move_pages(2) that the pages it faulted in
 *       fresh are on that node, and fails otherwise)
 *       (cgroup's G, 0..7: the group's directory ksmdiff-probe-PID-G under the root of the
 *       first cgroup2 mount, made at G's first statement with memory.max = PAGES pages
 *       ("max": no limit) and cpuset.mems = NODE ("-": not written), removed when the probe
 *       ends; P moves itself in: it writes "0" to the group's cgroup.procs)
 *       (mpol: set_mempolicy(2) of P, MPOL_BIND to NODE, "-": MPOL_DEFAULT.  A fill checks
 *       the node of the pages it faults in fresh against the region's mbind node, else
 *       P's MPOL_BIND node, else its cpuset's node)
 *
 * munmap P R LO HI acts on the pages of LO..HI that are still mapped (one munmap(2) per run
 * of them) and leaves the others alone, as the model does.  The hole is at once reserved
 * again (PROT_NONE, MAP_FIXED_NOREPLACE), so a later mmap can never land in a region's old
 * pages: the probe then cannot unmap or observe another region's page as if it were the
 * region's own (it did before: mmap a 4; munmap a[1]; mmap b 1 put b in a's hole, and
 * munmap a took b with it).  Every other operation needs its pages mapped (validation).
 *
 * Output: JSON lines, described in ksmdiff/probe/wire.py and docs/probe-wire.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>

/* The page size comes from sysconf(_SC_PAGESIZE) at start (page_size); pages larger than
 * MAX_PAGE_SIZE are refused (the shared scratch areas are sized for it). */
#define MAX_PAGE_SIZE 65536UL
#define MAX_PROCS 16
#define MAX_REGIONS 64
/* The scenario language's limit on pages in all (a fork's copies included); the tables
 * are sized from the program (validate_program), not from these. */
#define MAX_REGION_PAGES 131072
#define MAX_TOTAL_PAGES 131072
#define MAX_STMTS 10000
#define MAX_PROGRAM (1u << 20)
#define MAX_LINE 200
#define MAX_PINS_PER_PAGE 8
#define MAX_SCANS 100
#define SALT_OFF 64
#define WRITE_OFF 0
#define FILL_OFF (page_size - 1)
#define STACK_SIZE (256UL * 1024)
/* A scenario process's scratch: the first MAX_PAGE_SIZE bytes take what unpin reads back
 * out of a pin pipe, the rest (COUNTER_BUF) the counter files; /proc/self/maps takes all. */
#define SCRATCH_SIZE (MAX_PAGE_SIZE + COUNTER_BUF)
#define COUNTER_BUF (64UL * 1024)
#define MAX_PIN_ENTRIES 4096
#define CMD_TIMEOUT_MS 30000

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68
#endif
/* mempolicy (include/uapi/linux/mempolicy.h): raw syscalls, no libnuma */
#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif
#ifndef MPOL_MF_STRICT
#define MPOL_MF_STRICT (1 << 0)
#endif
#define MAX_NODE 63
#define MAX_CGROUPS 8
#ifndef MPOL_DEFAULT
#define MPOL_DEFAULT 0
#endif
/* a fill's pages that came on another node than their region's MPOL_BIND one */
#define ERR_MISPLACED EXDEV
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* Processes are signalled through pidfds (Linux 5.1 pidfd_send_signal, 5.3 pidfd_open),
 * never by a pid that may have been reaped and reused.  -1 with errno where the kernel
 * lacks them (ENOSYS); each caller says what it falls back to. */
static int pidfd_open_pid(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* ------------------------------------------------------------------ counters */
enum { C_COW_KSM, C_SWPIN_COPY, C_PGREUSE, C_SHARED, C_SHARING, C_ZERO, NCOUNTERS };
/* (the wire format of the records, ksmdiff/probe/wire.py, names them in this order) */
static const char *const counter_names[NCOUNTERS] = {
    "cow_ksm", "ksm_swpin_copy", "pgreuse", "pages_shared", "pages_sharing", "ksm_zero_pages"};
/* The fields of a page entry of a record (observe() prints them in this order), named in
 * the start message; ksmdiff/probe/wire.py is their description, and the runner refuses a
 * probe whose names differ from it.  Format of every message: docs/probe-wire.md. */
static const char *const page_fields[] = {
    "proc", "region", "first", "last", "present", "swapped", "frame_proc", "frame_region",
    "frame_page", "frame_follows", "ksm", "zero_page", "mapcount", "exclusive", "content",
    "fault"};
static int vmstat_fd = -1;
/* Several probes of a batch may run at once; their counter windows must not overlap, or a
 * global counter moved by one would land in another's window.  The runner names a lock
 * file (KSMDIFF_PROBE_LOCK); every window, and every teardown (exits free pages), holds an
 * exclusive flock on it. */
static int window_lock_fd = -1;

static void window_lock(void)
{
    if (window_lock_fd >= 0)
        while (flock(window_lock_fd, LOCK_EX) && errno == EINTR)
            ;
}

static void window_unlock(void)
{
    if (window_lock_fd >= 0)
        (void)flock(window_lock_fd, LOCK_UN);
}
static int sysfs_fd[NCOUNTERS] = {-1, -1, -1, -1, -1, -1};

/* ------------------------------------------------------------------ program */
enum op {
    OP_MMAP, OP_FILL, OP_WRITE, OP_READ, OP_MADV, OP_MPROT, OP_MUNMAP, OP_FORK, OP_EXIT,
    OP_PIN, OP_UNPIN, OP_PRCTL, OP_FWRITE, OP_MLOCK, OP_MUNLOCK, OP_SYNC, OP_START /* internal: child start */,
    OP_PEEK /* internal: read own present pages (observe) */,
    OP_EXEC, OP_UFFDWP, OP_CGROUP, OP_MPOL
};
static const char *const op_names[] = {"mmap", "fill", "write", "read", "madv", "mprot",
                                        "munmap", "fork", "exit", "pin", "unpin", "prctl",
                                        "fwrite", "mlock", "munlock", "sync", "start",
                                        "peek", "exec", "uffdwp", "cgroup", "mpol"};

struct stmt {
    int idx;
    int op;
    int p, r, lo, hi; /* process, region, page range */
    int arg;          /* npages / byte (-1 = zero) / advice / prot / child / on */
    int arg2;         /* write: salt2 flag */
};

static struct stmt *stmts;
static int nstmts, nprocs, nregions;
static uint64_t salt, salt2;

/* ------------------------------------------------------------------ shared area */
struct pin_entry {
    uintptr_t addr;
    int rfd, wfd, count;
};

/* What decode_content needs of a page, gathered by loads alone (scan_content). */
struct content_scan {
    uint64_t salt;     /* the word at SALT_OFF */
    int32_t bad;       /* first offset (outside WRITE_OFF and the salt) not equal to the
                        * fill byte: -1 none, -2 the salt is neither salt, salt2 nor 0 */
    uint8_t fill;      /* the fill byte: pg[FILL_OFF] under salt, else 0 */
    uint8_t zero_based;
    uint8_t wbyte;     /* pg[WRITE_OFF] */
    uint8_t bad_byte;  /* pg[bad] */
};

struct mailbox {
    volatile uint32_t cmd_seq;  /* supervisor -> process */
    volatile uint32_t done_seq; /* process -> supervisor */
    volatile int ready;
    volatile pid_t pid;
    /* command */
    int op, arg, arg2, child;
    uintptr_t addr;
    size_t npages;
    int nexcl;
    uintptr_t excl_addr[MAX_REGIONS];
    size_t excl_len[MAX_REGIONS];
    /* reply */
    long ret; /* 0 or -errno */
    uintptr_t ret_addr;
    pid_t ret_pid;
    int64_t delta[NCOUNTERS];
    int npins;
    struct pin_entry pins[MAX_PIN_ENTRIES];
    /* observe(): this process's pagemap entries and the kpageflags / kpagecount of its
     * present pages (the supervisor's buffers, shared so that filling them never copies a
     * private page); OP_PEEK: addresses of the present pages to read (supervisor ->
     * process) and their scans (back).  Each array holds page_cap entries, in the shared
     * table area (alloc_tables). */
    int page_cap;
    uint64_t *pm, *kflags, *kcount;
    int npeek;
    int merge_any;             /* OP_PEEK: prctl(PR_GET_MEMORY_MERGE), -1 if refused */
    uintptr_t *peek_addr;
    struct content_scan *peek;
    /* the same two arrays as offsets from the shared area's start: a scenario process
     * reads them so (an exec'd one maps the area at another address) */
    size_t peek_addr_off, peek_off;
};

struct slot {
    struct mailbox mb;
    unsigned char scratch[SCRATCH_SIZE];
    unsigned char stack[STACK_SIZE];
};

static struct slot *slots;
static pid_t supervisor_pid;
static size_t page_size;

/* ------------------------------------------------------------------ errors */
static int cur_line;

static void die_program(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ksmdiff-probe: malformed program, line %d: ", cur_line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void kill_all(void);

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void die_runtime(int stmt_idx, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stdout, "{\"s\":%d,\"error\":", stmt_idx);
    json_str(stdout, msg);
    fputs("}\n", stdout);
    fflush(stdout);
    fprintf(stderr, "ksmdiff-probe: statement %d: %s\n", stmt_idx, msg);
    kill_all();
    exit(3);
}

/* ------------------------------------------------------------------ parsing */
static int parse_uint(const char *tok, long min, long max, long *out)
{
    if (!tok || !*tok || strlen(tok) > 10)
        return -1;
    long v = 0;
    for (const char *c = tok; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (*c - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static long need_uint(char **toks, int ntok, int i, long min, long max, const char *what)
{
    long v;
    if (i >= ntok)
        die_program("missing %s", what);
    if (parse_uint(toks[i], min, max, &v))
        die_program("bad %s '%.20s' (expected %ld..%ld)", what, toks[i], min, max);
    return v;
}

static int parse_hex_byte(const char *t)
{
    if (!t || strlen(t) != 4 || t[0] != '0' || t[1] != 'x')
        return -1;
    int v = 0;
    for (int i = 2; i < 4; i++) {
        char c = t[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else return -1;
    }
    return v;
}

static int split(char *line, char **toks, int max)
{
    int n = 0;
    char *s = line;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        if (n == max)
            return -1;
        toks[n++] = s;
        while (*s && *s != ' ')
            s++;
        if (*s)
            *s++ = 0;
    }
    return n;
}

/* What the last record showed of a page: observe() prints a page only where this
 * changes (records of changes, docs/probe-wire.md). */
struct page_seen {
    uint64_t pfn, count;
    int32_t fp, fr, fi;        /* the frame's label: its first page (proc, region, index)
                                * in canonical page order; fp -1: none (absent, zero page) */
    uint8_t shown;             /* the page is in the stream (printed, not gone since) */
    uint8_t present, swapped, ksm, zero, excl, noaccess;
    char content[24];          /* decode_content's string; "" for none (null) */
};

/* Validation state (also used at run time).  The per-page tables hold npages entries,
 * allocated at mmap (region_tables) and copied at fork (region_copy). */
struct region_state {
    int exists;
    int npages;
    uintptr_t addr;
    unsigned char *mapped;
    unsigned char *pins;
    unsigned char *noaccess;   /* PROT_NONE: never loaded by a peek */
    uint64_t *last_pfn;        /* NO_PFN: none */
    int node;                  /* mmap ... NODE: its MPOL_BIND node; -1 none */
    struct page_seen *seen;
    size_t table_size;         /* bytes of the one mapping holding the tables */
};
#define NO_PFN UINT64_MAX

struct proc_state {
    int spawned, alive;
    int shown;                 /* some page of it is in the stream (gone at exit) */
    pid_t pid;
    int pidfd, pagemap_fd;
    int policy_node, cpuset_node;  /* mpol's MPOL_BIND node, its cpuset's; -1 none */
    struct region_state *reg[MAX_REGIONS];
};
static struct proc_state procs[MAX_PROCS];
static int total_pages;
static int region_max[MAX_REGIONS];   /* the most pages any mmap of region r maps */
static int page_cap;                  /* sum of region_max: a process's pages at most */

/* Fresh private anonymous memory, zeroed, for tables the supervisor writes after clone():
 * a malloc()ed chunk could sit on a page shared copy-on-write with process 0, and the
 * supervisor's write to it would then be a fault of its own (pgreuse, once process 0 is
 * gone) inside some probe's counter window. */
static void *table_alloc(size_t size)
{
    void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "ksmdiff-probe: out of memory (%zu bytes of tables)\n", size);
        exit(3);
    }
    return p;
}

static void region_free(struct region_state *rs)
{
    if (rs->table_size)
        munmap(rs->seen, rs->table_size);   /* (the base of the mapping) */
    rs->mapped = rs->pins = rs->noaccess = NULL;
    rs->last_pfn = NULL;
    rs->seen = NULL;
    rs->table_size = 0;
}

/* Tables for npages pages (old ones dropped): all zero (nothing mapped, shown or pinned). */
static void region_tables(struct region_state *rs, int npages)
{
    region_free(rs);
    size_t n = (size_t)npages;
    size_t bytes = n * (sizeof(struct page_seen) + sizeof(uint64_t) + 3);
    unsigned char *base = table_alloc(bytes);
    rs->table_size = bytes;
    rs->seen = (struct page_seen *)base;
    rs->last_pfn = (uint64_t *)(base + n * sizeof(struct page_seen));
    rs->mapped = base + n * (sizeof(struct page_seen) + sizeof(uint64_t));
    rs->pins = rs->mapped + n;
    rs->noaccess = rs->pins + n;
    rs->npages = npages;
}

/* A fork's copy of its parent's region: the same pages mapped, no pins, nothing shown. */
static void region_copy(struct region_state *dst, const struct region_state *src)
{
    region_tables(dst, src->npages);
    dst->exists = src->exists;
    dst->addr = src->addr;
    dst->node = src->node;     /* dup_mmap(): vma_dup_policy() */
    size_t n = (size_t)src->npages;
    memcpy(dst->mapped, src->mapped, n);
    memcpy(dst->noaccess, src->noaccess, n);
    memcpy(dst->last_pfn, src->last_pfn, n * sizeof(uint64_t));
}

/* exec: the process's new mm has none of its regions (a region may be mapped again) */
static void forget_regions(int p)
{
    for (int r = 0; r < MAX_REGIONS; r++)
        if (procs[p].reg[r] && procs[p].reg[r]->exists) {
            for (int i = 0; i < procs[p].reg[r]->npages; i++)
                if (procs[p].reg[r]->pins[i])
                    die_program("exec of process %d while it pins a page", p);
            procs[p].reg[r]->exists = 0;
        }
}

static struct region_state *region_of(int p, int r)
{
    if (!procs[p].reg[r]) {
        procs[p].reg[r] = calloc(1, sizeof(struct region_state));
        if (!procs[p].reg[r]) {
            fprintf(stderr, "ksmdiff-probe: out of memory\n");
            exit(3);
        }
    }
    return procs[p].reg[r];
}

static void check_range(struct stmt *s, int need_mapped)
{
    struct proc_state *ps = &procs[s->p];
    if (!ps->spawned || !ps->alive)
        die_program("process %d is not alive", s->p);
    struct region_state *rs = ps->reg[s->r];
    if (!rs || !rs->exists)
        die_program("process %d has no region %d", s->p, s->r);
    if (s->lo > s->hi || s->hi >= rs->npages)
        die_program("page range %d..%d outside region %d of %d pages", s->lo, s->hi, s->r,
                    rs->npages);
    if (need_mapped)
        for (int i = s->lo; i <= s->hi; i++)
            if (!rs->mapped[i])
                die_program("page %d of region %d is not mapped in process %d", i, s->r, s->p);
}

/* Simulate the program on the bookkeeping: everything the probe would touch must be one
 * of the scenario's own mapped pages. */
static void validate_program(void)
{
    procs[0].spawned = procs[0].alive = 1;
    int next_proc = 1;
    for (int k = 0; k < nstmts; k++) {
        struct stmt *s = &stmts[k];
        cur_line = 6 + k;
        switch (s->op) {
        case OP_MMAP: {
            struct proc_state *ps = &procs[s->p];
            if (!ps->spawned || !ps->alive)
                die_program("process %d is not alive", s->p);
            struct region_state *rs = region_of(s->p, s->r);
            if (rs->exists)
                for (int i = 0; i < rs->npages; i++)
                    if (rs->mapped[i])
                        die_program("region %d of process %d is already mapped", s->r, s->p);
            total_pages += s->arg;
            if (total_pages > MAX_TOTAL_PAGES)
                die_program("more than %d pages in all", MAX_TOTAL_PAGES);
            region_tables(rs, s->arg);
            rs->exists = 1;
            memset(rs->mapped, 1, (size_t)s->arg);
            if (s->arg > region_max[s->r])
                region_max[s->r] = s->arg;
            break;
        }
        case OP_FILL: case OP_WRITE: case OP_READ: case OP_MADV: case OP_MPROT: case OP_FWRITE:
        case OP_MLOCK: case OP_MUNLOCK: case OP_UFFDWP:
            check_range(s, 1);
            break;
        case OP_PIN: {
            check_range(s, 1);
            struct region_state *rs = procs[s->p].reg[s->r];
            for (int i = s->lo; i <= s->hi; i++)
                if (++rs->pins[i] > MAX_PINS_PER_PAGE)
                    die_program("more than %d pins on one page", MAX_PINS_PER_PAGE);
            break;
        }
        case OP_UNPIN: {
            check_range(s, 0);
            struct region_state *rs = procs[s->p].reg[s->r];
            for (int i = s->lo; i <= s->hi; i++) {
                if (!rs->pins[i])
                    die_program("unpin of page %d, which is not pinned", i);
                rs->pins[i]--;
            }
            break;
        }
        case OP_MUNMAP: {
            check_range(s, 0);
            struct region_state *rs = procs[s->p].reg[s->r];
            for (int i = s->lo; i <= s->hi; i++)
                rs->mapped[i] = 0;
            break;
        }
        case OP_FORK: {
            struct proc_state *ps = &procs[s->p];
            if (!ps->spawned || !ps->alive)
                die_program("process %d is not alive", s->p);
            if (s->arg != next_proc)
                die_program("fork child must be process %d (creation order), not %d",
                            next_proc, s->arg);
            next_proc++;
            struct proc_state *cs = &procs[s->arg];
            cs->spawned = cs->alive = 1;
            for (int r = 0; r < MAX_REGIONS; r++)
                if (ps->reg[r] && ps->reg[r]->exists) {
                    struct region_state *rs = region_of(s->arg, r);
                    region_copy(rs, ps->reg[r]);
                    total_pages += rs->npages;
                }
            if (total_pages > MAX_TOTAL_PAGES)
                die_program("more than %d pages in all", MAX_TOTAL_PAGES);
            break;
        }
        case OP_EXIT: case OP_PRCTL: case OP_CGROUP: case OP_MPOL:
            if (!procs[s->p].spawned || !procs[s->p].alive)
                die_program("process %d is not alive", s->p);
            if (s->op == OP_EXIT)
                procs[s->p].alive = 0;
            break;
        case OP_SYNC:
            break;
        case OP_EXEC:
            if (!procs[s->p].spawned || !procs[s->p].alive)
                die_program("process %d is not alive", s->p);
            forget_regions(s->p);
            break;
        }
    }
    if (next_proc > nprocs)
        die_program("more processes than declared");
    /* the most pages one process can have mapped at once: each region at its largest */
    page_cap = 0;
    for (int r = 0; r < MAX_REGIONS; r++)
        page_cap += region_max[r];
    /* reset for the real run */
    for (int p = 0; p < MAX_PROCS; p++) {
        for (int r = 0; r < MAX_REGIONS; r++)
            if (procs[p].reg[r]) {
                region_free(procs[p].reg[r]);
                free(procs[p].reg[r]);
            }
        memset(&procs[p], 0, sizeof procs[p]);
        procs[p].pidfd = procs[p].pagemap_fd = -1;
        procs[p].policy_node = procs[p].cpuset_node = -1;
    }
    total_pages = 0;
}

static void parse_program_buffer(char *buf, size_t got);

static void parse_program(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "ksmdiff-probe: cannot open program %s: %s\n", path, strerror(errno));
        exit(4);
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_PROGRAM) {
        fprintf(stderr, "ksmdiff-probe: program %s is not a regular file of at most %u bytes\n",
                path, MAX_PROGRAM);
        exit(2);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        exit(3);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    parse_program_buffer(buf, got);
}

/* buf holds got bytes and room for a terminating NUL; it is consumed. */
static void parse_program_buffer(char *buf, size_t got)
{
    buf[got] = 0;
    for (size_t i = 0; i < got; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0 || (c < 0x20 && c != '\n') || c >= 0x7f) {
            cur_line = 1;
            for (size_t j = 0; j < i; j++)
                cur_line += buf[j] == '\n';
            die_program("byte 0x%02x is not allowed (printable ASCII lines only)", c);
        }
    }
    char *lines_p = buf;
    int header = 0, declared_stmts = -1, seen_end = 0, last_idx = -1;
    cur_line = 0;
    while (*lines_p || !seen_end) {
        if (!*lines_p) {
            cur_line++;
            die_program("unexpected end of program (missing 'end')");
        }
        char *nl = strchr(lines_p, '\n');
        char *line = lines_p;
        if (nl) {
            *nl = 0;
            lines_p = nl + 1;
        } else {
            lines_p += strlen(lines_p);
        }
        cur_line++;
        if (strlen(line) > MAX_LINE)
            die_program("line longer than %d bytes", MAX_LINE);
        if (seen_end) {
            if (*line)
                die_program("text after 'end'");
            continue;
        }
        char *t[10];
        int n = split(line, t, 10);
        if (n < 0)
            die_program("too many fields");
        if (n == 0)
            die_program("empty line");
        if (header == 0) {
            if (n != 2 || strcmp(t[0], "ksmdiff-probe") || strcmp(t[1], "1"))
                die_program("expected 'ksmdiff-probe 1'");
            header++;
            continue;
        }
        if (header == 1) {
            if (n != 2 || strcmp(t[0], "salt") || strlen(t[1]) != 16)
                die_program("expected 'salt HEX16'");
            uint64_t v = 0;
            for (int i = 0; i < 16; i++) {
                char c = t[1][i];
                v <<= 4;
                if (c >= '0' && c <= '9') v |= (uint64_t)(c - '0');
                else if (c >= 'a' && c <= 'f') v |= (uint64_t)(c - 'a' + 10);
                else die_program("bad salt digit");
            }
            if (v == 0 || v == UINT64_MAX)
                die_program("salt must not be 0 or all ones");
            salt = v;
            salt2 = ~v;
            header++;
            continue;
        }
        if (header == 2) {
            if (n != 2 || strcmp(t[0], "procs"))
                die_program("expected 'procs N'");
            nprocs = (int)need_uint(t, n, 1, 1, MAX_PROCS, "process count");
            header++;
            continue;
        }
        if (header == 3) {
            if (n != 2 || strcmp(t[0], "regions"))
                die_program("expected 'regions N'");
            nregions = (int)need_uint(t, n, 1, 1, MAX_REGIONS, "region count");
            header++;
            continue;
        }
        if (header == 4) {
            if (n != 2 || strcmp(t[0], "stmts"))
                die_program("expected 'stmts N'");
            declared_stmts = (int)need_uint(t, n, 1, 0, MAX_STMTS, "statement count");
            stmts = calloc((size_t)declared_stmts + 1, sizeof *stmts);
            if (!stmts)
                exit(3);
            header++;
            continue;
        }
        if (n == 1 && !strcmp(t[0], "end")) {
            if (nstmts != declared_stmts)
                die_program("%d statements, but 'stmts %d' was declared", nstmts, declared_stmts);
            seen_end = 1;
            continue;
        }
        if (nstmts >= declared_stmts)
            die_program("more statements than declared");
        struct stmt *s = &stmts[nstmts];
        memset(s, 0, sizeof *s);
        s->idx = (int)need_uint(t, n, 0, 0, 1000000, "statement index");
        if (s->idx < last_idx || (s->idx == last_idx &&
                                  ((strcmp(t[1], "write") || stmts[nstmts - 1].op != OP_WRITE) &&
                                   (strcmp(t[1], "fwrite") || stmts[nstmts - 1].op != OP_FWRITE))))
            die_program("statement indices must increase (only consecutive writes may share one)");
        last_idx = s->idx;
        if (n < 2)
            die_program("missing operation");
        int op = -1;
        for (int i = 0; i <= OP_SYNC; i++)
            if (!strcmp(t[1], op_names[i]))
                op = i;
        for (int i = OP_EXEC; op < 0 && i <= OP_MPOL; i++)
            if (!strcmp(t[1], op_names[i]))
                op = i;
        if (op < 0)
            die_program("unknown operation '%.20s'", t[1]);
        s->op = op;
        int want;
        switch (op) {
        case OP_MMAP: want = 5; break;
        case OP_FILL: want = 7; break;
        case OP_WRITE: case OP_FWRITE: want = 8; break;
        case OP_READ: case OP_MUNMAP: case OP_PIN: case OP_UNPIN: case OP_MLOCK:
        case OP_MUNLOCK: case OP_UFFDWP: want = 6; break;
        case OP_MADV: case OP_MPROT: want = 7; break;
        case OP_FORK: case OP_PRCTL: want = 4; break;
        case OP_CGROUP: want = 6; break;
        case OP_MPOL: want = 4; break;
        case OP_EXIT: case OP_EXEC: want = 3; break;
        default: want = 2; break;
        }
        if (op == OP_MMAP && n == want + 1)
            want++;                     /* the optional NODE */
        if (n != want)
            die_program("'%s' takes %d fields, not %d", op_names[op], want - 2, n - 2);
        if (op != OP_SYNC)
            s->p = (int)need_uint(t, n, 2, 0, nprocs - 1, "process");
        switch (op) {
        case OP_MMAP:
            s->r = (int)need_uint(t, n, 3, 0, nregions - 1, "region");
            s->arg = (int)need_uint(t, n, 4, 1, MAX_REGION_PAGES, "page count");
            s->arg2 = n == 6 ? (int)need_uint(t, n, 5, 0, MAX_NODE, "node") : -1;
            break;
        case OP_FORK:
            s->arg = (int)need_uint(t, n, 3, 1, nprocs - 1, "child process");
            break;
        case OP_PRCTL:
            s->arg = (int)need_uint(t, n, 3, 0, 1, "prctl value");
            break;
        case OP_CGROUP:
            s->arg = (int)need_uint(t, n, 3, 0, MAX_CGROUPS - 1, "cgroup");
            s->arg2 = strcmp(t[4], "max") ? (int)need_uint(t, n, 4, 1, INT_MAX, "memory.max pages")
                                          : -1;
            s->lo = strcmp(t[5], "-") ? (int)need_uint(t, n, 5, 0, MAX_NODE, "cpuset node") : -1;
            break;
        case OP_MPOL:
            s->arg = strcmp(t[3], "-") ? (int)need_uint(t, n, 3, 0, MAX_NODE, "node") : -1;
            break;
        case OP_EXIT: case OP_SYNC: case OP_EXEC:
            break;
        default:
            s->r = (int)need_uint(t, n, 3, 0, nregions - 1, "region");
            s->lo = (int)need_uint(t, n, 4, 0, MAX_REGION_PAGES - 1, "first page");
            s->hi = (int)need_uint(t, n, 5, 0, MAX_REGION_PAGES - 1, "last page");
            if (s->lo > s->hi)
                die_program("first page after last page");
            if (op == OP_FILL) {
                if (!strcmp(t[6], "z"))
                    s->arg = -1;
                else if ((s->arg = parse_hex_byte(t[6])) < 0)
                    die_program("bad byte '%.20s' (expected 0x00..0xff or z)", t[6]);
            } else if (op == OP_WRITE || op == OP_FWRITE) {
                if ((s->arg = parse_hex_byte(t[6])) < 0)
                    die_program("bad byte '%.20s' (expected 0x00..0xff)", t[6]);
                s->arg2 = (int)need_uint(t, n, 7, 0, 1, "salt2 flag");
            } else if (op == OP_MADV) {
                const char *a = t[6];
                if (strlen(a) != 1 || !strchr("mudp", a[0]))
                    die_program("bad advice '%.20s' (expected m, u, d or p)", a);
                s->arg = a[0];
            } else if (op == OP_MPROT) {
                if (strcmp(t[6], "r") && strcmp(t[6], "w") && strcmp(t[6], "n"))
                    die_program("bad protection '%.20s' (expected r, w or n)", t[6]);
                s->arg = t[6][0];
            }
        }
        nstmts++;
    }
    if (!seen_end)
        die_program("missing 'end'");
    free(buf);
    validate_program();
}

/* ------------------------------------------------------------------ counters */
/* The three counters of /proc/vmstat, in one pass over its lines (the windows read it
 * two or four times each, holding the batch's lock: three passes, a string compare per
 * line each, were a third of the reading).  Absent: -1. */
static void parse_vmstat(const char *buf, int64_t *out)
{
    static const struct { const char *name; size_t len; int idx; } want[] = {
        {"pgreuse ", 8, C_PGREUSE},
        {"ksm_swpin_copy ", 15, C_SWPIN_COPY},
        {"cow_ksm ", 8, C_COW_KSM},
    };
    int left = 3;
    const char *p = buf;
    while (p && *p && left) {
        for (int i = 0; i < 3; i++)
            if (*p == want[i].name[0] && !strncmp(p, want[i].name, want[i].len)) {
                out[want[i].idx] = strtoll(p + want[i].len, NULL, 10);
                left--;
                break;
            }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

/* The counter area of a slot's scratch (shared memory: reading into it writes no private
 * page), COUNTER_BUF bytes. */
static unsigned char *counter_buf(int p)
{
    return slots[p].scratch + MAX_PAGE_SIZE;
}

/* Every read is bounded by `size`, the buffer's.  A file that fills the buffer may have been
 * cut: its counters stay unknown (-1, reported absent), never parsed from a partial text. */
static void read_counters(int64_t *out, unsigned char *buf, size_t size)
{
    for (int i = 0; i < NCOUNTERS; i++)
        out[i] = -1;
    if (vmstat_fd >= 0) {
        ssize_t n = pread(vmstat_fd, buf, size - 1, 0);
        if (n > 0 && (size_t)n < size - 1) {
            buf[n] = 0;
            parse_vmstat((char *)buf, out);
        }
    }
    for (int i = C_SHARED; i < NCOUNTERS; i++)
        if (sysfs_fd[i] >= 0) {
            size_t lim = size < 64 ? size : 64;     /* a number and a newline */
            ssize_t n = pread(sysfs_fd[i], buf, lim - 1, 0);
            if (n > 0 && (size_t)n < lim - 1) {
                buf[n] = 0;
                out[i] = strtoll((char *)buf, NULL, 10);
            }
        }
}

/* The change of each counter over an operation.  pgreuse is machine-wide and busy (every
 * fork on the machine moves it): when it moved in the empty control windows just before
 * or just after the operation, the machine was noisy and the value is unknown (reported
 * absent).  Unknown for any counter: INT64_MIN. */
static void window_delta(const int64_t *c0, const int64_t *pre, const int64_t *post,
                         const int64_t *c3, int64_t *out)
{
    for (int i = 0; i < NCOUNTERS; i++) {
        if (c0[i] < 0 || pre[i] < 0 || post[i] < 0 || c3[i] < 0)
            out[i] = INT64_MIN;
        else if (i == C_PGREUSE && (pre[i] != c0[i] || c3[i] != post[i]))
            out[i] = INT64_MIN;
        else
            out[i] = post[i] - pre[i];
    }
}

/* ------------------------------------------------------------------ futex */
static long futex(volatile uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

/* ------------------------------------------------------------------ scenario process */
static int child_main(void *arg);
static int child_loop(int self, uint32_t seen);
static void exec_self(int self, uint32_t seq);
static void open_counters(void);

static struct pin_entry *find_pin(struct mailbox *mb, uintptr_t addr, int create)
{
    for (int i = 0; i < mb->npins; i++)
        if (mb->pins[i].addr == addr)
            return &mb->pins[i];
    if (!create || mb->npins >= MAX_PIN_ENTRIES)
        return NULL;
    struct pin_entry *e = &mb->pins[mb->npins++];
    e->addr = addr;
    e->rfd = e->wfd = -1;
    e->count = 0;
    return e;
}

/* Mark every VMA that is not one of the scenario's regions unmergeable (after
 * PR_SET_MEMORY_MERGE), so the probe's own memory never takes part in merging.  0 or
 * -errno: a maps file that does not fit the scratch (-EFBIG) or cannot be read is an error,
 * never a silent cut (a VMA past the cut would stay mergeable). */
static long exclude_internal(struct mailbox *mb, unsigned char *scratch)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    ssize_t n = 0;
    while (got < SCRATCH_SIZE - 1 && (n = read(fd, scratch + got, SCRATCH_SIZE - 1 - got)) > 0)
        got += (size_t)n;
    long err = n < 0 ? -errno : 0;
    if (!err && got == SCRATCH_SIZE - 1) {
        char extra;
        n = read(fd, &extra, 1);   /* (the mailbox's stack is shared: no private write) */
        err = n < 0 ? -errno : n > 0 ? -EFBIG : 0;
    }
    close(fd);
    if (err)
        return err;
    scratch[got] = 0;
    char *p = (char *)scratch;
    while (p && *p) {
        uintptr_t lo = (uintptr_t)strtoull(p, &p, 16);
        if (*p == '-')
            p++;
        uintptr_t hi = (uintptr_t)strtoull(p, &p, 16);
        int ours = 0;
        for (int i = 0; i < mb->nexcl && i < MAX_REGIONS; i++)
            if (lo < mb->excl_addr[i] + mb->excl_len[i] && mb->excl_addr[i] < hi)
                ours = 1;
        if (!ours && hi > lo && hi < 0xffffffffff600000UL)
            (void)madvise((void *)lo, hi - lo, MADV_UNMERGEABLE);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

/* Runs in a scenario process on its own present page: loads only, no calls, and the only
 * stores go to *out (the shared mailbox) and the stack (shared too), so it neither faults
 * nor copies.  Same decisions as decode_content made on the page itself. */
static void scan_content(const volatile unsigned char *pg, struct content_scan *out)
{
    uint64_t s = 0;
    for (int k = 7; k >= 0; k--)
        s = s << 8 | pg[SALT_OFF + k];
    unsigned char fill;
    uint8_t zero_based;
    out->salt = s;
    out->wbyte = pg[WRITE_OFF];
    if (s == salt) {
        fill = pg[FILL_OFF];
        zero_based = 0;
    } else if (s == salt2 || s == 0) {
        fill = 0;
        zero_based = 1;
    } else {
        out->bad = -2;
        out->fill = 0;
        out->zero_based = 0;
        out->bad_byte = 0;
        return;
    }
    out->fill = fill;
    out->zero_based = zero_based;
    out->bad = -1;
    out->bad_byte = 0;
    for (int i = 0; i < (int)page_size; i++) {
        if (i == WRITE_OFF || (i >= SALT_OFF && i < SALT_OFF + 8))
            continue;
        unsigned char b = pg[i];
        if (b != fill) {
            out->bad = i;
            out->bad_byte = b;
            return;
        }
    }
}

static void fill_page(unsigned char *pg, int byte)
{
    if (byte < 0) {
        memset(pg, 0, page_size);
    } else {
        memset(pg, byte, page_size);
        memcpy(pg + SALT_OFF, &salt, sizeof salt);
    }
}

/* OP_FILL of a region with an MPOL_BIND node: the fill, and a check with move_pages(2)
 * (nodes NULL: only the node of each page, nothing moves) that every page the fill faulted
 * in fresh (no page before: status -ENOENT, or the shared zero page: -EFAULT) came from
 * that node.  A page present before may be a KSM page of another node that the write
 * fault reused.  Chunks of the page list in the shared scratch area, never in private
 * memory (a write there would be a fault of this process's own). */
#define NODE_CHUNK 2048
static long fill_on_node(unsigned char *scratch, unsigned char *base, size_t npages, int byte,
                         int node)
{
    void **pages = (void **)scratch;
    int *before = (int *)(scratch + NODE_CHUNK * sizeof(void *));
    int *after = before + NODE_CHUNK;
    for (size_t lo = 0; lo < npages; lo += NODE_CHUNK) {
        size_t n = npages - lo < NODE_CHUNK ? npages - lo : NODE_CHUNK;
        for (size_t i = 0; i < n; i++)
            pages[i] = base + (lo + i) * page_size;
        if (syscall(SYS_move_pages, 0, n, pages, NULL, before, 0))
            return -errno;
        for (size_t i = 0; i < n; i++)
            fill_page(base + (lo + i) * page_size, byte);
        if (syscall(SYS_move_pages, 0, n, pages, NULL, after, 0))
            return -errno;
        for (size_t i = 0; i < n; i++)
            if (before[i] < 0 && after[i] != node)
                return -ERR_MISPLACED;
    }
    return 0;
}

static long do_op(int self, struct mailbox *mb)
{
    unsigned char *scratch = slots[self].scratch;
    unsigned char *base = (unsigned char *)mb->addr;
    size_t len = mb->npages * page_size;
    long ret = 0;
    switch (mb->op) {
    case OP_MMAP: {
        void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED)
            return -errno;
        (void)madvise(a, len, MADV_NOHUGEPAGE);
        if (mb->arg2 >= 0) {
            unsigned long mask[2] = {1UL << mb->arg2, 0};
            /* maxnode: the mask's bits + 1, as libnuma passes it */
            if (syscall(SYS_mbind, a, len, MPOL_BIND, mask, 65UL, MPOL_MF_STRICT)) {
                int e = errno;
                munmap(a, len);
                return -e;
            }
        }
        mb->ret_addr = (uintptr_t)a;
        break;
    }
    case OP_MPOL: {
        unsigned long mask[2] = {mb->arg >= 0 ? 1UL << mb->arg : 0, 0};
        if (syscall(SYS_set_mempolicy, mb->arg >= 0 ? MPOL_BIND : MPOL_DEFAULT,
                    mb->arg >= 0 ? mask : NULL, mb->arg >= 0 ? 65UL : 0UL))
            ret = -errno;
        break;
    }
    case OP_CGROUP: {          /* the group's cgroup.procs path is in the scratch */
        int fd = open((const char *)scratch, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        if (write(fd, "0", 1) != 1)
            ret = -errno;
        close(fd);
        break;
    }
    case OP_FILL:
        if (mb->arg2 >= 0)
            return fill_on_node(scratch, base, mb->npages, mb->arg, mb->arg2);
        for (size_t i = 0; i < mb->npages; i++) {
            unsigned char *pg = base + i * page_size;
            if (mb->arg < 0) {
                memset(pg, 0, page_size);
            } else {
                memset(pg, mb->arg, page_size);
                memcpy(pg + SALT_OFF, &salt, sizeof salt);
            }
        }
        break;
    case OP_WRITE:
        for (size_t i = 0; i < mb->npages; i++) {
            volatile unsigned char *pg = base + i * page_size;
            pg[WRITE_OFF] = (unsigned char)mb->arg;
            if (mb->arg2)
                memcpy((unsigned char *)pg + SALT_OFF, &salt2, sizeof salt2);
        }
        break;
    case OP_READ: {
        unsigned sum = 0;
        for (size_t i = 0; i < mb->npages; i++)
            sum += ((volatile unsigned char *)base)[i * page_size + FILL_OFF];
        mb->ret_addr = sum;
        break;
    }
    case OP_MADV: {
        int adv = mb->arg == 'm' ? MADV_MERGEABLE : mb->arg == 'u' ? MADV_UNMERGEABLE
                : mb->arg == 'd' ? MADV_DONTNEED : MADV_PAGEOUT;
        if (madvise(base, len, adv))
            ret = -errno;
        break;
    }
    case OP_MPROT:
        if (mprotect(base, len, mb->arg == 'r' ? PROT_READ : mb->arg == 'n' ? PROT_NONE
                                                           : PROT_READ | PROT_WRITE))
            ret = -errno;
        break;
    case OP_MLOCK:       /* VM_LOCKED + populate: write faults in a writable vma */
        if (mlock(base, len))
            ret = -errno;
        break;
    case OP_MUNLOCK:
        if (munlock(base, len))
            ret = -errno;
        break;
    case OP_FWRITE: {
        /* a write through /proc/self/mem: access_remote_vm() -> GUP with
         * FOLL_FORCE | FOLL_WRITE, which may write where the process cannot (read-only,
         * PROT_NONE) and breaks COW like a write fault */
        int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        for (size_t i = 0; i < mb->npages && !ret; i++) {
            uintptr_t pg = (uintptr_t)base + i * page_size;
            unsigned char b = (unsigned char)mb->arg;
            if (pwrite(fd, &b, 1, (off_t)(pg + WRITE_OFF)) != 1)
                ret = -errno;
            else if (mb->arg2 && pwrite(fd, &salt2, sizeof salt2, (off_t)(pg + SALT_OFF)) !=
                     (ssize_t)sizeof salt2)
                ret = -errno;
        }
        close(fd);
        break;
    }
    case OP_MUNMAP: {
        /* One run of still-mapped pages (the supervisor never names an unmapped one).
         * Then the hole is reserved again, PROT_NONE, at once: this process maps nothing
         * in between, so no later mmap of the scenario (or of the probe) can land in it
         * and be mistaken for the region's pages.  Pins of unmapped pages stay held. */
        if (munmap(base, len))
            return -errno;
        void *a = mmap(base, len, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (a == MAP_FAILED)
            return -errno;
        if (a != (void *)base) {   /* a kernel before 4.17 takes the flag as a mere hint */
            (void)munmap(a, len);
            return -EEXIST;
        }
        break;
    }
    case OP_PIN:
        for (size_t i = 0; i < mb->npages; i++) {
            uintptr_t a = (uintptr_t)(base + i * page_size);
            struct pin_entry *e = find_pin(mb, a, 1);
            if (!e)
                return -ENOSPC;
            if (e->rfd < 0) {
                int fds[2];
                if (pipe2(fds, O_CLOEXEC))
                    return -errno;
                e->rfd = fds[0];
                e->wfd = fds[1];
            }
            struct iovec iov = {(void *)a, page_size};
            ssize_t n = vmsplice(e->wfd, &iov, 1, 0);
            if (n != (ssize_t)page_size)
                return n < 0 ? -errno : -EIO;
            e->count++;
        }
        break;
    case OP_UNPIN:
        for (size_t i = 0; i < mb->npages; i++) {
            uintptr_t a = (uintptr_t)(base + i * page_size);
            struct pin_entry *e = find_pin(mb, a, 0);
            if (!e || e->count <= 0)
                return -ENOENT;
            size_t got = 0;
            while (got < page_size) {
                ssize_t n = read(e->rfd, scratch + got, page_size - got);
                if (n <= 0)
                    return n < 0 ? -errno : -EIO;
                got += (size_t)n;
            }
            if (--e->count == 0) {
                close(e->rfd);
                close(e->wfd);
                e->rfd = e->wfd = -1;
            }
        }
        break;
    case OP_PRCTL:
        if (prctl(PR_SET_MEMORY_MERGE, (unsigned long)mb->arg, 0, 0, 0))
            return -errno;
        if (mb->arg)
            return exclude_internal(mb, scratch);
        break;
    case OP_UFFDWP: {
        /* userfaultfd write protection with no handler: the descriptor stays open (its
         * release would unregister the range); the scenario never writes there */
        int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            return -errno;
        struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP};
        struct uffdio_register reg = {.range = {(uintptr_t)base, len},
                                      .mode = UFFDIO_REGISTER_MODE_WP};
        struct uffdio_writeprotect wp = {.range = {(uintptr_t)base, len},
                                         .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg) ||
            ioctl(fd, UFFDIO_WRITEPROTECT, &wp)) {
            ret = -errno;
            close(fd);
        }
        break;
    }
    case OP_FORK: {
        int c = mb->child;
        struct mailbox *cmb = &slots[c].mb;
        cmb->ready = 0;
        cmb->cmd_seq = cmb->done_seq = 0;
        cmb->npins = 0;
        cmb->child = self; /* the child learns its parent's slot */
        pid_t pid = clone(child_main, slots[c].stack + STACK_SIZE, SIGCHLD, (void *)(intptr_t)c);
        if (pid < 0)
            return -errno;
        mb->ret_pid = pid;
        break;
    }
    default:
        return -EINVAL;
    }
    return ret;
}

static int supervisor_pidfd = -1;

/* A pidfd turns readable when the process exits, even while it waits as a zombie for a
 * parent that is gone (kill(pid, 0) would still succeed then). */
static int supervisor_alive(void)
{
    if (supervisor_pidfd >= 0) {
        struct pollfd pfd = {supervisor_pidfd, POLLIN, 0};
        return poll(&pfd, 1, 0) == 0;
    }
    return !(kill(supervisor_pid, 0) && errno == ESRCH);
}

static int child_main(void *arg)
{
    int self = (int)(intptr_t)arg;
    struct mailbox *mb = &slots[self].mb;
    signal(SIGCHLD, SIG_IGN);
    if (self > 0) {
        /* pins belong to the process that made them: drop the parent's copies */
        struct mailbox *pmb = &slots[mb->child].mb;
        for (int i = 0; i < pmb->npins; i++)
            if (pmb->pins[i].rfd >= 0) {
                close(pmb->pins[i].rfd);
                close(pmb->pins[i].wfd);
            }
    }
    if (supervisor_pidfd < 0)   /* process 0 opens it; its children inherit it */
        supervisor_pidfd = pidfd_open_pid(supervisor_pid);   /* alive: waits for us */
    mb->pid = getpid();
    __atomic_store_n(&mb->ready, 1, __ATOMIC_SEQ_CST);
    futex((volatile uint32_t *)&mb->ready, FUTEX_WAKE, INT_MAX, NULL);
    return child_loop(self, 0);
}

static int child_loop(int self, uint32_t seen)
{
    struct mailbox *mb = &slots[self].mb;
    for (;;) {
        uint32_t seq = __atomic_load_n(&mb->cmd_seq, __ATOMIC_SEQ_CST);
        if (seq == seen) {
            struct timespec ts = {0, 200 * 1000 * 1000};
            futex(&mb->cmd_seq, FUTEX_WAIT, seen, &ts);
            if (!supervisor_alive())
                _exit(0);
            continue;
        }
        seen = seq;
        if (mb->op == OP_EXIT)
            _exit(0);
        if (mb->op == OP_EXEC) {
            exec_self(self, seq);       /* returns only when execve() failed */
            continue;
        }
        if (mb->op == OP_PEEK) {
            /* no counter window: loads of present pages move no counter */
            int npeek = mb->npeek;
            if (npeek < 0 || npeek > mb->page_cap)
                npeek = 0, mb->ret = -EINVAL;   /* counts bounded by the arrays, always */
            else
                mb->ret = 0;
            for (int i = 0; i < npeek; i++)
                scan_content((const volatile unsigned char *)
                             ((const uintptr_t *)((char *)slots + mb->peek_addr_off))[i],
                             (struct content_scan *)((char *)slots + mb->peek_off) + i);
            /* MMF_VM_MERGE_ANY of this process's mm (6.4+; EINVAL before): only the
             * process itself can ask */
            {
                int r = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
                mb->merge_any = r < 0 ? -1 : r;
            }
            __atomic_store_n(&mb->done_seq, seq, __ATOMIC_SEQ_CST);
            futex(&mb->done_seq, FUTEX_WAKE, INT_MAX, NULL);
            continue;
        }
        /* pgreuse is counted only by wp_page_reuse(), i.e. by a write fault (an unshare
         * fault returns before it): only write and fill can move it.  For them the window
         * has empty control windows on both sides to catch the machine's own noise; for
         * every other operation the probe's share is 0 and the machine's noise is not
         * measured at all. */
        int faults = mb->op == OP_WRITE || mb->op == OP_FILL || mb->op == OP_FWRITE ||
                     mb->op == OP_MLOCK;
        int64_t c0[NCOUNTERS], pre[NCOUNTERS], post[NCOUNTERS], c3[NCOUNTERS];
        window_lock();
        if (faults)
            read_counters(c0, counter_buf(self), COUNTER_BUF);
        read_counters(pre, counter_buf(self), COUNTER_BUF);
        long r = do_op(self, mb);
        read_counters(post, counter_buf(self), COUNTER_BUF);
        if (faults) {
            read_counters(c3, counter_buf(self), COUNTER_BUF);
            window_delta(c0, pre, post, c3, mb->delta);
        } else {
            window_delta(pre, pre, post, post, mb->delta);
            if (mb->delta[C_PGREUSE] != INT64_MIN)
                mb->delta[C_PGREUSE] = 0;
        }
        window_unlock();
        mb->ret = r;
        __atomic_store_n(&mb->done_seq, seq, __ATOMIC_SEQ_CST);
        futex(&mb->done_seq, FUTEX_WAKE, INT_MAX, NULL);
    }
}

/* ------------------------------------------------------------------ exec */
/* OP_EXEC: execve() of the probe itself; the new image goes on as the same scenario
 * process (exec_child_main).  The shared area goes across as a descriptor of
 * /proc/self/map_files (the same shmem object, mapped again by the new image), with what
 * a scenario process reads of the supervisor's globals: its slot, the process count, the
 * supervisor's pid, the salts and the command's sequence number. */
static size_t slots_total_len;   /* the whole shared area: the slots, then the tables */

static size_t slots_len(void)
{
    if (slots_total_len)
        return slots_total_len;
    size_t len = sizeof(struct slot) * (size_t)nprocs;
    return (len + page_size - 1) & ~(page_size - 1);
}

static void exec_self(int self, uint32_t seq)
{
    struct mailbox *mb = &slots[self].mb;
    char path[80], exe[PATH_MAX], a[6][24];
    uintptr_t lo = (uintptr_t)slots;
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)lo,
             (unsigned long)(lo + slots_len()));
    int fd = open(path, O_RDWR);     /* not O_CLOEXEC: the new image maps it */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    long err = 0;
    if (fd < 0 || n <= 0 || (size_t)n >= sizeof exe - 1) {
        err = fd < 0 || n < 0 ? -errno : -ENAMETOOLONG;
    } else {
        exe[n] = 0;
        snprintf(a[0], sizeof a[0], "%d", self);
        snprintf(a[1], sizeof a[1], "%d", fd);
        snprintf(a[2], sizeof a[2], "%d", nprocs);
        snprintf(a[3], sizeof a[3], "%d", (int)supervisor_pid);
        snprintf(a[4], sizeof a[4], "%llx", (unsigned long long)salt);
        snprintf(a[5], sizeof a[5], "%llx", (unsigned long long)salt2);
        char seqs[24];
        snprintf(seqs, sizeof seqs, "%u", seq);
        char *argv[] = {exe, "--exec-child", a[0], a[1], a[2], a[3], a[4], a[5], seqs, NULL};
        execv(exe, argv);
        err = -errno;
    }
    if (fd >= 0)
        close(fd);
    mb->ret = err;
    __atomic_store_n(&mb->done_seq, seq, __ATOMIC_SEQ_CST);
    futex(&mb->done_seq, FUTEX_WAKE, INT_MAX, NULL);
}

static int exec_self_slot;
static uint32_t exec_seq;

/* On the slot's shared stack, as a cloned scenario process runs: its writes there never
 * fault, even after the process forks again. */
static void exec_child_run(void)
{
    int self = exec_self_slot;
    struct mailbox *mb = &slots[self].mb;
    long r = 0;
    /* >= 6.6 MMF_VM_MERGE_ANY survives execve(): every vma of the new image is
     * mergeable; take the probe's own out (the scenario has no region here yet) */
    mb->nexcl = 0;
    if (prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) == 1)
        r = exclude_internal(mb, slots[self].scratch);
    for (int i = 0; i < NCOUNTERS; i++)
        mb->delta[i] = 0;
    mb->pid = getpid();
    mb->ret = r;
    __atomic_store_n(&mb->done_seq, exec_seq, __ATOMIC_SEQ_CST);
    futex(&mb->done_seq, FUTEX_WAKE, INT_MAX, NULL);
    _exit(child_loop(self, exec_seq));
}

static int exec_child_main(char **argv)
{
    long self, fd, n, sup, seq;
    if (parse_uint(argv[2], 0, MAX_PROCS - 1, &self) || parse_uint(argv[3], 0, 100000, &fd) ||
        parse_uint(argv[4], 1, MAX_PROCS, &n) || parse_uint(argv[5], 1, INT_MAX, &sup) ||
        parse_uint(argv[8], 0, UINT32_MAX, &seq) || self >= n)
        return 4;
    nprocs = (int)n;
    salt = strtoull(argv[6], NULL, 16);
    salt2 = strtoull(argv[7], NULL, 16);
    struct stat st;               /* the shmem object's size: the whole area, tables included */
    if (fstat((int)fd, &st) || st.st_size <= 0)
        return 3;
    slots_total_len = (size_t)st.st_size;
    slots = mmap(NULL, slots_len(), PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    close((int)fd);
    if (slots == MAP_FAILED)
        return 3;                     /* the supervisor sees the process die */
    supervisor_pid = (pid_t)sup;
    supervisor_pidfd = pidfd_open_pid(supervisor_pid);
    open_counters();
    const char *lockp = getenv("KSMDIFF_PROBE_LOCK");
    if (lockp && *lockp)
        window_lock_fd = open(lockp, O_RDWR | O_CLOEXEC);
    signal(SIGCHLD, SIG_IGN);
    exec_self_slot = (int)self;
    exec_seq = (uint32_t)seq;
    static ucontext_t uc;
    if (getcontext(&uc))
        return 3;
    uc.uc_stack.ss_sp = slots[self].stack;
    uc.uc_stack.ss_size = STACK_SIZE;
    uc.uc_link = NULL;
    makecontext(&uc, exec_child_run, 0);
    setcontext(&uc);
    return 3;
}

/* ------------------------------------------------------------------ supervisor */
static int pid_dead(int p)
{
    struct proc_state *ps = &procs[p];
    if (ps->pidfd >= 0) {
        struct pollfd pfd = {ps->pidfd, POLLIN, 0};
        return poll(&pfd, 1, 0) > 0;
    }
    return kill(ps->pid, 0) && errno == ESRCH;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void wait_ready(int sidx, int c)
{
    struct mailbox *mb = &slots[c].mb;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!__atomic_load_n(&mb->ready, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        futex((volatile uint32_t *)&mb->ready, FUTEX_WAIT, 0, &ts);
        if (elapsed_ms(&t0) > CMD_TIMEOUT_MS)
            die_runtime(sidx, "process %d did not start", c);
    }
}

static void open_proc_files(int sidx, int p, pid_t pid)
{
    char path[64];
    struct proc_state *ps = &procs[p];
    ps->pid = pid;
    /* Race-free: the process has said it is ready and now only waits for commands; it
     * leaves only on an 'exit' command or when the supervisor is gone, so nothing has
     * reaped it and its pid still names it. */
    ps->pidfd = pidfd_open_pid(pid);
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    ps->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ps->pagemap_fd < 0)
        die_runtime(sidx, "cannot open /proc/%d/pagemap: %s", (int)pid, strerror(errno));
}

static void issue(int sidx, int p);

static void command(int sidx, int p, struct mailbox *tmpl)
{
    struct mailbox *mb = &slots[p].mb;
    mb->op = tmpl->op;
    mb->arg = tmpl->arg;
    mb->arg2 = tmpl->arg2;
    mb->child = tmpl->child;
    mb->addr = tmpl->addr;
    mb->npages = tmpl->npages;
    mb->nexcl = tmpl->nexcl;
    for (int i = 0; i < tmpl->nexcl; i++) {
        mb->excl_addr[i] = tmpl->excl_addr[i];
        mb->excl_len[i] = tmpl->excl_len[i];
    }
    issue(sidx, p);
}

/* Hand process p the command already in its mailbox and wait until it is done. */
static void issue(int sidx, int p)
{
    struct mailbox *mb = &slots[p].mb;
    int op = mb->op;
    uint32_t seq = mb->cmd_seq + 1;
    __atomic_store_n(&mb->cmd_seq, seq, __ATOMIC_SEQ_CST);
    futex(&mb->cmd_seq, FUTEX_WAKE, INT_MAX, NULL);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uint32_t done = __atomic_load_n(&mb->done_seq, __ATOMIC_SEQ_CST);
        if (done == seq)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        futex(&mb->done_seq, FUTEX_WAIT, done, &ts);
        if (__atomic_load_n(&mb->done_seq, __ATOMIC_SEQ_CST) == seq)
            break;
        if (pid_dead(p))
            die_runtime(sidx, "process %d died during '%s'", p, op_names[op]);
        if (elapsed_ms(&t0) > CMD_TIMEOUT_MS)
            die_runtime(sidx, "process %d did not finish '%s' within %d ms", p,
                        op_names[op], CMD_TIMEOUT_MS);
    }
    if (op == OP_FILL && mb->ret == -ERR_MISPLACED)
        die_runtime(sidx, "fill in process %d: a page it faulted in is not on its region's "
                    "MPOL_BIND node (move_pages(2))", p);
    if (mb->ret < 0)
        die_runtime(sidx, "%s in process %d failed: %s", op_names[op], p,
                    strerror((int)-mb->ret));
}

/* ------------------------------------------------------------------ cgroups */
static char cg_root[256];              /* the first cgroup2 mount ("" until looked up) */
static int cg_made[MAX_CGROUPS];

static int cgroup_dir(int g, char *out, size_t outsz)
{
    if (!cg_root[0]) {
        FILE *f = fopen("/proc/self/mounts", "re");
        char dev[256], dir[256], type[64];
        while (f && fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
            if (!strcmp(type, "cgroup2")) {
                snprintf(cg_root, sizeof cg_root, "%s", dir);
                break;
            }
        if (f)
            fclose(f);
        if (!cg_root[0])
            return -1;
    }
    snprintf(out, outsz, "%s/ksmdiff-probe-%d-%d", cg_root, (int)supervisor_pid, g);
    return 0;
}

/* The group of an OP_CGROUP, made at its first statement; the path of its cgroup.procs
 * goes to process p's scratch (the process writes itself in). */
static int cg_mems[MAX_CGROUPS];       /* a group's cpuset node; -1 none */

/* Write VALUE to DIR/FILE, a file of CONTROLLER; a failure ends the scenario with why. */
static void cgroup_write(int sidx, const char *dir, const char *file, const char *value,
                         const char *controller)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(value);
    if (fd < 0 || write(fd, value, n) != (ssize_t)n) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        die_runtime(sidx, "cgroup: %s: %s (is the %s controller enabled in the root's "
                    "cgroup.subtree_control?)", path, strerror(e), controller);
    }
    close(fd);
}

static void cgroup_prepare(int sidx, int p, int g, int pages, int mems)
{
    char dir[320];
    if (cgroup_dir(g, dir, sizeof dir))
        die_runtime(sidx, "cgroup: no cgroup2 file system is mounted");
    if (!cg_made[g]) {
        if (mkdir(dir, 0755) && errno != EEXIST)
            die_runtime(sidx, "cgroup: mkdir %s: %s", dir, strerror(errno));
        cg_made[g] = 1;
        char v[32];
        if (pages >= 0) {
            snprintf(v, sizeof v, "%llu", (unsigned long long)pages * page_size);
            cgroup_write(sidx, dir, "memory.max", v, "memory");
        }
        cg_mems[g] = mems;
        if (mems >= 0) {
            snprintf(v, sizeof v, "%d", mems);
            cgroup_write(sidx, dir, "cpuset.mems", v, "cpuset");
        }
    }
    procs[p].cpuset_node = cg_mems[g];
    snprintf((char *)slots[p].scratch, MAX_PAGE_SIZE, "%s/cgroup.procs", dir);
}

/* After the scenario's processes are gone: the groups go (rmdir fails while an exiting
 * task still counts in one: a few retries). */
static void cgroup_cleanup(void)
{
    for (int g = 0; g < MAX_CGROUPS; g++) {
        char dir[320];
        if (!cg_made[g] || cgroup_dir(g, dir, sizeof dir))
            continue;
        for (int i = 0; i < 100 && rmdir(dir) && errno == EBUSY; i++)
            usleep(10000);
        cg_made[g] = 0;
    }
}

static void kill_all(void)
{
    if (!slots || getpid() != supervisor_pid)
        return;
    window_lock();
    for (int p = 0; p < MAX_PROCS; p++) {
        struct proc_state *ps = &procs[p];
        if (!ps->spawned || !ps->alive || ps->pid <= 0)
            continue;
        if (ps->pidfd >= 0 && pidfd_kill(ps->pidfd, SIGKILL) == 0)
            continue;
        if (ps->pidfd >= 0 && errno != ENOSYS)
            continue;            /* ESRCH: gone already */
        /* No pidfds on this kernel (before 5.3): kill(2) by pid.  Safe as far as the probe
         * can make it: a live scenario process leaves only on an 'exit' command (it is then
         * no longer alive here) or when the supervisor is gone, so its pid was not reaped
         * and reused; only a process killed from outside could have freed it. */
        kill(ps->pid, SIGKILL);
    }
    for (int p = 0; p < MAX_PROCS; p++)
        if (procs[p].spawned && procs[p].alive && procs[p].pidfd >= 0) {
            struct pollfd pfd = {procs[p].pidfd, POLLIN, 0};
            poll(&pfd, 1, 2000);
        }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    cgroup_cleanup();
    window_unlock();
}

static int kpageflags_fd = -1, kpagecount_fd = -1;

/* The content string of a page, from its scan (scan_content, in the page's process). */
static void decode_content(const struct content_scan *sc, char *out, size_t outsz)
{
    uint64_t s = sc->salt;
    int fill = sc->fill;
    int zero_based = sc->zero_based;
    if (sc->bad == -2) {
        snprintf(out, outsz, "?salt");
        return;
    }
    if (sc->bad >= 0) {
        snprintf(out, outsz, "?byte%d=0x%02x", (int)sc->bad, sc->bad_byte);
        return;
    }
    int w = sc->wbyte;
    if (s == 0 && zero_based && w == 0) {
        snprintf(out, outsz, "zero");
        return;
    }
    if (zero_based)
        snprintf(out, outsz, w ? "zero+0x%02x" : "zero", w);
    else if (w != fill)
        snprintf(out, outsz, "0x%02x+0x%02x", fill, w);
    else
        snprintf(out, outsz, "0x%02x", fill);
}

/* pgreuse is machine-wide: another process's reuse fault between the window's two reads,
 * but in neither empty control window, would pass for the scenario's.  The scenario's own
 * share is bounded: wp_page_reuse() keeps the faulting page, so only a page the write or
 * fill touched that still has the frame it had before can have counted (one each).  A
 * larger change is noise: unknown (absent), like noise the control windows catch.  (Seen
 * as counter.pgreuse +1 on copying writes in sharer-exits under heavy load.) */
static int pgreuse_possible(struct stmt *s, int ngroup)
{
    int n = 0;
    uint64_t pm[1024];
    for (int g = 0; g < ngroup; g++) {
        struct stmt *x = s + g;
        if (x->op != OP_WRITE && x->op != OP_FILL && x->op != OP_FWRITE && x->op != OP_MLOCK)
            continue;
        struct proc_state *ps = &procs[x->p];
        struct region_state *rs = ps->reg[x->r];
        if (!ps->alive || !rs || !rs->exists)
            continue;
        for (int lo = x->lo; lo <= x->hi; lo += 1024) {   /* (a chunk at a time) */
            int hi = x->hi - lo >= 1024 ? lo + 1023 : x->hi;
            size_t cnt = (size_t)(hi - lo + 1);
            off_t at = (off_t)((rs->addr / page_size + (uintptr_t)lo) * 8);
            if (pread(ps->pagemap_fd, pm, cnt * 8, at) != (ssize_t)(cnt * 8))
                return INT_MAX;   /* cannot tell: keep the value */
            for (int i = lo; i <= hi; i++) {
                uint64_t e = pm[i - lo];
                if (rs->mapped[i] && (e >> 63 & 1) && rs->last_pfn[i] != NO_PFN &&
                    (e & ((1ULL << 55) - 1)) == rs->last_pfn[i])
                    n++;
            }
        }
    }
    return n;
}

/* ksm_merging_pages and ksm_zero_pages summed over the live processes'
 * /proc/PID/ksm_stat (6.1+), for the record after a ksm statement: the runner attributes
 * a shared settle's gauges from them.  0 when unreadable (no such file). */
static int ksm_stat(int64_t *merging, int64_t *zero)
{
    char buf[512];
    *merging = *zero = 0;
    for (int p = 0; p < MAX_PROCS; p++) {
        if (!procs[p].spawned || !procs[p].alive)
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ksm_stat", (int)procs[p].pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return 0;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0 || (size_t)n == sizeof buf - 1)   /* unreadable, or maybe cut */
            return 0;
        buf[n] = 0;
        for (char *l = buf; l && *l;) {
            if (!strncmp(l, "ksm_merging_pages ", 18))
                *merging += strtoll(l + 18, NULL, 10);
            else if (!strncmp(l, "ksm_zero_pages ", 15))
                *zero += strtoll(l + 15, NULL, 10);
            l = strchr(l, '\n');
            if (l)
                l++;
        }
    }
    return 1;
}

/* One process's per-process KSM counters, -1 where the kernel has no such value:
 * ksm_rmap_items and ksm_zero_pages from /proc/PID/ksm_stat (6.1+, 6.6+),
 * ksm_merging_pages from /proc/PID/ksm_merging_pages (5.19+).  Reading them takes no page
 * reference and no lock a scenario step could wait on (mmap_read_lock only). */
static int read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0 || (size_t)n == size - 1)
        return 0;
    buf[n] = 0;
    return 1;
}

static int proc_ksm_counters(int p, int64_t out[3])
{
    char path[64], buf[512];
    out[0] = out[1] = out[2] = -1;
    snprintf(path, sizeof path, "/proc/%d/ksm_stat", (int)procs[p].pid);
    if (read_small(path, buf, sizeof buf)) {
        for (char *l = buf; l && *l;) {
            if (!strncmp(l, "ksm_rmap_items ", 15))
                out[0] = strtoll(l + 15, NULL, 10);
            else if (!strncmp(l, "ksm_zero_pages ", 15))
                out[2] = strtoll(l + 15, NULL, 10);
            l = strchr(l, '\n');
            if (l)
                l++;
        }
    }
    snprintf(path, sizeof path, "/proc/%d/ksm_merging_pages", (int)procs[p].pid);
    if (read_small(path, buf, sizeof buf))
        out[1] = strtoll(buf, NULL, 10);
    return out[0] >= 0 || out[1] >= 0 || out[2] >= 0;
}

/* Records of changes (docs/probe-wire.md): a record prints a page only where its entry
 * differs from the last one printed for it (or the statement read or wrote it: its fault),
 * and lists the pages that went ("g").  The kernel is still asked about every page each
 * record, cheaply: one pagemap read per region, and kpageflags / kpagecount in runs of
 * nearby PFNs.  A page's content is read again only where it may have changed: the page
 * is new to the stream, its pagemap entry or protection changed, the statement read or
 * wrote it, or it maps a frame such a page was left on (a write into a frame another pte
 * maps too would show there). */
struct pfn_ref {
    uint64_t pfn;
    uint64_t *at;      /* its kflags entry; the kcount entry is page_cap further on */
    uint32_t ord;      /* the page's place among the present pages, in canonical order */
};
static struct pfn_ref *pfn_refs;
/* A page (proc, region, index) by its place among the present pages (ord), and the place
 * of the first present page mapping the same frame: a frame's label (observe.py) is its
 * first page in canonical page order (processes, regions, pages by index, as observe()
 * walks them), so the probe names each page's frame by that page itself and the records
 * carry labels, never PFNs: runs of pages then compress (an unshared page's label is its
 * own name, a run of them one entry). */
struct page_id {
    int32_t p, r, i;
};
static struct page_id *ord_page;
static uint32_t *first_of;
static uint64_t *ksm_seen;     /* the KSM PFNs of one record's changed pages ("kp") */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* by PFN, then by place: a frame's pages in canonical order, its first page first */
static int cmp_ref(const void *a, const void *b)
{
    const struct pfn_ref *x = a, *y = b;
    if (x->pfn != y->pfn)
        return x->pfn < y->pfn ? -1 : 1;
    return x->ord < y->ord ? -1 : x->ord > y->ord;
}

/* kpageflags and kpagecount of the nref pages in pfn_refs: sorted by PFN, one read of
 * each file per run of PFNs less than KPAGE_GAP apart. */
#define KPAGE_GAP 64
#define KPAGE_CHUNK 4096
static void read_kpage(int sidx, size_t nref)
{
    /* (fresh memory of the supervisor's own, as table_alloc says: a static buffer would
     * sit on a page shared copy-on-write with process 0) */
    static uint64_t *fl, *cnt;
    if (!fl) {
        fl = table_alloc(2 * KPAGE_CHUNK * sizeof *fl);
        cnt = fl + KPAGE_CHUNK;
    }
    qsort(pfn_refs, nref, sizeof *pfn_refs, cmp_ref);
    size_t cap = (size_t)slots[0].mb.page_cap;
    for (size_t a = 0; a < nref;) {
        size_t b = a + 1;
        while (b < nref && pfn_refs[b].pfn - pfn_refs[b - 1].pfn < KPAGE_GAP &&
               pfn_refs[b].pfn - pfn_refs[a].pfn < KPAGE_CHUNK)
            b++;
        uint64_t lo = pfn_refs[a].pfn;
        size_t n = (size_t)(pfn_refs[b - 1].pfn - lo + 1);
        if (pread(kpageflags_fd, fl, n * 8, (off_t)(lo * 8)) != (ssize_t)(n * 8) ||
            pread(kpagecount_fd, cnt, n * 8, (off_t)(lo * 8)) != (ssize_t)(n * 8))
            die_runtime(sidx, "kpageflags/kpagecount read failed for a page");
        for (size_t k = a; k < b; k++) {
            pfn_refs[k].at[0] = fl[pfn_refs[k].pfn - lo];
            pfn_refs[k].at[cap] = cnt[pfn_refs[k].pfn - lo];
        }
        a = b;
    }
}

/* Where region r's pages start in process p's mailbox arrays. */
static int page_offset(int p, int r)
{
    int used = 0;
    for (int q = 0; q < r; q++)
        if (procs[p].reg[q] && procs[p].reg[q]->exists)
            used += procs[p].reg[q]->npages;
    return used;
}

static int page_touched(struct stmt *s, int ngroup, int p, int r, int i)
{
    for (int g = 0; g < ngroup; g++) {
        struct stmt *x = s + g;
        if ((x->op == OP_READ || x->op == OP_WRITE || x->op == OP_FILL || x->op == OP_FWRITE) &&
            x->p == p && x->r == r && i >= x->lo && i <= x->hi)
            return 1;
    }
    return 0;
}

/* A present page (pagemap entry e) whose content must be read again (above). */
static int content_may_change(struct region_state *rs, int i, uint64_t e, struct stmt *s,
                              int ngroup, int p, int r, const uint64_t *touched_pfns,
                              size_t ntouched)
{
    struct page_seen *sn = &rs->seen[i];
    uint64_t pfn = e & ((1ULL << 55) - 1);
    if (!sn->shown || !sn->present || sn->pfn != pfn || sn->noaccess != rs->noaccess[i] ||
        !sn->content[0])
        return 1;
    if (page_touched(s, ngroup, p, r, i))
        return 1;
    return ntouched && bsearch(&pfn, touched_pfns, ntouched, sizeof *touched_pfns, cmp_u64);
}

/* The "g" list of a record: runs of pages that went, [proc, region, first, last]. */
static int gone_p = -1, gone_r, gone_lo, gone_hi, gone_first = 1;

static void gone_flush_run(void)
{
    if (gone_p < 0)
        return;
    printf("%s[%d,%d,%d,%d]", gone_first ? ",\"g\":[" : ",", gone_p, gone_r, gone_lo, gone_hi);
    gone_first = 0;
    gone_p = -1;
}

static void note_gone(int p, int r, int i)
{
    if (gone_p == p && gone_r == r && gone_hi + 1 == i) {
        gone_hi = i;
        return;
    }
    gone_flush_run();
    gone_p = p, gone_r = r, gone_lo = gone_hi = i;
}

static void flush_gone(void)
{
    gone_flush_run();
    if (!gone_first)
        printf("]");
    gone_first = 1;
}

/* The "p" list of a record: runs of consecutive pages of one region whose fields are
 * one value, but for the frame label, which may instead follow the page index (page lo+j
 * of the run names page frame_page+j: an unshared page names itself, a fork-shared COW
 * page its parent's page of the same index).  So a record costs runs of pages. */
static struct {
    int open, p, r, lo, hi, follows;
    struct page_seen v;
    const char *fault;
} run;
static int runs_first = 1;

static void run_flush(void)
{
    if (!run.open)
        return;
    struct page_seen *v = &run.v;
    printf("%s[%d,%d,%d,%d,%d,%d", runs_first ? "" : ",", run.p, run.r, run.lo, run.hi,
           v->present, v->swapped);
    runs_first = 0;
    if (v->present) {
        if (v->fp >= 0)
            printf(",%d,%d,%d,%d", v->fp, v->fr, v->fi, run.follows);
        else
            printf(",null,null,null,null");
        printf(",%d,%d,%llu,%d,", v->ksm, v->zero, (unsigned long long)v->count, v->excl);
        if (v->content[0])
            json_str(stdout, v->content);
        else
            printf("null");
    } else {
        printf(",null,null,null,null,null,null,null,null,null");
    }
    if (*run.fault)
        printf(",\"%s\"]", run.fault);
    else
        printf("]");
    run.open = 0;
}

/* Page i of region r of process p, state now (fault: "" none), into the run or a new one. */
static void run_add(int p, int r, int i, const struct page_seen *now, const char *fault)
{
    if (run.open && run.p == p && run.r == r && run.hi + 1 == i &&
        !strcmp(run.fault, fault) && now->present == run.v.present &&
        now->swapped == run.v.swapped && now->ksm == run.v.ksm && now->zero == run.v.zero &&
        now->count == run.v.count && now->excl == run.v.excl &&
        !strcmp(now->content, run.v.content) && now->fp == run.v.fp && now->fr == run.v.fr) {
        int64_t step = (int64_t)i - run.lo;
        if (now->fp < 0 || (!run.follows && now->fi == run.v.fi)) {
            run.hi = i;
            return;
        }
        if ((run.follows || run.lo == run.hi) && (int64_t)now->fi == run.v.fi + step) {
            run.follows = 1;
            run.hi = i;
            return;
        }
    }
    run_flush();
    run.open = 1;
    run.p = p, run.r = r, run.lo = run.hi = i, run.follows = 0;
    memcpy(&run.v, now, sizeof *now);
    run.fault = fault;
}

/* Only the fields a record shows (not the PFN, not PROT_NONE): did they change? */
static int shown_changed(const struct page_seen *a, const struct page_seen *b)
{
    struct page_seen x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    x.pfn = y.pfn = 0;
    x.noaccess = y.noaccess = 0;
    return memcmp(&x, &y, sizeof x) != 0;
}

static void observe(int sidx, struct stmt *s, int ngroup, const int64_t *delta)
{
    int64_t checked[NCOUNTERS];
    if (delta && delta[C_PGREUSE] != INT64_MIN && delta[C_PGREUSE] > 0) {
        for (int i = 0; i < NCOUNTERS; i++)
            checked[i] = delta[i];
        if (checked[C_PGREUSE] > pgreuse_possible(s, ngroup))
            checked[C_PGREUSE] = INT64_MIN;
        delta = checked;
    }
    printf("{\"s\":%d", s->idx);
    if (s->op == OP_SYNC) {
        int64_t merging, zero;
        if (ksm_stat(&merging, &zero))
            printf(",\"k\":[%lld,%lld]", (long long)merging, (long long)zero);
        else
            printf(",\"k\":null");
    }
    if (s->op == OP_FORK)
        printf(",\"pid\":%d", (int)procs[s->arg].pid);
    if (delta) {
        printf(",\"c\":{");
        int first = 1;
        for (int i = 0; i < NCOUNTERS; i++)
            if (delta[i] != INT64_MIN) {
                printf("%s\"%s\":%lld", first ? "" : ",", counter_names[i], (long long)delta[i]);
                first = 0;
            }
        printf("}");
    }
    if (!ord_page) {
        /* (fresh memory of the supervisor's own, made after process 0 is cloned, as
         * read_kpage's buffers: never a page shared copy-on-write with it) */
        size_t n = (size_t)(page_cap ? page_cap : 1) * (size_t)nprocs;
        ord_page = table_alloc(n * sizeof *ord_page);
        first_of = table_alloc(n * sizeof *first_of);
        ksm_seen = table_alloc(n * sizeof *ksm_seen);
    }
    printf(",\"p\":[");
    int merge_any[MAX_PROCS];
    for (int p = 0; p < MAX_PROCS; p++)
        merge_any[p] = -1;
    /* 1: every live process's pagemap; the present pages' PFNs, in order, for the
     * kpageflags / kpagecount reads */
    size_t nref = 0;
    for (int p = 0; p < MAX_PROCS; p++) {
        struct proc_state *ps = &procs[p];
        if (!ps->spawned || !ps->alive)
            continue;
        struct mailbox *mb = &slots[p].mb;
        int used = 0;
        for (int r = 0; r < nregions; r++) {
            struct region_state *rs = ps->reg[r];
            if (!rs || !rs->exists)
                continue;
            if (used + rs->npages > mb->page_cap)
                die_runtime(sidx, "more than %d pages in process %d", mb->page_cap, p);
            size_t want = (size_t)rs->npages * 8;
            if (pread(ps->pagemap_fd, mb->pm + used, want, (off_t)(rs->addr / page_size * 8)) !=
                (ssize_t)want)
                die_runtime(sidx, "pagemap read failed: %s", strerror(errno));
            for (int i = 0; i < rs->npages; i++) {
                uint64_t e = mb->pm[used + i];
                if (rs->mapped[i] && (e >> 63 & 1)) {
                    pfn_refs[nref].pfn = e & ((1ULL << 55) - 1);
                    pfn_refs[nref].at = &mb->kflags[used + i];
                    pfn_refs[nref].ord = (uint32_t)nref;
                    ord_page[nref] = (struct page_id){p, r, i};
                    nref++;
                }
            }
            used += rs->npages;
        }
    }
    read_kpage(sidx, nref);
    /* (pfn_refs now by PFN, each frame's pages in canonical order): each page's frame's
     * first page, and the KSM frames (for a ksm statement's gauges, "kf") */
    long ksm_frames = 0;
    for (size_t a = 0; a < nref;) {
        size_t b = a + 1;
        while (b < nref && pfn_refs[b].pfn == pfn_refs[a].pfn)
            b++;
        for (size_t k = a; k < b; k++)
            first_of[pfn_refs[k].ord] = pfn_refs[a].ord;
        uint64_t fl = pfn_refs[a].at[0];
        if ((fl >> 21 & 1) && !(fl >> 24 & 1))
            ksm_frames++;
        a = b;
    }
    size_t nksm = 0;
    uint32_t ord = 0;
    /* the PFNs the statement's reads and writes left its pages on: a write that kept a
     * frame another page maps too would show in that page's content alone */
    size_t ntouched = 0;
    uint64_t *touched_pfns = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int g = 0; g < ngroup; g++) {
            struct stmt *x = s + g;
            if (!(x->op == OP_READ || x->op == OP_WRITE || x->op == OP_FILL ||
                  x->op == OP_FWRITE) || !procs[x->p].alive)
                continue;
            struct region_state *rs = procs[x->p].reg[x->r];
            uint64_t *pm = slots[x->p].mb.pm + page_offset(x->p, x->r);
            for (int i = x->lo; i <= x->hi; i++)
                if (rs->mapped[i] && (pm[i] >> 63 & 1)) {
                    if (pass)
                        touched_pfns[ntouched] = pm[i] & ((1ULL << 55) - 1);
                    ntouched++;
                }
        }
        if (!pass) {
            touched_pfns = ntouched ? table_alloc(ntouched * sizeof(uint64_t)) : NULL;
            ntouched = 0;
        }
    }
    if (ntouched)
        qsort(touched_pfns, ntouched, sizeof(uint64_t), cmp_u64);
    /* 2: per live process, the pages whose entry may have changed are read again (one
     * OP_PEEK), and the ones that did change are printed */
    for (int p = 0; p < MAX_PROCS; p++) {
        struct proc_state *ps = &procs[p];
        if (!ps->spawned || !ps->alive)
            continue;
        struct mailbox *mb = &slots[p].mb;
        int npeek = 0, used = 0;
        for (int r = 0; r < nregions; r++) {
            struct region_state *rs = ps->reg[r];
            if (!rs || !rs->exists)
                continue;
            for (int i = 0; i < rs->npages; i++) {
                uint64_t e = mb->pm[used + i];
                if (rs->mapped[i] && !rs->noaccess[i] && (e >> 63 & 1) &&
                    content_may_change(rs, i, e, s, ngroup, p, r, touched_pfns, ntouched))
                    mb->peek_addr[npeek++] = rs->addr + (uintptr_t)i * page_size;
            }
            used += rs->npages;
        }
        /* (also without present pages: the process reports its prctl merge state) */
        mb->op = OP_PEEK;
        mb->npeek = npeek;
        issue(sidx, p);
        merge_any[p] = mb->merge_any;
        int j = 0;
        used = 0;
        for (int r = 0; r < nregions; r++) {
            struct region_state *rs = ps->reg[r];
            if (!rs || !rs->exists)
                continue;
            for (int i = 0; i < rs->npages; i++) {
                struct page_seen *sn = &rs->seen[i];
                if (!rs->mapped[i])
                    continue;            /* (its going, if it was shown: below) */
                uint64_t e = mb->pm[used + i];
                struct page_seen now;
                memset(&now, 0, sizeof now);
                now.shown = 1;
                now.present = (uint8_t)(e >> 63 & 1);
                now.swapped = (uint8_t)(e >> 62 & 1);
                now.noaccess = rs->noaccess[i];
                uint64_t pfn = e & ((1ULL << 55) - 1);
                now.fp = -1;
                if (now.present) {
                    uint64_t fl = mb->kflags[used + i];
                    struct page_id first = ord_page[first_of[ord++]];
                    now.pfn = pfn;
                    now.excl = (uint8_t)(e >> 56 & 1);
                    now.ksm = (uint8_t)(fl >> 21 & 1);
                    now.zero = (uint8_t)(fl >> 24 & 1);
                    now.count = mb->kcount[used + i];
                    if (!now.zero)
                        now.fp = first.p, now.fr = first.r, now.fi = first.i;
                    if (rs->noaccess[i])
                        now.content[0] = 0;    /* PROT_NONE: a load would fault */
                    else if (content_may_change(rs, i, e, s, ngroup, p, r, touched_pfns,
                                                ntouched))
                        decode_content(&mb->peek[j++], now.content, sizeof now.content);
                    else
                        memcpy(now.content, sn->content, sizeof now.content);
                }
                int touched = page_touched(s, ngroup, p, r, i);
                const char *fault = "";
                if (touched && now.present) {
                    if (rs->last_pfn[i] == NO_PFN)
                        fault = "fresh";
                    else if (rs->last_pfn[i] == pfn)
                        fault = "reused";
                    else
                        fault = "copied";
                }
                if (now.present)
                    rs->last_pfn[i] = pfn;
                else if (!now.swapped)
                    rs->last_pfn[i] = NO_PFN;
                if (now.present && now.ksm && !now.zero &&
                    (!sn->shown || !sn->present || !sn->ksm || sn->pfn != pfn))
                    ksm_seen[nksm++] = pfn;
                int show = *fault || shown_changed(&now, sn);
                memcpy(sn, &now, sizeof now);
                if (!show)
                    continue;
                ps->shown = 1;
                run_add(p, r, i, &now, fault);
            }
            used += rs->npages;
        }
    }
    run_flush();
    runs_first = 1;
    if (touched_pfns)
        munmap(touched_pfns, ntouched * sizeof(uint64_t));
    printf("]");
    if (nksm) {
        qsort(ksm_seen, nksm, sizeof *ksm_seen, cmp_u64);
        printf(",\"kp\":[");
        for (size_t k = 0; k < nksm; k++)
            if (!k || ksm_seen[k] != ksm_seen[k - 1])
                printf("%s%llu", k ? "," : "", (unsigned long long)ksm_seen[k]);
        printf("]");
    }
    if (s->op == OP_SYNC)
        printf(",\"kf\":%ld", ksm_frames);
    /* pages that went since the last record: munmap, exec (the region is gone with the
     * old mm), or their process exited */
    for (int p = 0; p < MAX_PROCS; p++) {
        struct proc_state *ps = &procs[p];
        if (!ps->spawned || !ps->shown)
            continue;
        for (int r = 0; r < nregions; r++) {
            struct region_state *rs = ps->reg[r];
            if (!rs || !rs->seen)
                continue;
            for (int i = 0; i < rs->npages; i++)
                if (rs->seen[i].shown && (!ps->alive || !rs->exists || !rs->mapped[i])) {
                    note_gone(p, r, i);
                    rs->seen[i].shown = 0;
                }
        }
        if (!ps->alive)
            ps->shown = 0;
    }
    flush_gone();
    {
        int firstm = 1;
        for (int p = 0; p < MAX_PROCS; p++) {
            int64_t v[3];
            if (!procs[p].spawned || !procs[p].alive)
                continue;
            if (!proc_ksm_counters(p, v) && merge_any[p] < 0)
                continue;
            printf("%s[%d,%lld,%lld,%lld,%d]", firstm ? ",\"m\":[" : ",", p, (long long)v[0],
                   (long long)v[1], (long long)v[2], merge_any[p]);
            firstm = 0;
        }
        if (!firstm)
            printf("]");
    }
    printf("}\n");
    fflush(stdout);
}

static int wait_go(int sidx)
{
    char line[64];
    if (sidx >= 0) {
        printf("{\"sync\":%d}\n", sidx);
        fflush(stdout);
    }
    if (!fgets(line, sizeof line, stdin))
        return 0;
    return !strcmp(line, "go\n");
}

static void open_counters(void)
{
    vmstat_fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
    for (int i = C_SHARED; i < NCOUNTERS; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/kernel/mm/ksm/%s", counter_names[i]);
        sysfs_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
    }
}

/* After clone() every private page of the supervisor is write-protected and shared with
 * process 0.  Write them now (copies, while process 0 lives), so that no later write of the
 * supervisor is a reuse fault inside a counter window (pgreuse). */
__attribute__((noinline)) static void pretouch_stack(void)
{
    volatile unsigned char area[192 * 1024];
    for (size_t i = 0; i < sizeof area; i += 512)
        area[i] = (unsigned char)i;
}

/* The per-page arrays of every mailbox (page_cap entries each) and observe()'s sort
 * buffer, in the slots' shared mapping after the slots, made before the first clone():
 * no write to them is ever a copy-on-write fault, and an exec'd process maps them with
 * the slots (exec_child_main: the whole shmem object; it reads them by offset). */
static size_t tables_len(void)
{
    size_t cap = (size_t)(page_cap ? page_cap : 1);
    size_t per = cap * (3 * sizeof(uint64_t) + sizeof(uintptr_t) + sizeof(struct content_scan));
    return per * (size_t)nprocs + cap * (size_t)nprocs * sizeof(struct pfn_ref);
}

/* Carve the tables out of the shared area, after the slots (run_program maps both). */
static void alloc_tables(void)
{
    size_t cap = (size_t)(page_cap ? page_cap : 1);
    size_t per = cap * (3 * sizeof(uint64_t) + sizeof(uintptr_t) + sizeof(struct content_scan));
    size_t slots_part = sizeof(struct slot) * (size_t)nprocs;
    slots_part = (slots_part + 63) & ~(size_t)63;
    unsigned char *area = (unsigned char *)slots + slots_part;
    for (int p = 0; p < nprocs; p++) {
        struct mailbox *mb = &slots[p].mb;
        unsigned char *at = area + per * (size_t)p;
        mb->page_cap = (int)cap;
        mb->pm = (uint64_t *)at;
        mb->kflags = mb->pm + cap;
        mb->kcount = mb->kflags + cap;
        mb->peek_addr = (uintptr_t *)(mb->kcount + cap);
        mb->peek = (struct content_scan *)(mb->peek_addr + cap);
        mb->peek_addr_off = (size_t)((char *)mb->peek_addr - (char *)slots);
        mb->peek_off = (size_t)((char *)mb->peek - (char *)slots);
    }
    pfn_refs = (struct pfn_ref *)(area + per * (size_t)nprocs);
}

static void run_program(void)
{
    supervisor_pid = getpid();
    struct rlimit rl = {16384, 16384};
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* orphaned scenario processes (their parent exited) come back to the supervisor, which
     * ignores SIGCHLD: they are reaped at once, never left as zombies of init */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (getppid() == 1)
        exit(5);
    /* Every process of the scenario on one CPU (children inherit it): a page it just
     * faulted sits in that CPU's LRU-add batch, and madvise(MADV_PAGEOUT) drains only the
     * local batch (lru_add_drain()) before isolating, so a page faulted on another CPU
     * would be skipped, not paged out.  Best effort: a failure leaves the mask as it was. */
    int cpu = sched_getcpu();
    if (cpu >= 0 && cpu < CPU_SETSIZE) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        (void)sched_setaffinity(0, sizeof one, &one);
    }
    kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
    kpagecount_fd = open("/proc/kpagecount", O_RDONLY | O_CLOEXEC);
    if (kpageflags_fd < 0 || kpagecount_fd < 0) {
        fprintf(stdout, "{\"s\":-1,\"error\":\"cannot open /proc/kpageflags: %s\"}\n",
                strerror(errno));
        fflush(stdout);
        exit(3);
    }
    open_counters();
    const char *lockp = getenv("KSMDIFF_PROBE_LOCK");
    if (lockp && *lockp)
        window_lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    {
        size_t slots_part = (sizeof(struct slot) * (size_t)nprocs + 63) & ~(size_t)63;
        slots_total_len = (slots_part + tables_len() + page_size - 1) & ~(page_size - 1);
    }
    slots = mmap(NULL, slots_len(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        fprintf(stdout, "{\"s\":-1,\"error\":\"mmap of the shared area failed\"}\n");
        exit(3);
    }
    alloc_tables();
    signal(SIGCHLD, SIG_IGN);
    /* spawn process 0 */
    slots[0].mb.child = 0;
    pid_t pid = clone(child_main, slots[0].stack + STACK_SIZE, SIGCHLD, (void *)(intptr_t)0);
    if (pid < 0)
        die_runtime(-1, "clone failed: %s", strerror(errno));
    procs[0].spawned = procs[0].alive = 1;
    wait_ready(-1, 0);
    pretouch_stack();
    open_proc_files(-1, 0, pid);
    printf("{\"start\":1,\"pid\":%d,\"fields\":[", (int)pid);
    for (size_t i = 0; i < sizeof page_fields / sizeof *page_fields; i++)
        printf("%s\"%s\"", i ? "," : "", page_fields[i]);
    printf("],\"records\":\"runs\",\"counters\":[");
    for (int i = 0; i < NCOUNTERS; i++)
        printf("%s\"%s\"", i ? "," : "", counter_names[i]);
    printf("]}\n");
    fflush(stdout);
    if (!wait_go(-1)) {
        kill_all();
        exit(5);
    }

    int64_t group_delta[NCOUNTERS];
    int group_start = 0;
    for (int i = 0; i < NCOUNTERS; i++)
        group_delta[i] = 0;
    for (int k = 0; k < nstmts; k++) {
        struct stmt *s = &stmts[k];
        struct mailbox cmd;
        memset(&cmd, 0, sizeof cmd);
        cmd.op = s->op;
        cmd.arg = s->arg;
        cmd.arg2 = s->arg2;
        int64_t delta[NCOUNTERS];
        int have_delta = 0;
        struct region_state *rs = (s->op == OP_SYNC || s->op == OP_FORK || s->op == OP_EXIT ||
                                   s->op == OP_PRCTL || s->op == OP_EXEC || s->op == OP_CGROUP ||
                                   s->op == OP_MPOL)
                                      ? NULL : region_of(s->p, s->r);
        if (rs && s->op != OP_MMAP) {
            cmd.addr = rs->addr + (uintptr_t)s->lo * page_size;
            cmd.npages = (size_t)(s->hi - s->lo + 1);
        }
        if (s->op == OP_FILL)          /* check the node of what it faults in */
            cmd.arg2 = rs->node >= 0 ? rs->node : procs[s->p].policy_node >= 0
                       ? procs[s->p].policy_node : procs[s->p].cpuset_node;
        if (s->op == OP_CGROUP)
            cgroup_prepare(s->idx, s->p, s->arg, s->arg2, s->lo);
        if (s->op == OP_MPOL)
            procs[s->p].policy_node = s->arg;
        switch (s->op) {
        case OP_SYNC:
            if (!wait_go(s->idx)) {
                kill_all();
                exit(5);
            }
            break;
        case OP_EXIT: {
            int64_t c0[NCOUNTERS], pre[NCOUNTERS], post[NCOUNTERS], c3[NCOUNTERS];
            window_lock();
            read_counters(c0, counter_buf(s->p), COUNTER_BUF);
            read_counters(pre, counter_buf(s->p), COUNTER_BUF);
            struct mailbox *mb = &slots[s->p].mb;
            mb->op = OP_EXIT;
            __atomic_add_fetch(&mb->cmd_seq, 1, __ATOMIC_SEQ_CST);
            futex(&mb->cmd_seq, FUTEX_WAKE, INT_MAX, NULL);
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            while (!pid_dead(s->p)) {
                if (procs[s->p].pidfd >= 0) {
                    struct pollfd pfd = {procs[s->p].pidfd, POLLIN, 0};
                    poll(&pfd, 1, 100);
                } else {
                    usleep(200);
                }
                if (elapsed_ms(&t0) > CMD_TIMEOUT_MS)
                    die_runtime(s->idx, "process %d did not exit", s->p);
            }
            read_counters(post, counter_buf(s->p), COUNTER_BUF);
            read_counters(c3, counter_buf(s->p), COUNTER_BUF);
            window_delta(c0, pre, post, c3, delta);
            window_unlock();
            if (delta[C_PGREUSE] != INT64_MIN)
                delta[C_PGREUSE] = 0; /* an exit does not write-fault */
            have_delta = 1;
            procs[s->p].alive = 0;
            close(procs[s->p].pagemap_fd);
            if (procs[s->p].pidfd >= 0)
                close(procs[s->p].pidfd);
            procs[s->p].pidfd = procs[s->p].pagemap_fd = -1;
            break;
        }
        case OP_EXEC: {
            /* the window is the supervisor's: the process leaves its loop for execve() */
            int64_t c0[NCOUNTERS], pre[NCOUNTERS], post[NCOUNTERS], c3[NCOUNTERS];
            window_lock();
            read_counters(c0, counter_buf(s->p), COUNTER_BUF);
            read_counters(pre, counter_buf(s->p), COUNTER_BUF);
            command(s->idx, s->p, &cmd);
            read_counters(post, counter_buf(s->p), COUNTER_BUF);
            read_counters(c3, counter_buf(s->p), COUNTER_BUF);
            window_delta(c0, pre, post, c3, delta);
            window_unlock();
            if (delta[C_PGREUSE] != INT64_MIN)
                delta[C_PGREUSE] = 0; /* the new image's own faults, no scenario page's */
            have_delta = 1;
            forget_regions(s->p);
            /* same pid and pidfd; /proc/PID/pagemap is bound to the old mm */
            close(procs[s->p].pagemap_fd);
            if (procs[s->p].pidfd >= 0)
                close(procs[s->p].pidfd);
            open_proc_files(s->idx, s->p, procs[s->p].pid);
            break;
        }
        default: {
            if (s->op == OP_FORK)
                cmd.child = s->arg;
            if (s->op == OP_PRCTL) {
                for (int r = 0; r < nregions; r++) {
                    struct region_state *x = procs[s->p].reg[r];
                    if (x && x->exists) {
                        cmd.excl_addr[cmd.nexcl] = x->addr;
                        cmd.excl_len[cmd.nexcl] = (size_t)x->npages * page_size;
                        cmd.nexcl++;
                    }
                }
            }
            if (s->op == OP_MMAP)
                cmd.npages = (size_t)s->arg;
            struct mailbox *mb = &slots[s->p].mb;
            if (s->op == OP_MUNMAP) {
                /* munmap acts on the still-mapped pages of LO..HI only, one command per
                 * run of them (summed windows); pages already unmapped are holes this
                 * process keeps reserved, and are left alone (the model's rule too) */
                for (int i = 0; i < NCOUNTERS; i++)
                    delta[i] = 0;
                for (int lo = s->lo; lo <= s->hi; lo++) {
                    if (!rs->mapped[lo])
                        continue;
                    int hi = lo;
                    while (hi < s->hi && rs->mapped[hi + 1])
                        hi++;
                    cmd.addr = rs->addr + (uintptr_t)lo * page_size;
                    cmd.npages = (size_t)(hi - lo + 1);
                    command(s->idx, s->p, &cmd);
                    for (int i = 0; i < NCOUNTERS; i++)
                        delta[i] = (delta[i] == INT64_MIN || mb->delta[i] == INT64_MIN)
                                       ? INT64_MIN : delta[i] + mb->delta[i];
                    lo = hi;
                }
            } else {
                command(s->idx, s->p, &cmd);
                for (int i = 0; i < NCOUNTERS; i++)
                    delta[i] = mb->delta[i];
            }
            have_delta = 1;
            if (s->op == OP_MMAP) {
                /* (a region mmapped again was wholly unmapped: its pages' going was in
                 * the munmap's record) */
                region_tables(rs, s->arg);
                rs->exists = 1;
                rs->node = s->arg2;
                rs->addr = mb->ret_addr;
                memset(rs->mapped, 1, (size_t)s->arg);
                for (int i = 0; i < s->arg; i++)
                    rs->last_pfn[i] = NO_PFN;
            } else if (s->op == OP_MUNMAP) {
                for (int i = s->lo; i <= s->hi; i++) {
                    rs->mapped[i] = 0;
                    rs->noaccess[i] = 0;
                    rs->last_pfn[i] = NO_PFN;
                }
            } else if (s->op == OP_MPROT) {
                for (int i = s->lo; i <= s->hi; i++)
                    rs->noaccess[i] = s->arg == 'n';
            } else if (s->op == OP_FORK) {
                int c = s->arg;
                wait_ready(s->idx, c);
                procs[c].spawned = procs[c].alive = 1;
                /* copy_process(): the task policy and the cgroup go to the child */
                procs[c].policy_node = procs[s->p].policy_node;
                procs[c].cpuset_node = procs[s->p].cpuset_node;
                for (int r = 0; r < MAX_REGIONS; r++)
                    if (procs[s->p].reg[r] && procs[s->p].reg[r]->exists)
                        region_copy(region_of(c, r), procs[s->p].reg[r]);
                open_proc_files(s->idx, c, mb->ret_pid);
            }
            break;
        }
        }
        if (have_delta)
            for (int i = 0; i < NCOUNTERS; i++)
                group_delta[i] = (group_delta[i] == INT64_MIN || delta[i] == INT64_MIN)
                                     ? INT64_MIN : group_delta[i] + delta[i];
        if (k + 1 < nstmts && stmts[k + 1].idx == s->idx)
            continue;
        observe(s->idx, &stmts[group_start], k - group_start + 1,
                have_delta ? group_delta : NULL);
        group_start = k + 1;
        for (int i = 0; i < NCOUNTERS; i++)
            group_delta[i] = 0;
    }
    /* kill first: when the runner reads "end", the scenario's processes are gone, so the
     * next full scan of ksmd finds their mms dead */
    kill_all();
    printf("{\"end\":1}\n");
    fflush(stdout);
}

/* --server FD: FD is a stream socket to the runner; the environment carries TOKEN
 * (KSMDIFF_PROBE_TOKEN, 16 hex digits, dropped from the environment at once).
 * Request (REQ_LEN bytes, with exactly three descriptors attached, SCM_RIGHTS: stdin,
 * stdout and stderr of the new probe), then LEN bytes of program:
 *     "P TOKEN LLLLLLLLLL\n"            LEN as 10 decimal digits
 * The server forks a probe for it (no exec: ~10x cheaper than starting the executable) and
 * answers (REPLY_LEN bytes, with the probe's pidfd attached where the kernel has pidfds):
 *     "TOKEN PPPPPPPPPPP\n"             the pid (or -errno), %11d
 * The token is compared before anything else of a message is believed (the length above
 * all): a stream out of step, or bytes of a program read as a header, end the server
 * instead of sizing a read.  Descriptors beyond the three, or a cut control message
 * (MSG_CTRUNC), are closed and end it too.  EOF on the socket ends the server. */
#define TOKEN_LEN 16
#define REQ_LEN (2 + TOKEN_LEN + 1 + 10 + 1)
#define REPLY_LEN (TOKEN_LEN + 1 + 11 + 1)
static char server_token[TOKEN_LEN + 1];

static void close_fds(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* 0: a request (fds and *len set); -1: EOF before a request; -2: malformed (nothing kept). */
static int recv_request(int sock, int fds[3], size_t *len)
{
    char hdr[REQ_LEN];
    size_t n = 0;
    int got_fds = 0, bad = 0;
    while (n < REQ_LEN) {
        struct iovec iov = {hdr + n, REQ_LEN - n};
        /* room for more than three: extra descriptors arrive (and are closed), not cut */
        union { char buf[CMSG_SPACE(8 * sizeof(int))]; struct cmsghdr align; } u;
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (got_fds)
                close_fds(fds, 3);
            return n == 0 && r == 0 && !bad ? -1 : -2;
        }
        n += (size_t)r;
        if (msg.msg_flags & MSG_CTRUNC)
            bad = 1;              /* descriptors may have been dropped: the request is lost */
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int got[8];
            if (k > 8)
                k = 8;
            memcpy(got, CMSG_DATA(c), (size_t)k * sizeof(int));
            if (k == 3 && !got_fds) {
                memcpy(fds, got, 3 * sizeof(int));
                got_fds = 1;
            } else {
                close_fds(got, k);  /* beyond what a request carries */
                bad = 1;
            }
        }
    }
    /* the token first: until it matches, nothing else of the header is believed */
    int diff = hdr[0] != 'P' || hdr[1] != ' ';
    for (int i = 0; i < TOKEN_LEN; i++)
        diff |= hdr[2 + i] ^ server_token[i];
    diff |= hdr[2 + TOKEN_LEN] != ' ' || hdr[REQ_LEN - 1] != '\n';
    char count[11];
    memcpy(count, hdr + 3 + TOKEN_LEN, 10);
    count[10] = 0;
    long v;
    if (diff || bad || !got_fds || parse_uint(count, 0, MAX_PROGRAM, &v)) {
        if (got_fds)
            close_fds(fds, 3);
        return -2;
    }
    *len = (size_t)v;
    return 0;
}

/* Forked probes are reaped as they exit: never before their pidfd is open (SIGCHLD is
 * blocked from the fork to then), so the pidfd the runner gets names the probe. */
static void reap_children(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static int send_reply(int sock, long pid, int pidfd)
{
    char reply[REPLY_LEN + 1];
    snprintf(reply, sizeof reply, "%s %11ld\n", server_token, pid);
    struct iovec iov = {reply, REPLY_LEN};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (pidfd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pidfd, sizeof(int));
    }
    ssize_t w;
    do
        w = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    return w == REPLY_LEN ? 0 : -1;
}

static int serve(int sock)
{
    const char *tok = getenv("KSMDIFF_PROBE_TOKEN");
    if (!tok || strlen(tok) != TOKEN_LEN || strspn(tok, "0123456789abcdef") != TOKEN_LEN) {
        fprintf(stderr, "ksmdiff-probe server: KSMDIFF_PROBE_TOKEN must be %d hex digits\n",
                TOKEN_LEN);
        return 4;
    }
    memcpy(server_token, tok, TOKEN_LEN + 1);
    unsetenv("KSMDIFF_PROBE_TOKEN");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reap_children;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 5;
    for (;;) {
        int fds[3];
        size_t len;
        int r = recv_request(sock, fds, &len);
        if (r == -1)
            return 0;
        if (r < 0) {
            fprintf(stderr, "ksmdiff-probe server: malformed request\n");
            return 2;
        }
        char *buf = malloc(len + 1);
        if (!buf)
            return 3;
        size_t got = 0;
        while (got < len) {
            ssize_t n = read(sock, buf + got, len - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return 2;
            got += (size_t)n;
        }
        sigprocmask(SIG_BLOCK, &chld, &old);
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGCHLD, SIG_DFL);
            sigprocmask(SIG_SETMASK, &old, NULL);
            for (int i = 0; i < 3; i++)
                if (dup2(fds[i], i) < 0)
                    _exit(3);
            close(sock);
            for (int i = 0; i < 3; i++)
                if (fds[i] > 2)
                    close(fds[i]);
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == 1)
                _exit(5);
            parse_program_buffer(buf, got);
            run_program();
            fflush(stdout);
            _exit(0);
        }
        long answer = pid < 0 ? -errno : (long)pid;
        int pidfd = pid > 0 ? pidfd_open_pid(pid) : -1;   /* not reaped yet: SIGCHLD blocked */
        sigprocmask(SIG_SETMASK, &old, NULL);
        free(buf);
        close_fds(fds, 3);
        /* (no pidfd on a kernel before 5.3: the reply carries none, and the runner says it
         * cannot watch its probes safely there) */
        int w = send_reply(sock, answer, pidfd);
        if (pidfd >= 0)
            close(pidfd);
        if (w)
            return 3;
    }
}

int main(int argc, char **argv)
{
    /* glibc registers rseq, and the kernel writes the rseq area (in a private TLS page) on
     * return to user space: a copy-on-write fault of the probe's own that would show up in
     * pgreuse.  Run without rseq. */
    if (!getenv("KSMDIFF_PROBE_NORSEQ")) {
        setenv("KSMDIFF_PROBE_NORSEQ", "1", 1);
        setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0", 1);
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0 && (size_t)n < sizeof self - 1) {   /* (a full buffer may be cut) */
            self[n] = 0;
            execv(self, argv);
        }
        /* exec failed: carry on with rseq */
    }
    long ps = sysconf(_SC_PAGESIZE);
    if (ps < 4096 || (unsigned long)ps > MAX_PAGE_SIZE || (ps & (ps - 1))) {
        fprintf(stderr, "ksmdiff-probe: page size %ld is not supported (4096..%lu)\n", ps,
                MAX_PAGE_SIZE);
        return 3;
    }
    page_size = (size_t)ps;
    if (argc == 3 && !strcmp(argv[1], "--server")) {
        long fd;
        if (parse_uint(argv[2], 3, 1000, &fd))
            return 4;
        return serve((int)fd);
    }
    if (argc == 9 && !strcmp(argv[1], "--exec-child"))
        return exec_child_main(argv);
    if (argc == 3 && !strcmp(argv[1], "--check")) {
        parse_program(argv[2]);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: ksmdiff-probe [--check] PROGRAM_FILE | --server FD\n");
        return 4;
    }
    parse_program(argv[1]);
    run_program();
    return 0;
}
