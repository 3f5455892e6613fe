/* ksmdiff lab driver: the guest side of a lab run, run by the guest's /init.
 *
 * C11 + libc only, linked statically (the guest has no C library).  It does in the guest
 * what the host runner (ksmdiff/probe/runner.py, system.py) does on the host for scenarios
 * that run one at a time: pin the KSM knobs, let ksmd reap between scenarios (a bounded
 * settle), start the probe on each compiled program, and at each ksm statement of the
 * probe run ksmd (settle, scan N, a knob write, run=2) with the KSM counters read before
 * and after and the ksm tracepoints taken meanwhile.  It decodes nothing: every probe line,
 * counter and trace line goes back to the host verbatim (ksmdiff/lab/drive.py reads it
 * with the runner's own decoder and attribution).
 *
 * Usage:  ksmdiff-lab-driver DIR PROBE
 * DIR (the host's share) holds plan.0, plan.1, ...: the host writes plan.N+1 (or "quit")
 * after reading trans.N, which this writes one scenario at a time, then done.N.
 *
 * Plan (line oriented; the host compiled every program):
 *   ksmdiff-lab-plan 1
 *   timeouts SETTLE SCAN_SLEEP_MS SCAN_BASE SCAN_PER DRAIN POLL_MS   (seconds unless _MS)
 *   tracer 0|1
 *   session                         a new run: a new keeper page, the first reap
 *   scenario IDX NLINES PROGLEN     then NLINES lines (below), then PROGLEN program bytes
 *     barrier S settle | barrier S scan N | barrier S set KNOB VALUE | barrier S unmerge
 *     knob S KNOB VALUE             a knob the scenario needs while ksmd runs at S
 *   end
 *
 * Transcript (trans.N), one line each:
 *   H KEY=VALUE ...                 the kernel (release, ksm, tracer, swap, kpf, uffd,
 *                                   knobs: the files of /sys/kernel/mm/ksm, nodes: the
 *                                   NUMA nodes with memory, "none" without CONFIG_NUMA;
 *                                   cgroup: the controllers of the cgroup2 root's
 *                                   subtree_control, comma-separated, "none" unmounted)
 *   S IDX                           a scenario starts
 *   W TEXT                          a reap that did not finish (warning)
 *   P LINE                          a probe line, verbatim
 *   T LINE                          a ksm trace line, verbatim (taken at a ksm statement)
 *   B S SMART before K=V ... after K=V ...   a ksm statement done
 *   E S WHAT ARGS                   a ksm statement failed (the host words it)
 *   X STATUS TEXT                   the probe died (exit status, its stderr)
 *   Q                               the probe was silent for too long
 *   F TEXT                          the pass cannot go on (a knob cannot be pinned)
 *   M REAP RUN                      seconds (CLOCK_MONOTONIC) of the reap before it and of
 *                                   the rest: program written, probe run, ksm statements
 *   Z                               the scenario is over
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KSM "/sys/kernel/mm/ksm/"
#define TRACEFS "/sys/kernel/tracing"
#define LINE_TIMEOUT_MS 90000
#define IDLE_SECONDS 0.025
#define PAUSE_SLEEP_MS "1000"
#define MAX_PLAN (64u << 20)
#define MAX_BARRIERS 1024

static double settle_timeout = 3.0, scan_base = 2.0, scan_per = 0.06, drain_timeout = 2.0;
static long scan_sleep_ms = 20, poll_ms = 1;

/* ------------------------------------------------------------------ output buffer */

static char *out;
static size_t out_len, out_cap;
static int trans_fd = -1;

static void emit(const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(out + out_len, out_cap - out_len, fmt, ap);
        va_end(ap);
        if (n >= 0 && out_len + (size_t)n < out_cap) {
            out_len += (size_t)n;
            return;
        }
        out_cap = out_cap * 2 + (n > 0 ? (size_t)n : 0) + 4096;
        out = realloc(out, out_cap);
        if (!out)
            abort();
    }
}

static void emit_raw(const char *tag, const char *s, size_t n)
{
    emit("%s ", tag);
    if (out_len + n + 2 >= out_cap) {
        out_cap = out_cap * 2 + n + 4096;
        out = realloc(out, out_cap);
        if (!out)
            abort();
    }
    for (size_t i = 0; i < n; i++)
        out[out_len++] = (s[i] == '\n' || s[i] == '\r') ? ' ' : s[i];
    out[out_len++] = '\n';
}

