/* O_DIRECT completions reach the program in each of the ways a program can
 * collect them, without the program calling in to help: read from the
 * completion ring in user space (as fio's userspace_reap, SPDK and Seastar
 * do), announced on the program's own eventfd (IOCB_FLAG_RESFD, as QEMU
 * does), while another thread of the process waits in io_getevents on a
 * context of its own, and after a signal handler jumped out of a wait.
 *
 *   lane_reaping ring      32 direct reads (one per io_submit, then a batch),
 *                          collected only from the ring
 *   lane_reaping resfd     the same, each with RESFD: the eventfd is polled,
 *                          then io_getevents(min_nr = 0) collects them
 *   lane_reaping watched   a second thread keeps waiting in io_getevents for
 *                          direct reads of its own context while the main
 *                          thread collects its context's events from the ring
 *   lane_reaping longjmp   a SIGALRM handler siglongjmps out of an untimed
 *                          io_getevents that waits for more events than are
 *                          in flight; every event still arrives (in the ring,
 *                          or in the array the interrupted call was filling),
 *                          and later reads too, collected from the ring;
 *                          once the context is destroyed, no kernel AIO ring
 *                          is left in the process within 5 s
 *
 * Each collection gives up after 10 s, and prints what it got: the output is
 * the same on the kernel and on uaio when every event arrives.
 *
 * Build: gcc -O2 -pthread -o lane_reaping lane_reaping.c -laio
 */
#include "conform_common.h"

#include <libaio.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/time.h>

#define BS 4096
#define NREQ 32
#define FILE_BLOCKS 1024
#define DEADLINE_MS 10000.0

/* The kernel's ring header (the context handle is its address). */
struct ring {
	unsigned id, nr, head, tail, magic, compat, incompat, header_length;
	struct io_event events[];
};

static int fd;

/* A file of FILE_BLOCKS blocks, block i filled with seed i. */
static void make_file(void)
{
	fd = tmpfile_open("lane", O_RDWR | O_TRUNC | O_DIRECT);
	char *b;
	if (posix_memalign((void **)&b, BS, BS) != 0)
		exit(2);
	for (int i = 0; i < FILE_BLOCKS; i++) {
		fill(b, BS, (unsigned)i);
		if (pwrite(fd, b, BS, (off_t)i * BS) != BS) {
			perror("pwrite");
			exit(2);
		}
	}
	fsync(fd);
	free(b);
}

struct reads {
	struct iocb cb[NREQ];
	char *buf;
};

/* Submits NREQ direct reads of blocks first, first + 7, ...: the first
 * half one per io_submit, the rest in one call. */
static void submit_reads(io_context_t ctx, struct reads *r, int first, int resfd)
{
	if (!r->buf && posix_memalign((void **)&r->buf, BS, (size_t)NREQ * BS) != 0)
		exit(2);
	memset(r->buf, 0, (size_t)NREQ * BS);
	struct iocb *ptrs[NREQ];
	for (int i = 0; i < NREQ; i++) {
		int blk = (first + 7 * i) % FILE_BLOCKS;
		io_prep_pread(&r->cb[i], fd, r->buf + (size_t)i * BS, BS, (long long)blk * BS);
		r->cb[i].data = (void *)(long)(i + 1);
		if (resfd >= 0)
			io_set_eventfd(&r->cb[i], resfd);
		ptrs[i] = &r->cb[i];
	}
	for (int i = 0; i < NREQ / 2; i++) {
		int n = io_submit(ctx, 1, &ptrs[i]);
		if (n != 1) {
			printf("io_submit %d: %s\n", i, negret(n));
			exit(1);
		}
	}
	int n = io_submit(ctx, NREQ / 2, &ptrs[NREQ / 2]);
	if (n != NREQ / 2) {
		printf("io_submit batch: %s\n", negret(n));
		exit(1);
	}
}

/* Checks the events: each request once, 4096 bytes, the right data. */
static void report(const char *tag, struct reads *r, int first, struct io_event *ev, int n)
{
	int seen[NREQ] = { 0 }, bad = 0;
	for (int k = 0; k < n; k++) {
		long i = (long)ev[k].data - 1;
		if (i < 0 || i >= NREQ || seen[i]++ || ev[k].res != BS || ev[k].obj != &r->cb[i]) {
			bad++;
			continue;
		}
	}
	char *want = malloc(BS);
	int wrong = 0;
	for (int i = 0; i < NREQ; i++) {
		fill(want, BS, (unsigned)((first + 7 * i) % FILE_BLOCKS));
		if (seen[i] && memcmp(want, r->buf + (size_t)i * BS, BS) != 0)
			wrong++;
	}
	free(want);
	printf("%s: %d of %d events, %d malformed, %d with wrong data\n", tag, n, NREQ, bad, wrong);
}

