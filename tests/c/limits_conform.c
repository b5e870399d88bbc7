/* AIO in a process that may start no more threads. Kernel AIO needs none:
 * every request works. Every mode must print the same lines on kernel AIO
 * and on uaio.
 *
 *   limits_conform nothreads  a child makes a context, then lowers
 *                             RLIMIT_NPROC to the threads it has and
 *                             becomes an unprivileged user (root ignores
 *                             the limit), so that no thread can be
 *                             started; then 8 extending O_DIRECT writes of
 *                             64 KiB, an fsync, an fdatasync, an O_DIRECT
 *                             read, and 4 writes through an O_DSYNC
 *                             descriptor: each completes with its byte
 *                             count (or 0) and the file holds the bytes
 *                             (before, on io_uring, whose workers could
 *                             not be started: all -ECANCELED); then 3
 *                             POLLs of an empty pipe, and a byte written:
 *                             none completes before, all with POLLIN
 *                             after (before, on the thread pool, whose
 *                             poller could not be started: -EAGAIN at once)
 *   limits_conform polls      under RLIMIT_NOFILE 64 and 1024, 100 and
 *                             1100 POLLs of one pipe, then a byte written:
 *                             every POLL completes with POLLIN (before, on
 *                             the thread pool, none did, and a thread span:
 *                             its poll(2) had one entry per request, more
 *                             than RLIMIT_NOFILE, and got EINVAL at once)
 *   limits_conform addrspace  io_setup under an RLIMIT_AS of the process's
 *                             size plus 0 or 100 KiB (64 and 20000 events),
 *                             1 MiB (64) or 8 MiB (20000): ENOMEM where the context does
 *                             not fit, 0 where it does (before, EAGAIN
 *                             from uaio, and EAGAIN up to 2 MiB more than
 *                             the kernel needs: its threads' stacks). The
 *                             case that cannot agree (64 events with 100
 *                             KiB: uaio's threads need more) is not run.
 *
 * Build: gcc -O2 -Wall -pthread -o limits_conform limits_conform.c -laio */
#include "conform_common.h"

#include <dirent.h>
#include <libaio.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BLK 65536
#define NW 8

static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void *idle(void *a)
{
	return a;
}

/* Submits `cb` alone and waits for its event; prints both. */
static long one(io_context_t ctx, struct iocb *cb, const char *what)
{
	struct iocb *p = cb;
	long r = io_submit(ctx, 1, &p);
	struct io_event e = { 0 };
	struct timespec t = { 30, 0 };
	long g = r == 1 ? io_getevents(ctx, 1, 1, &e, &t) : 0;
	printf("%s: submit %s, event %s, res %s\n", what, negret(r), negret(g), negret((long)e.res));
	return (long)e.res;
}