static void flush_out(void)   /* one write per scenario: each is a 9p round trip */
{
    size_t off = 0;
    while (off < out_len) {
        ssize_t w = write(trans_fd, out + off, out_len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            perror("ksmdiff-lab-driver: write transcript");
            exit(1);
        }
        off += (size_t)w;
    }
    out_len = 0;
}

/* ------------------------------------------------------------------ sysfs */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void nap(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) && errno == EINTR)
        ;
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return (int)n;
}

/* a knob's value: "always [madvise] never" -> "madvise" (system._selected) */
static int read_knob(const char *name, char *buf, size_t size)
{
    char path[256], raw[512];
    snprintf(path, sizeof path, KSM "%s", name);
    if (read_file(path, raw, sizeof raw) < 0)
        return -1;
    char *a = strchr(raw, '['), *b = a ? strchr(a, ']') : NULL;
    if (a && b) {
        *b = 0;
        snprintf(buf, size, "%s", a + 1);
    } else {
        snprintf(buf, size, "%s", raw);
    }
    return 0;
}

static int write_knob(const char *name, const char *value)   /* 0 or an errno */
{
    char path[256];
    snprintf(path, sizeof path, KSM "%s", name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = pwrite(fd, value, strlen(value), 0) < 0 ? errno : 0;
    close(fd);
    return err;
}

static long read_int(const char *name)
{
    char path[256], buf[64];
    snprintf(path, sizeof path, KSM "%s", name);
    if (read_file(path, buf, sizeof buf) < 0 || !buf[0])
        return -1;
    char *end;
    long v = strtol(buf, &end, 10);
    return *end ? -1 : v;
}

static int knob_writable(const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, KSM "%s", name);
    return !stat(path, &st) && (st.st_mode & 0200);
}

/* ------------------------------------------------------------------ ksmd (system.py) */

static void stop_ksmd(const char *sleep_after)
{
    write_knob("sleep_millisecs", PAUSE_SLEEP_MS);
    write_knob("run", "0");
    write_knob("sleep_millisecs", sleep_after);
}

static pid_t ksmd_pid;

static char ksmd_state(void)   /* 0: unknown */
{
    char path[64], buf[512];
    if (!ksmd_pid) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
            if (read_file(path, buf, sizeof buf) >= 0 && !strcmp(buf, "ksmd")) {
                ksmd_pid = atoi(e->d_name);
                break;
            }
        }
        if (d)
            closedir(d);
        if (!ksmd_pid)
            return 0;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int)ksmd_pid);
    if (read_file(path, buf, sizeof buf) < 0)
        return 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    while (*p == ' ')
        p++;
    return *p;
}

struct progress {
    long scans, scanned;
    double since;
};

static void progress_init(struct progress *p)
{
    p->scans = read_int("full_scans");
    p->scanned = read_int("pages_scanned");
    p->since = now();
}

static int progress_idle(struct progress *p)
{
    long s = read_int("full_scans"), c = read_int("pages_scanned");
    double t = now();
    if (s != p->scans || c != p->scanned) {
        p->scans = s, p->scanned = c, p->since = t;
        return 0;
    }
    char st = ksmd_state();
    return t - p->since > IDLE_SECONDS && (st == 'S' || st == 0);
}

static const char *const settle_gauges[] = {"pages_shared", "pages_sharing", "pages_unshared",
                                            "ksm_zero_pages", "stable_node_chains",
                                            "stable_node_dups"};
#define NGAUGES (sizeof settle_gauges / sizeof *settle_gauges)

static void gauges(long *g)
{
    for (size_t i = 0; i < NGAUGES; i++)
        g[i] = read_int(settle_gauges[i]);
}

