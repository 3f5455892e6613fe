/*
 * ksmdiff lab race experiment: a write fault reusing a KSM page (5.4 reuse_ksm_page)
 * while ksmd, on the other CPU, scans an identical page of another process.
 *
 * Runs only inside a lab guest booted with two CPUs on a kernel carrying
 * patches/5.4-race-window.patch (it refuses anything else: it writes KSM's knobs and
 * ksmd's CPU affinity, and restores both before it exits).
 *
 * Each round:
 *   0. process V (forked, pinned to the other CPU) maps a mergeable page v and fills it
 *      with Z, so that v is present and its LRU-add reference drained before step 3;
 *   1. process A maps two private pages a and h, both mergeable, fills both with the
 *      round's pattern X and waits until ksmd has merged them into one KSM page;
 *   2. A unmaps h and waits for two full scans (each starts with lru_add_drain_all(),
 *      which drops the merge's pagevec reference): the KSM page is mapped by A's pte
 *      only, page_count 1, a stable node;
 *   3. A tells process V "go" and at once writes one byte Y into a: do_wp_page ->
 *      reuse_ksm_page(), which waits reuse_window_us between its count check (5.4.59:
 *      page_ref_freeze) and page_move_anon_rmap();
 *      V, on the other CPU, fills its page v with X at once (no fault): ksmd,
 *      pinned to that CPU and scanning without sleeping, looks v up in the stable tree
 *      and meets A's page, in the window or out of it;
 *   4. after two more full scans V checks v: it must still hold X everywhere (nothing
 *      was ever written to v but X).  A byte Y in v is A's write seen by V: a leak.
 *
 * Output, one line per round:
 *   round R reused=0|1 windows=N lookups=N leak=0|1 v0=0xBB
 * (reused: A's page frame is the same after the write; windows/lookups: the deltas of
 * /sys/module/ksm/parameters/reuse_windows and reuse_window_lookups over the round), then
 *   done rounds=R
 * Exit status 0 when every round ran (whatever it saw), 2 on a setup error (message on
 * stderr).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KSM "/sys/kernel/mm/ksm/"
#define PARAM "/sys/module/ksm/parameters/"
#define KPF_KSM 21
#define Y 0xEEu
#define Z 0x01u             /* V's page before "go": no round's pattern */

static long pagesz;
static void restore(void);
static int saved;                /* the knobs are ours: restore them on every exit */

static void die(const char *what)
{
	fprintf(stderr, "race: %s: %s\n", what, strerror(errno));
	if (saved && getpid() == saved)
		restore();
	exit(2);
}

static int read_str(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	ssize_t r;

	if (fd < 0)
		return -1;
	r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -1;
	buf[r] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static unsigned long read_ul(const char *path)
{
	char buf[64];

	if (read_str(path, buf, sizeof buf))
		die(path);
	return strtoul(buf, NULL, 10);
}

static void write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		die(path);
	close(fd);
}

static uint64_t pfn_of(void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0 || pread(fd, &e, 8, (uintptr_t)addr / pagesz * 8) != 8)
		die("/proc/self/pagemap");
	close(fd);
	return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}

static int is_ksm(uint64_t pfn)
{
	uint64_t f = 0;
	int fd = open("/proc/kpageflags", O_RDONLY);

	if (fd < 0 || pread(fd, &f, 8, pfn * 8) != 8)
		die("/proc/kpageflags");
	close(fd);
	return (f >> KPF_KSM) & 1;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void pin(pid_t pid, int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(pid, sizeof s, &s))
		die("sched_setaffinity");
}

static pid_t find_ksmd(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[300], comm[32];
	pid_t found = 0;

	if (!d)
		die("/proc");
	while ((e = readdir(d)) && !found) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
		if (!read_str(path, comm, sizeof comm) && !strcmp(comm, "ksmd"))
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* the round's pattern: a byte that no other round uses and that is never Y */
static unsigned char pattern(int r)
{
	unsigned char x = (unsigned char)(0x10 + r % 0xD0);

	return x == Y ? 0x02 : x;
}

static int wait_full_scans(unsigned long n, double timeout)
{
	unsigned long start = read_ul(KSM "full_scans");
	double end = now() + timeout;

	while (read_ul(KSM "full_scans") < start + n)
		if (now() > end)
			return -1;
		else
			usleep(1000);
	return 0;
}

static struct knobs {
	char run[16], sleep[16], scan[16], window[16];
	cpu_set_t ksmd;
	pid_t ksmd_pid;
} k;

static int put_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok ? 0 : -1;
}

static void restore(void)
{
	int bad = 0;

	saved = 0;
	bad |= put_str(PARAM "reuse_window_us", k.window);
	bad |= put_str(KSM "run", k.run);
	bad |= put_str(KSM "sleep_millisecs", k.sleep);
	bad |= put_str(KSM "pages_to_scan", k.scan);
	if (k.ksmd_pid)
		bad |= sched_setaffinity(k.ksmd_pid, sizeof k.ksmd, &k.ksmd);
	if (bad)
		fprintf(stderr, "race: restoring KSM's knobs or ksmd's affinity failed\n");
}