/* Collects up to `want` events from the ring in user space, waiting at
 * most DEADLINE_MS in all. */
static int reap_ring(io_context_t ctx, struct io_event *out, int want)
{
	struct ring *rg = (struct ring *)ctx;
	int got = 0;
	double end = now_ms() + DEADLINE_MS;
	while (got < want && now_ms() < end) {
		unsigned head = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
		unsigned tail = __atomic_load_n(&rg->tail, __ATOMIC_ACQUIRE);
		if (head == tail) {
			sched_yield();
			continue;
		}
		out[got++] = rg->events[head];
		__atomic_store_n(&rg->head, (head + 1) % rg->nr, __ATOMIC_RELEASE);
	}
	return got;
}

static int mode_ring(void)
{
	io_context_t ctx = 0;
	if (io_setup(128, &ctx) != 0)
		return 2;
	struct reads r = { 0 };
	struct io_event ev[NREQ];
	for (int round = 0; round < 3; round++) {
		submit_reads(ctx, &r, 100 * round, -1);
		int n = reap_ring(ctx, ev, NREQ);
		char tag[32];
		snprintf(tag, sizeof tag, "ring, round %d", round);
		report(tag, &r, 100 * round, ev, n);
	}
	io_destroy(ctx);
	return 0;
}

static int mode_resfd(void)
{
	io_context_t ctx = 0;
	if (io_setup(128, &ctx) != 0)
		return 2;
	int efd = eventfd(0, EFD_NONBLOCK);
	struct reads r = { 0 };
	struct io_event ev[NREQ];
	for (int round = 0; round < 3; round++) {
		submit_reads(ctx, &r, 100 * round, efd);
		uint64_t counted = 0;
		int got = 0;
		double end = now_ms() + DEADLINE_MS;
		/* Until every event is taken and every signal counted (a signal
		 * may come a moment after its event is in the ring). */
		while ((got < NREQ || counted < NREQ) && now_ms() < end) {
			struct pollfd p = { .fd = efd, .events = POLLIN };
			if (poll(&p, 1, (int)(end - now_ms()) + 1) <= 0)
				continue;
			uint64_t v;
			if (read(efd, &v, 8) == 8)
				counted += v;
			struct timespec zero = { 0, 0 };
			int n = io_getevents(ctx, 0, NREQ - got, ev + got, &zero);
			if (n > 0)
				got += n;
		}
		char tag[48];
		snprintf(tag, sizeof tag, "resfd, round %d (eventfd counted %llu)", round, (unsigned long long)counted);
		report(tag, &r, 100 * round, ev, got);
	}
	close(efd);
	io_destroy(ctx);
	return 0;
}

static atomic_int stop_waiter;
static atomic_long waiter_reads;

/* Keeps one direct read of its own context in flight and waits for it. */
static void *waiter(void *arg)
{
	(void)arg;
	io_context_t ctx = 0;
	if (io_setup(8, &ctx) != 0)
		return NULL;
	char *b;
	if (posix_memalign((void **)&b, BS, BS) != 0)
		return NULL;
	struct iocb cb, *p = &cb;
	struct io_event ev;
	for (long i = 0; !atomic_load(&stop_waiter); i++) {
		io_prep_pread(&cb, fd, b, BS, (i * 13 % FILE_BLOCKS) * BS);
		if (io_submit(ctx, 1, &p) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != BS)
			break;
		atomic_fetch_add(&waiter_reads, 1);
	}
	free(b);
	io_destroy(ctx);
	return NULL;
}

static int mode_watched(void)
{
	pthread_t t;
	pthread_create(&t, NULL, waiter, NULL);
	while (atomic_load(&waiter_reads) == 0)
		sched_yield();
	io_context_t ctx = 0;
	if (io_setup(128, &ctx) != 0)
		return 2;
	struct reads r = { 0 };
	struct io_event ev[NREQ];
	for (int round = 0; round < 20; round++) {
		submit_reads(ctx, &r, 30 * round, -1);
		int n = reap_ring(ctx, ev, NREQ);
		char tag[48];
		snprintf(tag, sizeof tag, "ring beside a waiter, round %d", round);
		report(tag, &r, 30 * round, ev, n);
	}
	atomic_store(&stop_waiter, 1);
	pthread_join(t, NULL);
	printf("the waiting thread's reads went on meanwhile: %d\n", atomic_load(&waiter_reads) > 1);
	io_destroy(ctx);
	return 0;
}