/* system.settle(); *err names a timeout ("settle-min", "settle-within", "settle-changing") */
static long settle(int min_scans, const char **err)
{
    long start = read_int("full_scans");
    double deadline = now() + settle_timeout;
    struct progress prog;
    *err = NULL;
    write_knob("run", "1");
    progress_init(&prog);
    while (read_int("full_scans") < start + min_scans) {
        if (progress_idle(&prog))
            goto out;
        if (now() > deadline) {
            *err = "settle-min";
            goto out;
        }
        nap(poll_ms);
    }
    for (;;) {
        long g1[NGAUGES], g2[NGAUGES];
        gauges(g1);
        long s1 = read_int("full_scans");
        while (read_int("full_scans") < s1 + 2) {
            if (progress_idle(&prog))
                goto out;
            if (now() > deadline) {
                *err = "settle-within";
                goto out;
            }
            nap(poll_ms);
        }
        gauges(g2);
        if (!memcmp(g1, g2, sizeof g1))
            break;
        if (now() > deadline) {
            *err = "settle-changing";
            goto out;
        }
    }
out:
    stop_ksmd("0");
    return read_int("full_scans") - start;
}

/* system.scan_exact() */
static long scan_exact(int n, const char **err)
{
    long start = read_int("full_scans");
    double deadline = now() + scan_base + scan_per * n;
    char ms[32];
    struct progress prog;
    long done = -1;
    *err = NULL;
    snprintf(ms, sizeof ms, "%ld", scan_sleep_ms);
    write_knob("sleep_millisecs", ms);
    write_knob("run", "1");
    progress_init(&prog);
    while (read_int("full_scans") < start + n) {
        if (progress_idle(&prog) && now() - prog.since > scan_sleep_ms / 1000.0 * 2 + 0.01) {
            done = n;     /* nothing to scan: every scan would be empty */
            break;
        }
        if (now() > deadline) {
            *err = "scan-timeout";
            break;
        }
        nap(poll_ms);
    }
    write_knob("run", "0");
    write_knob("sleep_millisecs", "0");
    return done >= 0 ? done : read_int("full_scans") - start;
}

static void drain_stable_nodes(void)
{
    if (read_int("pages_shared") == 0 && read_int("pages_sharing") == 0)
        return;
    char was[64] = "", sl[64] = "0";
    read_knob("run", was, sizeof was);
    double deadline = now() + drain_timeout;
    write_knob("run", "1");
    while (now() < deadline) {
        if (read_int("pages_shared") == 0 && read_int("pages_sharing") == 0)
            break;
        nap(2);
    }
    if (strcmp(was, "1")) {
        read_knob("sleep_millisecs", sl, sizeof sl);
        stop_ksmd(sl);
    }
}

/* system.PINS, in order; 0 or a message */
static const char *const pins[][2] = {
    {"run", "0"}, {"advisor_mode", "none"}, {"sleep_millisecs", "0"},
    {"pages_to_scan", "1000000"}, {"smart_scan", "0"}, {"use_zero_pages", "0"},
    {"max_page_sharing", "256"}, {"merge_across_nodes", "1"},
};

static char pin_error[256];

static const char *pin_knobs(void)
{
    for (size_t i = 0; i < sizeof pins / sizeof *pins; i++) {
        const char *name = pins[i][0], *value = pins[i][1];
        char cur[128];
        if (!knob_writable(name))
            continue;
        if (read_knob(name, cur, sizeof cur) == 0 && !strcmp(cur, value))
            continue;
        int err = write_knob(name, value);
        if (err == EBUSY && (!strcmp(name, "merge_across_nodes") ||
                             !strcmp(name, "max_page_sharing"))) {
            drain_stable_nodes();
            err = write_knob(name, value);
        }
        if (err) {
            snprintf(pin_error, sizeof pin_error, "cannot set /sys/kernel/mm/ksm/%s=%s: %s",
                     name, value, strerror(err));
            return pin_error;
        }
    }
    return NULL;
}

static const char *const vmstat_names[] = {"cow_ksm", "ksm_swpin_copy", "pgreuse"};
static const char *const sysfs_names[] = {"pages_shared", "pages_sharing", "ksm_zero_pages",
                                          "pages_unshared", "pages_volatile", "full_scans",
                                          "pages_skipped"};

/* system.read_counters(), as "NAME=VALUE" pairs */
static void emit_counters(const char *label)
{
    static char buf[1 << 16];
    emit(" %s", label);
    int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = 0;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        char *sp = strchr(line, ' ');
        if (sp) {
            *sp = 0;
            for (size_t i = 0; i < sizeof vmstat_names / sizeof *vmstat_names; i++)
                if (!strcmp(line, vmstat_names[i]))
                    emit(" %s=%s", line, sp + 1);
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    for (size_t i = 0; i < sizeof sysfs_names / sizeof *sysfs_names; i++) {
        long v = read_int(sysfs_names[i]);
        if (v >= 0)
            emit(" %s=%ld", sysfs_names[i], v);
    }
}

/* ------------------------------------------------------------------ tracing (system.Tracer) */

static int trace_fd = -1;
static char trace_reason[256] = "not asked for";

static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = write(fd, s, strlen(s)) < 0 ? -1 : 0;
    close(fd);
    return r;
}