static int nothreads(void)
{
	int fd = tmpfile_open("nothreads.dat", O_RDWR | O_TRUNC);
	int dsync = tmpfile_open("nothreads-dsync.dat", O_RDWR | O_TRUNC);
	close(fd);
	close(dsync);
	/* The unprivileged user must be able to use them. */
	if (chmod(tmpdir, 0777) || chmod(tmpfiles[0], 0666) || chmod(tmpfiles[1], 0666))
		return 2;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int d = open(tmpfiles[0], O_RDWR | O_DIRECT);
		int s = open(tmpfiles[1], O_RDWR | O_DSYNC);
		if (d < 0) {
			printf("O_DIRECT refused here (%s): the direct requests are not tried\n", ename(errno));
			d = open(tmpfiles[0], O_RDWR);
		}
		char *buf;
		if (d < 0 || s < 0 || posix_memalign((void **)&buf, 4096, NW * BLK))
			_exit(2);
		for (int i = 0; i < NW * BLK; i++)
			buf[i] = 'a' + (i / BLK) % 26;
		io_context_t ctx = 0;
		printf("io_setup = %s\n", negret(io_setup(64, &ctx)));
		int n = count_threads();
		struct rlimit rl = { n, n };
		if (setrlimit(RLIMIT_NPROC, &rl) || setgid(65534) || setuid(65534))
			_exit(3);
		pthread_t t;
		int e = pthread_create(&t, NULL, idle, NULL);
		printf("a new thread: %s\n", e ? ename(e) : "started");
		if (!e)
			pthread_join(t, NULL);
		struct iocb cbs[NW], *ps[NW];
		for (int i = 0; i < NW; i++) {
			io_prep_pwrite(&cbs[i], d, buf + i * BLK, BLK, (long long)i * BLK);
			ps[i] = &cbs[i];
		}
		printf("io_submit(%d direct writes) = %s\n", NW, negret(io_submit(ctx, NW, ps)));
		struct io_event ev[NW];
		struct timespec to = { 30, 0 };
		int got = 0, full = 0;
		while (got < NW) {
			int g = io_getevents(ctx, 1, NW, ev, &to);
			if (g <= 0) {
				printf("io_getevents = %s after %d\n", negret(g), got);
				break;
			}
			for (int i = 0; i < g; i++)
				full += ev[i].res == BLK;
			got += g;
		}
		printf("direct writes: %d events, %d whole\n", got, full);
		struct iocb cb;
		io_prep_fsync(&cb, d);
		one(ctx, &cb, "fsync");
		io_prep_fdsync(&cb, d);
		one(ctx, &cb, "fdatasync");
		char *rb;
		if (posix_memalign((void **)&rb, 4096, BLK))
			_exit(2);
		io_prep_pread(&cb, d, rb, BLK, 3 * BLK);
		one(ctx, &cb, "direct read");
		printf("read the 4th block: %d\n", memcmp(rb, buf + 3 * BLK, BLK) == 0);
		for (int i = 0; i < 4; i++) {
			io_prep_pwrite(&cb, s, buf + i * 4096, 4096, (long long)i * 4096);
			one(ctx, &cb, "O_DSYNC write");
		}
		int pp[2];
		if (pipe(pp))
			_exit(2);
		struct iocb pcb[3], *pps[3];
		for (int i = 0; i < 3; i++) {
			io_prep_poll(&pcb[i], pp[0], POLLIN);
			pps[i] = &pcb[i];
		}
		printf("io_submit(3 POLLs of an empty pipe) = %s\n", negret(io_submit(ctx, 3, pps)));
		struct timespec brief = { 0, 100000000 };
		int early = io_getevents(ctx, 0, 3, ev, &brief);
		printf("POLL events before a byte is written: %s\n", negret(early));
		if (write(pp[1], "x", 1) != 1)
			_exit(2);
		int pgot = early > 0 ? early : 0;
		while (pgot < 3) {
			int g = io_getevents(ctx, 1, 3 - pgot, ev + pgot, &to);
			if (g <= 0)
				break;
			pgot += g;
		}
		int pin = 0;
		for (int i = 0; i < pgot; i++)
			pin += ev[i].res == (POLLIN | POLLRDNORM);
		printf("POLL events: %d, with POLLIN|POLLRDNORM: %d\n", pgot, pin);
		printf("io_destroy = %s\n", negret(io_destroy(ctx)));
		char *c = malloc(NW * BLK);
		printf("direct file holds the writes: %d\n",
		       pread(d, rb, BLK, 0) >= 0 && pread(open(tmpfiles[0], O_RDONLY), c, NW * BLK, 0) == NW * BLK &&
			       memcmp(c, buf, NW * BLK) == 0);
		printf("O_DSYNC file holds the writes: %d\n",
		       pread(s, c, 4 * 4096, 0) == 4 * 4096 && memcmp(c, buf, 4 * 4096) == 0);
		fflush(stdout);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("child: %s %d\n", WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	return 0;
}

/* polls: see the top. In a child, which lowers its RLIMIT_NOFILE. */
static void polls_under(int limit, int n)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit r = { (rlim_t)limit, (rlim_t)limit };
		int pp[2];
		io_context_t ctx = 0;
		if (setrlimit(RLIMIT_NOFILE, &r) != 0 || pipe(pp) != 0 || io_setup(n, &ctx) != 0)
			_exit(2);
		struct iocb *cb = calloc(n, sizeof *cb), **p = calloc(n, sizeof *p);
		struct io_event *ev = calloc(n, sizeof *ev);
		if (!cb || !p || !ev)
			_exit(2);
		for (int i = 0; i < n; i++) {
			io_prep_poll(&cb[i], pp[0], POLLIN);
			p[i] = &cb[i];
		}
		int s = io_submit(ctx, n, p);
		struct timespec z = { 0, 100000000 };
		int early = io_getevents(ctx, 0, n, ev, &z);
		if (write(pp[1], "x", 1) != 1)
			_exit(2);
		int got = early > 0 ? early : 0;
		while (got < s) {
			struct timespec ts = { 10, 0 };
			int g = io_getevents(ctx, 1, n - got, ev + got, &ts);
			if (g <= 0)
				break;
			got += g;
		}
		int in = 0;
		for (int i = 0; i < got; i++)
			in += (ev[i].res & POLLIN) != 0;
		printf("RLIMIT_NOFILE %d, %d POLLs of one pipe: submitted %d, before the write %d, events %d, with POLLIN %d\n", limit,
		       n, s, early, got, in);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

static int polls(void)
{
	polls_under(64, 100);
	polls_under(1024, 1100);
	return 0;
}

/* The process's address space in bytes (VmSize). */
static long vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char l[256];
	long kb = -1;
	while (f && fgets(l, sizeof l, f))
		if (!strncmp(l, "VmSize:", 7))
			kb = atol(l + 7);
	if (f)
		fclose(f);
	return kb * 1024;
}

/* addrspace: see the top. Each in a child, which lowers its RLIMIT_AS. */
static void setup_under(long extra_kib, int nr)
{
	pid_t pid = fork();
	if (pid == 0) {
		long size = vm_size();
		struct rlimit r = { (rlim_t)(size + extra_kib * 1024), (rlim_t)(size + extra_kib * 1024) };
		if (size <= 0 || setrlimit(RLIMIT_AS, &r) != 0)
			_exit(2);
		io_context_t ctx = 0;
		int s = io_setup(nr, &ctx);
		int d = s == 0 ? io_destroy(ctx) : 0;
		printf("RLIMIT_AS size + %ld KiB: io_setup(%d) = %d (%s), io_destroy %d\n", extra_kib, nr, s,
		       s < 0 ? strerror(-s) : "ok", d);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		printf("child ended badly: %d\n", st);
}

static int addrspace(void)
{
	setup_under(0, 64);
	setup_under(0, 20000);
	setup_under(100, 20000);
	setup_under(1024, 64);
	setup_under(8192, 20000);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "nothreads";
	printf("mode %s\n", mode);
	if (geteuid() != 0) {
		printf("skipped: needs root (to become another user under RLIMIT_NPROC)\n");
		return 0;
	}
	make_tmpdir();
	atexit(rm_tmpdir);
	if (!strcmp(mode, "nothreads"))
		return nothreads();
	if (!strcmp(mode, "polls"))
		return polls();
	if (!strcmp(mode, "addrspace"))
		return addrspace();
	printf("unknown mode\n");
	return 2;
}