/* How many kernel AIO rings the process has mapped. */
static int aio_rings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof line, f))
		if (strstr(line, "[aio]"))
			n++;
	fclose(f);
	return n;
}

static sigjmp_buf jump;

static void on_alarm(int sig)
{
	(void)sig;
	siglongjmp(jump, 1);
}

#define BIG_BS (1024 * 1024)
#define NBIG 16

static int mode_longjmp(void)
{
	/* Large reads, so that some are still in flight when the signal comes. */
	int bigfd = tmpfile_open("big", O_RDWR | O_TRUNC | O_DIRECT);
	char *big;
	if (posix_memalign((void **)&big, BS, (size_t)NBIG * BIG_BS) != 0)
		return 2;
	memset(big, 0x3c, (size_t)NBIG * BIG_BS);
	if (pwrite(bigfd, big, (size_t)NBIG * BIG_BS, 0) != (ssize_t)NBIG * BIG_BS)
		return 2;
	fsync(bigfd);
	io_context_t ctx = 0;
	if (io_setup(128, &ctx) != 0)
		return 2;
	struct iocb cbs[NBIG], *ptrs[NBIG];
	for (int i = 0; i < NBIG; i++) {
		io_prep_pread(&cbs[i], bigfd, big + (size_t)i * BIG_BS, BIG_BS, (long long)i * BIG_BS);
		cbs[i].data = (void *)(long)(i + 1);
		ptrs[i] = &cbs[i];
	}
	struct io_event ev[NBIG + 1];
	for (int i = 0; i <= NBIG; i++)
		ev[i].data = NULL;
	struct sigaction sa = { 0 };
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	int jumped = 0;
	for (int i = 0; i < NBIG; i++)
		if (io_submit(ctx, 1, &ptrs[i]) != 1)
			return 1;
	if (sigsetjmp(jump, 1) == 0) {
		struct itimerval it = { { 0, 0 }, { 0, 1000 } };
		setitimer(ITIMER_REAL, &it, NULL);
		/* More than will ever come: only the signal ends it. */
		io_getevents(ctx, NBIG + 1, NBIG + 1, ev, NULL);
	} else {
		jumped = 1;
	}
	printf("the handler jumped out of io_getevents: %d\n", jumped);
	int in_array = 0;
	for (int i = 0; i <= NBIG; i++)
		if (ev[i].data != NULL)
			in_array++;
	int n = reap_ring(ctx, ev + in_array, NBIG - in_array);
	int ok = 0;
	for (int k = 0; k < in_array + n; k++)
		if (ev[k].res == BIG_BS)
			ok++;
	printf("1 MiB reads: %d of %d events, %d complete\n", in_array + n, NBIG, ok);
	/* Later requests still reach the ring. */
	make_file();
	struct reads r = { 0 };
	struct io_event ev2[NREQ];
	submit_reads(ctx, &r, 5, -1);
	report("ring after the jump", &r, 5, ev2, reap_ring(ctx, ev2, NREQ));
	io_destroy(ctx);
	/* With no context left, nothing of the process's AIO stays: no
	 * kernel AIO ring in its mappings within 5 s. */
	int rings = -1;
	for (double t0 = now_ms(); now_ms() - t0 < 5000.0; usleep(20000))
		if ((rings = aio_rings()) == 0)
			break;
	printf("kernel AIO rings left within 5 s of the last io_destroy: %d\n", rings);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2)
		return 2;
	make_tmpdir();
	if (strcmp(argv[1], "longjmp") != 0)
		make_file();
	int rc = 2;
	if (strcmp(argv[1], "ring") == 0)
		rc = mode_ring();
	else if (strcmp(argv[1], "resfd") == 0)
		rc = mode_resfd();
	else if (strcmp(argv[1], "watched") == 0)
		rc = mode_watched();
	else if (strcmp(argv[1], "longjmp") == 0)
		rc = mode_longjmp();
	rm_tmpdir();
	return rc;
}