static void tracer_start(void)
{
    struct stat st;
    if (stat(TRACEFS "/instances", &st) &&
        mount("tracefs", TRACEFS, "tracefs", 0, NULL)) {
        snprintf(trace_reason, sizeof trace_reason, "cannot mount tracefs: %s",
                 strerror(errno));
        return;
    }
    if (stat(TRACEFS "/events/ksm/ksm_remove_ksm_page", &st)) {
        snprintf(trace_reason, sizeof trace_reason, "no ksm:ksm_remove_ksm_page tracepoint");
        return;
    }
    const char *inst = TRACEFS "/instances/ksmdiff";
    if (mkdir(inst, 0755) && errno != EEXIST) {
        snprintf(trace_reason, sizeof trace_reason, "tracing unavailable: %s", strerror(errno));
        return;
    }
    if (write_str(TRACEFS "/instances/ksmdiff/events/ksm/ksm_remove_ksm_page/enable", "1")) {
        snprintf(trace_reason, sizeof trace_reason, "tracing unavailable: %s", strerror(errno));
        return;
    }
    write_str(TRACEFS "/instances/ksmdiff/events/ksm/ksm_merge_with_ksm_page/enable", "1");
    write_str(TRACEFS "/instances/ksmdiff/events/ksm/ksm_enter/enable", "1");
    trace_fd = open(TRACEFS "/instances/ksmdiff/trace_pipe", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (trace_fd < 0)
        snprintf(trace_reason, sizeof trace_reason, "tracing unavailable: %s", strerror(errno));
}

/* the events since the last take: T lines (emit 0: dropped) */
static void trace_take(int keep)
{
    static char buf[1 << 16], part[4096];
    static size_t plen;
    if (trace_fd < 0)
        return;
    for (;;) {
        ssize_t n = read(trace_fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                if (keep)
                    emit_raw("T", part, plen);
                plen = 0;
            } else if (plen < sizeof part) {
                part[plen++] = buf[i];
            }
        }
    }
}

/* ------------------------------------------------------------------ the keeper page */

static void *keeper;

static void keeper_new(void)
{
    /* system.Keeper: one mergeable page of unique content, so ksmd's list of mms is never
     * empty; the old one stays mapped, unmergeable (a fresh rmap_item for the new one) */
    long ps = sysconf(_SC_PAGESIZE);
    if (keeper)
        madvise(keeper, ps, MADV_UNMERGEABLE);
    keeper = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (keeper == MAP_FAILED) {
        keeper = NULL;
        return;
    }
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, keeper, ps) != ps) {
        uint64_t x = (uint64_t)now() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        for (long i = 0; i < ps / 8; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ((uint64_t *)keeper)[i] = x;
        }
    }
    if (fd >= 0)
        close(fd);
    madvise(keeper, ps, MADV_MERGEABLE);
}

/* system.kpageflags_ksm_on_plain_anon(): 1, 0, -1 (unreadable) */
static int kpf_ksm_on_plain_anon(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    volatile char *m = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    if (m == MAP_FAILED)
        return -1;
    m[0] = 0x5a;
    uint64_t entry = 0, flags = 0;
    int r = -1;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && pread(fd, &entry, 8, (uintptr_t)m / ps * 8) == 8) {
        uint64_t pfn = entry & ((1ull << 55) - 1);
        int kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
        if ((entry >> 63) && pfn && kf >= 0 && pread(kf, &flags, 8, pfn * 8) == 8)
            r = ((flags >> 12) & 1) && ((flags >> 21) & 1);
        if (kf >= 0)
            close(kf);
    }
    if (fd >= 0)
        close(fd);
    munmap((void *)m, ps);
    return r;
}

/* ------------------------------------------------------------------ one scenario */

enum kind { SETTLE, SCAN, SET, UNMERGE };