/* V: map v, say ready, on "go" fill v with X, on "check" report v[0] and whether v is X */
static void victim(int r, int go, int back)
{
	unsigned char x = pattern(r), c, res[2];
	unsigned char *v = mmap(NULL, pagesz, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long i;

	if (v == MAP_FAILED || madvise(v, pagesz, MADV_MERGEABLE))
		_exit(3);
	pin(0, 1);
	memset(v, Z, pagesz);     /* faulted now: its LRU-add reference is drained before "go" */
	c = 'r';
	if (write(back, &c, 1) != 1 || read(go, &c, 1) != 1)
		_exit(3);
	memset(v, x, pagesz);     /* a write to a present page: no fault, no new reference */
	if (read(go, &c, 1) != 1)
		_exit(3);
	res[0] = 0;
	for (i = 0; i < pagesz; i++)
		if (v[i] != x)
			res[0] = 1;
	res[1] = v[0];
	if (write(back, res, 2) != 2)
		_exit(3);
	_exit(0);
}

static int round_(int r, double timeout)
{
	unsigned char x = pattern(r), c, res[2];
	unsigned char *a, *h;
	unsigned long w0, l0;
	uint64_t before, after;
	int go[2], back[2], status;
	double end;
	pid_t v;

	if (pipe(go) || pipe(back))
		die("pipe");
	v = fork();
	if (v < 0)
		die("fork");
	if (v == 0) {
		close(go[1]);
		close(back[0]);
		victim(r, go[0], back[1]);
	}
	close(go[0]);
	close(back[1]);
	if (read(back[0], &c, 1) != 1)
		die("victim");
	a = mmap(NULL, 2 * pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		die("mmap");
	h = a + pagesz;
	if (madvise(a, 2 * pagesz, MADV_MERGEABLE))
		die("madvise(MADV_MERGEABLE)");
	if (madvise(a, 2 * pagesz, MADV_DONTFORK))      /* V must not map A's page */
		die("madvise(MADV_DONTFORK)");
	memset(a, x, 2 * pagesz);
	for (end = now() + timeout;; usleep(2000)) {
		before = pfn_of(a);
		if (before && before == pfn_of(h) && is_ksm(before))
			break;
		if (now() > end) {
			errno = ETIMEDOUT;
			die("ksmd did not merge the round's two pages");
		}
	}
	if (munmap(h, pagesz))
		die("munmap");
	/* on SMP the merge's mark_page_accessed() leaves a reference in ksmd's CPU's
	 * activate pagevec (do_wp_page would copy); the lru_add_drain_all() that starts
	 * each full scan drops it */
	if (wait_full_scans(2, timeout)) {
		errno = ETIMEDOUT;
		die("ksmd did not finish two full scans");
	}
	w0 = read_ul(PARAM "reuse_windows");
	l0 = read_ul(PARAM "reuse_window_lookups");
	before = pfn_of(a);
	c = 'g';
	if (write(go[1], &c, 1) != 1)
		die("victim");
	a[0] = Y;                        /* the write fault */
	after = pfn_of(a);
	if (wait_full_scans(2, timeout)) {
		errno = ETIMEDOUT;
		die("ksmd did not finish two full scans");
	}
	c = 'c';
	if (write(go[1], &c, 1) != 1 || read(back[0], res, 2) != 2)
		die("victim");
	if (waitpid(v, &status, 0) != v)
		die("waitpid");
	printf("round %d reused=%d windows=%lu lookups=%lu leak=%d v0=0x%02x\n", r,
	       before == after, read_ul(PARAM "reuse_windows") - w0,
	       read_ul(PARAM "reuse_window_lookups") - l0, res[0] && res[1] == Y, res[1]);
	fflush(stdout);
	close(go[1]);
	close(back[0]);
	munmap(a, pagesz);
	return 0;
}

int main(int argc, char **argv)
{
	char buf[32];
	int rounds, r;
	long window_us;
	double timeout;

	if (argc != 4) {
		fprintf(stderr, "usage: race ROUNDS WINDOW_US TIMEOUT_S\n");
		return 2;
	}
	rounds = atoi(argv[1]);
	window_us = atol(argv[2]);
	timeout = atof(argv[3]);
	pagesz = sysconf(_SC_PAGESIZE);
	if (read_str(PARAM "reuse_window_us", k.window, sizeof k.window)) {
		fprintf(stderr, "race: %s: not a kernel with patches/5.4-race-window.patch\n",
			PARAM "reuse_window_us");
		return 2;
	}
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		fprintf(stderr, "race: one CPU online: nothing could run inside the window\n");
		return 2;
	}
	if (read_str(KSM "run", k.run, sizeof k.run) ||
	    read_str(KSM "sleep_millisecs", k.sleep, sizeof k.sleep) ||
	    read_str(KSM "pages_to_scan", k.scan, sizeof k.scan))
		die(KSM);
	if (!strcmp(k.run, "2")) {
		fprintf(stderr, "race: KSM run is 2 (unmerging): refusing\n");
		return 2;
	}
	k.ksmd_pid = find_ksmd();
	if (!k.ksmd_pid || sched_getaffinity(k.ksmd_pid, sizeof k.ksmd, &k.ksmd))
		die("ksmd");
	saved = getpid();
	pin(k.ksmd_pid, 1);
	pin(0, 0);
	write_str(KSM "sleep_millisecs", "0");
	write_str(KSM "pages_to_scan", "100");
	snprintf(buf, sizeof buf, "%ld", window_us);
	write_str(PARAM "reuse_window_us", buf);
	write_str(KSM "run", "1");
	for (r = 0; r < rounds; r++)
		round_(r, timeout);
	restore();
	printf("done rounds=%d\n", rounds);
	return 0;
}