struct barrier {
    int stmt, kind, scans;
    char knob[64], value[64];
    int nknobs;
    char knobs[4][2][64];      /* the knobs this statement needs while ksmd runs */
};

static const char *probe_exe;

struct probe {
    pid_t pid;
    int in, outfd, errfd;
    char *buf;
    size_t len, cap;
    int eof;
};

/* the next line of the probe's stdout into *line (NUL-terminated): 1; EOF: 0; silent: -1 */
static int probe_line(struct probe *p, char **line)
{
    static char *cur;
    static size_t cur_cap;
    double deadline = now() + LINE_TIMEOUT_MS / 1000.0;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t n = nl - p->buf;
            if (n + 1 > cur_cap) {
                cur_cap = n + 1;
                cur = realloc(cur, cur_cap);
                if (!cur)
                    abort();
            }
            memcpy(cur, p->buf, n);
            cur[n] = 0;
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            *line = cur;
            return 1;
        }
        if (p->eof)
            return 0;
        if (p->len == p->cap) {     /* a record of many pages: a longer line */
            p->cap *= 2;
            p->buf = realloc(p->buf, p->cap);
            if (!p->buf)
                abort();
        }
        double left = deadline - now();
        if (left <= 0)
            return -1;
        struct pollfd pf = {p->outfd, POLLIN, 0};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = read(p->outfd, p->buf + p->len, p->cap - p->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            p->eof = 1;
        else
            p->len += (size_t)n;
    }
}

static int probe_start(struct probe *p, const char *progfile)
{
    int in[2], o[2], e[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(e[1], 2);
        char *argv[] = {(char *)"ksmdiff-probe", (char *)progfile, NULL};
        /* the host runner's probe environment (procs.PROBE_ENV) */
        char *envp[] = {(char *)"GLIBC_TUNABLES=glibc.pthread.rseq=0",
                        (char *)"KSMDIFF_PROBE_NORSEQ=1",
                        (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
                        (char *)"KSMDIFF_PROBE_LOCK=/tmp/ksmdiff-windows.lock", NULL};
        execve(probe_exe, argv, envp);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    close(e[1]);
    p->pid = pid, p->in = in[1], p->outfd = o[0], p->errfd = e[0];
    p->len = 0, p->eof = 0;
    if (!p->buf) {
        p->cap = 1 << 16;
        p->buf = malloc(p->cap);
        if (!p->buf)
            abort();
    }
    return 0;
}

/* the probe and every scenario process it started gone (they hold its stdout) */
static void probe_end(struct probe *p, int ended)
{
    if (!ended)
        kill(p->pid, SIGKILL);
    close(p->in);
    double deadline = now() + 5.0;
    char buf[4096];
    while (!p->eof && now() < deadline) {
        struct pollfd pf = {p->outfd, POLLIN, 0};
        if (poll(&pf, 1, 100) > 0) {
            ssize_t n = read(p->outfd, buf, sizeof buf);
            if (n <= 0)
                p->eof = 1;
        }
    }
    int st;
    waitpid(p->pid, &st, 0);
    close(p->outfd);
    close(p->errfd);
}

static void probe_died(struct probe *p)
{
    int st = 0;
    char err[2048];
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    p->pid = -1;
    ssize_t n = read(p->errfd, err, sizeof err - 1);
    err[n > 0 ? n : 0] = 0;
    emit("X %d ", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
    emit_raw("", err, strlen(err));
}

static int do_barrier(struct barrier *b)   /* 0: go on; -1: failed (E line) */
{
    for (int i = 0; i < b->nknobs; i++) {
        char cur[64];
        if (read_knob(b->knobs[i][0], cur, sizeof cur) || strcmp(cur, b->knobs[i][1]))
            write_knob(b->knobs[i][0], b->knobs[i][1]);
    }
    trace_take(1);
    char smart[16] = "-";
    if (read_knob("smart_scan", smart, sizeof smart))
        strcpy(smart, "-");
    emit("B %d %s", b->stmt, smart);
    emit_counters("before");
    const char *err = NULL;
    long done = 0;
    int e = 0;
    switch (b->kind) {
    case SETTLE:
        settle(2, &err);
        break;
    case SCAN:
        done = scan_exact(b->scans, &err);
        if (!err && done != b->scans)
            err = "scan-count";
        break;
    case UNMERGE:
        write_knob("run", "2");
        write_knob("run", "0");
        break;
    case SET:
        e = write_knob(b->knob, b->value);
        if (e)
            err = "set";
        break;
    }
    emit_counters("after");
    emit("\n");
    trace_take(1);
    if (err) {
        emit("E %d %s %ld %d\n", b->stmt, err, done, e);
        return -1;
    }
    return 0;
}

static void run_scenario(int idx, struct barrier *bs, int nb, const char *prog, size_t plen,
                         int reap)
{
    emit("S %d\n", idx);
    double t_start = now();
    if (reap) {
        const char *err;
        settle(2, &err);
        if (err)
            emit("W %s\n", err);
    }
    double t_run = now();
    trace_take(0);
    const char *progfile = "/tmp/ksmdiff-program";
    int fd = open(progfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, prog, plen) != (ssize_t)plen) {
        emit("X 127 cannot write the program: %s\nZ\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    static struct probe p;
    if (probe_start(&p, progfile)) {
        emit("X 127 cannot start the probe: %s\nZ\n", strerror(errno));
        return;
    }
    int ended = 0, started = 0;
    for (;;) {
        char *line;
        int r = probe_line(&p, &line);
        if (r == -1) {
            emit("Q\n");
            break;
        }
        if (r <= 0) {
            probe_died(&p);
            break;
        }
        emit_raw("P", line, strlen(line));
        if (!started) {
            started = 1;
            if (!strstr(line, "\"start\""))
                break;
            if (write(p.in, "go\n", 3) != 3) {
                probe_died(&p);
                break;
            }
            continue;
        }
        if (!strncmp(line, "{\"end\"", 6)) {
            ended = 1;
            break;
        }
        if (strstr(line, "\"error\""))
            break;
        if (!strncmp(line, "{\"sync\":", 8)) {
            int s = atoi(line + 8);
            struct barrier *b = NULL;
            for (int i = 0; i < nb; i++)
                if (bs[i].stmt == s)
                    b = &bs[i];
            if (!b) {
                emit("E %d unknown 0 0\n", s);
                break;
            }
            if (do_barrier(b))
                break;
            if (write(p.in, "go\n", 3) != 3) {
                probe_died(&p);
                break;
            }
        }
    }
    if (p.pid > 0)
        probe_end(&p, ended);
    else {
        close(p.in);
        close(p.outfd);
        close(p.errfd);
    }
    emit("M %.6f %.6f\nZ\n", t_run - t_start, now() - t_run);
}

/* ------------------------------------------------------------------ a pass */

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_PLAN)
                break;
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *next_line(char **pos, char *end)
{
    char *s = *pos;
    if (s >= end)
        return NULL;
    char *nl = memchr(s, '\n', end - s);
    if (!nl)
        nl = end;
    *nl = 0;
    *pos = nl + 1;
    return s;
}

static int session_started;

static int run_pass(const char *dir, int n)
{
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/plan.%d", dir, n);
    char *plan = slurp(path, &len), *pos = plan, *end = plan + len, *line;
    if (!plan)
        return -1;
    snprintf(path, sizeof path, "%s/trans.%d", dir, n);
    trans_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (trans_fd < 0)
        return -1;
    struct utsname u;
    uname(&u);
    struct stat st;
    char swaps[4096] = "";
    read_file("/proc/swaps", swaps, sizeof swaps);
    int first = 1;
    static struct barrier bs[MAX_BARRIERS];
    while ((line = next_line(&pos, end))) {
        char w[64];
        int idx, nl;
        size_t plen;
        if (sscanf(line, "timeouts %lf %ld %lf %lf %lf %ld", &settle_timeout, &scan_sleep_ms,
                   &scan_base, &scan_per, &drain_timeout, &poll_ms) == 6)
            continue;
        if (sscanf(line, "tracer %d", &idx) == 1) {
            if (idx && trace_fd < 0 && n == 0)
                tracer_start();
            continue;
        }
        if (!strcmp(line, "session")) {
            if (session_started) {      /* the end of a run: ksmd stopped, stable nodes dropped */
                write_knob("run", "0");
                drain_stable_nodes();
            }
            const char *err = pin_knobs();
            if (err) {
                emit("F %s\n", err);
                break;
            }
            keeper_new();
            const char *serr;
            settle(2, &serr);       /* the first reap */
            char knobs[2048] = "";
            DIR *kd = opendir(KSM);
            struct dirent *ke;
            while (kd && (ke = readdir(kd)))
                if (ke->d_name[0] != '.' && strlen(knobs) + strlen(ke->d_name) + 2 < sizeof knobs) {
                    if (knobs[0])
                        strcat(knobs, ",");
                    strcat(knobs, ke->d_name);
                }
            if (kd)
                closedir(kd);
            char nodes[256];
            if (read_file("/sys/devices/system/node/has_memory", nodes, sizeof nodes) < 0)
                strcpy(nodes, "none");
            nodes[strcspn(nodes, " \n")] = 0;
            /* the init mounts cgroup2 here (the first cgroup2 mount: the probe's groups) */
            char cgroup[256];
            if (stat("/sys/fs/cgroup/cgroup.controllers", &st) ||
                read_file("/sys/fs/cgroup/cgroup.subtree_control", cgroup, sizeof cgroup) < 0)
                strcpy(cgroup, "none");
            for (char *c = cgroup; *c; c++)
                if (*c == ' ' || *c == '\n')
                    *c = ',';
            emit("H release=%s ksm=%d tracer=%d swap=%d kpf=%d uffd=%d knobs=%s nodes=%s "
                 "cgroup=%s tracer_reason=%s\n", u.release, !stat(KSM "run", &st),
                 trace_fd >= 0, strchr(swaps, '\n') != NULL, kpf_ksm_on_plain_anon(),
                 !stat("/proc/sys/vm/unprivileged_userfaultfd", &st), knobs, nodes, cgroup,
                 trace_reason);
            if (serr)
                emit("W reap %s\n", serr);
            session_started = 1;
            first = 1;
            flush_out();
            continue;
        }
        if (sscanf(line, "scenario %d %d %zu", &idx, &nl, &plen) == 3) {
            int nb = 0;
            for (int i = 0; i < nl; i++) {
                char *l = next_line(&pos, end);
                if (!l)
                    break;
                struct barrier *b = &bs[nb];
                int s, k;
                memset(b, 0, sizeof *b);
                if (sscanf(l, "barrier %d %63s", &s, w) == 2 && nb < MAX_BARRIERS) {
                    b->stmt = s;
                    if (!strcmp(w, "settle"))
                        b->kind = SETTLE;
                    else if (!strcmp(w, "unmerge"))
                        b->kind = UNMERGE;
                    else if (sscanf(l, "barrier %*d scan %d", &k) == 1)
                        b->kind = SCAN, b->scans = k;
                    else if (sscanf(l, "barrier %*d set %63s %63s", b->knob, b->value) == 2)
                        b->kind = SET;
                    nb++;
                } else if (sscanf(l, "knob %d", &s) == 1) {
                    for (int j = 0; j < nb; j++)
                        if (bs[j].stmt == s && bs[j].nknobs < 4 &&
                            sscanf(l, "knob %*d %63s %63s", bs[j].knobs[bs[j].nknobs][0],
                                   bs[j].knobs[bs[j].nknobs][1]) == 2)
                            bs[j].nknobs++;
                }
            }
            if ((size_t)(end - pos) < plen)
                break;
            const char *err = pin_knobs();
            if (err) {
                emit("F %s\n", err);
                break;
            }
            run_scenario(idx, bs, nb, pos, plen, !first);
            first = 0;
            pos += plen;
            flush_out();
            continue;
        }
    }
    flush_out();
    close(trans_fd);
    free(plan);
    snprintf(path, sizeof path, "%s/done.%d", dir, n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ksmdiff-lab-driver DIR PROBE\n");
        return 4;
    }
    probe_exe = argv[2];
    signal(SIGPIPE, SIG_IGN);
    char path[4096];
    for (int n = 0;; n++) {
        snprintf(path, sizeof path, "%s/plan.%d", argv[1], n);
        for (;;) {       /* the host writes plan.N (renamed into place) or quit */
            if (!access(path, F_OK))
                break;
            char q[4096];
            snprintf(q, sizeof q, "%s/quit", argv[1]);
            if (!access(q, F_OK)) {
                write_knob("run", "0");
                return 0;
            }
            nap(20);
        }
        if (run_pass(argv[1], n)) {
            fprintf(stderr, "ksmdiff-lab-driver: cannot read %s\n", path);
            return 1;
        }
    }
}
