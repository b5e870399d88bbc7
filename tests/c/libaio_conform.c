/* libaio conformance program: a fixed sequence of libaio calls, one printed
 * line per observation. Run it on kernel AIO (the system libaio) and on uaio
 * (`uaio run -- ...`); the two outputs must be identical.
 *
 * Events print `obj` as an index into this program's iocb array, never an
 * address. Requests whose completion order is not defined are sorted by
 * that index before printing. Every libaio call also prints whether it left
 * errno alone (libaio returns negative errno values and restores errno).
 *
 * Build: gcc -O2 -Wall -pthread -o libaio_conform libaio_conform.c -laio */
#include "conform_common.h"

#include <libaio.h>
/* libaio.h leaves io_queue_wait commented out; libaio.so.1 exports it. */
extern int io_queue_wait(io_context_t ctx, struct timespec *timeout);
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define NCB 256
static struct iocb cb[NCB];
static struct iocb *cbp[NCB];
static struct io_event ev[NCB];

struct aio_ring {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
	struct io_event io_events[];
};

/* A libaio call: prints its result and whether errno changed. */
#define L(desc, expr)                                                                          \
	({                                                                                     \
		errno = 12345;                                                                 \
		long _r = (long)(expr);                                                        \
		int _e = errno;                                                                \
		printf("%s = %s errno:%s%s\n", (desc), negret(_r), _e == 12345 ? "kept" : "CHANGED->", _e == 12345 ? "" : ename(_e));\
		_r;                                                                            \
	})

static int idx(const struct iocb *o)
{
	if (o >= cb && o < cb + NCB)
		return (int)(o - cb);
	return -1;
}

static void cb_callback_a(io_context_t c, struct iocb *i, long res, long res2);
static void cb_callback_b(io_context_t c, struct iocb *i, long res, long res2);

static const char *data_name(void *d)
{
	static char b[32];
	if (d == (void *)cb_callback_a)
		return "cbA";
	if (d == (void *)cb_callback_b)
		return "cbB";
	snprintf(b, sizeof b, "%lu", (unsigned long)(uintptr_t)d);
	return b;
}

static int cmp_ev(const void *a, const void *b)
{
	const struct io_event *x = a, *y = b;
	return idx(x->obj) - idx(y->obj);
}

static void print_events(const char *tag, struct io_event *e, int n)
{
	qsort(e, n, sizeof *e, cmp_ev);
	for (int i = 0; i < n; i++)
		printf("  %s: obj=#%d data=%s res=%s res2=%ld\n", tag, idx(e[i].obj), data_name(e[i].data),
		       negret((long)e[i].res), (long)e[i].res2);
}

/* Wait (5 s at most) for exactly n events, print them sorted by index. */
static int reap(io_context_t ctx, int n, const char *tag)
{
	int got = 0;
	while (got < n) {
		struct timespec ts = { 5, 0 };
		int r = io_getevents(ctx, n - got, n - got, ev + got, &ts);
		if (r <= 0) {
			printf("  %s: io_getevents while reaping = %s after %d of %d\n", tag, negret(r), got, n);
			break;
		}
		got += r;
	}
	printf("  %s: reaped %d of %d\n", tag, got, n);
	print_events(tag, ev, got);
	return got;
}

/* No event may be left over: a zero-timeout poll of the context. */
static void expect_empty(io_context_t ctx, const char *tag)
{
	struct timespec z = { 0, 0 };
	int r = io_getevents(ctx, 0, NCB, ev, &z);
	printf("  %s: leftover events = %s\n", tag, negret(r));
	if (r > 0)
		print_events(tag, ev, r);
}

static void prep_data(int i)
{
	cb[i].data = (void *)(uintptr_t)(1000 + i);
	cbp[i] = &cb[i];
}

static unsigned ring_avail(struct aio_ring *r)
{
	unsigned head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
	unsigned tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	return (tail + r->nr - head) % r->nr;
}

/* Wait (5 s at most) until the ring holds at least n events. */
static unsigned ring_wait(io_context_t ctx, unsigned n)
{
	struct aio_ring *r = (struct aio_ring *)ctx;
	double t0 = now_ms();
	unsigned a;
	while ((a = ring_avail(r)) < n && now_ms() - t0 < 5000)
		usleep(100);
	return a;
}

/* fio's userspace_reap: copy the events out of the ring and store head. */
static int ring_reap(io_context_t ctx, struct io_event *out, int max)
{
	struct aio_ring *r = (struct aio_ring *)ctx;
	unsigned head = r->head, tail;
	int n = 0;
	while (n < max) {
		tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
		if (head == tail)
			break;
		out[n++] = r->io_events[head];
		head = (head + 1) % r->nr;
	}
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	return n;
}

static void print_ring(const char *tag, io_context_t ctx)
{
	struct aio_ring *r = (struct aio_ring *)ctx;
	printf("  %s: magic_ok=%d nr=%u head=%u tail=%u compat=%u incompat=%u header_length=%u\n", tag,
	       r->magic == 0xa10a10a1, r->nr, r->head, r->tail, r->compat_features, r->incompat_features,
	       r->header_length);
}

static volatile sig_atomic_t usr1_count;
static void on_usr1(int s)
{
	(void)s;
	usr1_count++;
}

static int cb_order[16], cb_res[16], cb_which[16], ncb_calls;
static void cb_callback_a(io_context_t c, struct iocb *i, long res, long res2)
{
	(void)c;
	(void)res2;
	if (ncb_calls < 16) {
		cb_order[ncb_calls] = idx(i);
		cb_res[ncb_calls] = (int)res;
		cb_which[ncb_calls++] = 'A';
	}
}
static void cb_callback_b(io_context_t c, struct iocb *i, long res, long res2)
{
	(void)c;
	(void)res2;
	if (ncb_calls < 16) {
		cb_order[ncb_calls] = idx(i);
		cb_res[ncb_calls] = (int)res;
		cb_which[ncb_calls++] = 'B';
	}
}

static pthread_t main_thread;
static void *send_usr1_later(void *a)
{
	(void)a;
	sleep_ms(30);
	pthread_kill(main_thread, SIGUSR1);
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_tmpdir();
	main_thread = pthread_self();
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);

	io_context_t ctx = 0, c2 = 0;
	static char wbuf[4][8192], rbuf[4][8192];

	/* ---------------------------------------------------------------- setup */
	CASE("io_queue_init / io_setup argument checks");
	ctx = 0;
	L("io_queue_init(0)", io_queue_init(0, &ctx));
	L("io_queue_init(-1)", io_queue_init(-1, &ctx));
	ctx = 0;
	L("io_setup(0)", io_setup(0, &ctx));
	ctx = 0;
	L("io_setup(-1)", io_setup(-1, &ctx));
	ctx = 0;
	L("io_setup(INT_MAX)", io_setup(0x7fffffff, &ctx));
	ctx = 0;
	L("io_setup(8388609)", io_setup(8388609, &ctx));
	ctx = 0;
	L("io_setup(70000) over aio-max-nr", io_setup(70000, &ctx));
	ctx = (io_context_t)1;
	L("io_setup(8) with *ctxp != 0", io_setup(8, &ctx));
	printf("  ctx left unchanged: %d\n", ctx == (io_context_t)1);
	L("io_setup(8, NULL)", io_setup(8, NULL));
	ctx = 0;
	L("io_queue_init(8)", io_queue_init(8, &ctx));
	printf("  handle nonzero: %d\n", ctx != 0);
	print_ring("fresh ring of io_queue_init(8)", ctx);
	L("io_queue_release", io_queue_release(ctx));
	c2 = 0;
	L("io_setup(1)", io_setup(1, &c2));
	print_ring("fresh ring of io_setup(1)", c2);
	L("io_destroy", io_destroy(c2));
	c2 = 0;
	L("io_setup(1000)", io_setup(1000, &c2));
	print_ring("fresh ring of io_setup(1000)", c2);
	L("io_destroy", io_destroy(c2));

	ctx = 0;
	L("io_setup(64)", io_setup(64, &ctx));

	/* ------------------------------------------------------- regular file */
	int fd = tmpfile_open("data", O_RDWR | O_TRUNC);
	int fd_ro = tmpfile_open("data", O_RDONLY);
	int fd_wo = tmpfile_open("data", O_WRONLY);

	CASE("pwrite x2 on a file");
	fill(wbuf[0], 4096, 1);
	fill(wbuf[1], 4096, 2);
	io_prep_pwrite(&cb[0], fd, wbuf[0], 4096, 0);
	io_prep_pwrite(&cb[1], fd, wbuf[1], 4096, 4096);
	prep_data(0);
	prep_data(1);
	L("io_submit(2 writes)", io_submit(ctx, 2, cbp));
	reap(ctx, 2, "pwrite");
	print_file("file", fd);

	CASE("pwritev of 3 iovecs");
	fill(wbuf[2], 600, 3);
	struct iovec wv[3] = { { wbuf[2], 100 }, { wbuf[2] + 100, 200 }, { wbuf[2] + 300, 300 } };
	io_prep_pwritev(&cb[2], fd, wv, 3, 8192);
	prep_data(2);
	L("io_submit(pwritev)", io_submit(ctx, 1, &cbp[2]));
	reap(ctx, 1, "pwritev");
	print_file("file", fd);

	CASE("fsync and fdsync");
	io_prep_fsync(&cb[3], fd);
	io_prep_fdsync(&cb[4], fd);
	prep_data(3);
	prep_data(4);
	L("io_submit(fsync, fdsync)", io_submit(ctx, 2, &cbp[3]));
	reap(ctx, 2, "sync");

	CASE("pread, short pread, pread at EOF, preadv");
	memset(rbuf, 0, sizeof rbuf);
	io_prep_pread(&cb[5], fd, rbuf[0], 4096, 0);
	io_prep_pread(&cb[6], fd, rbuf[1], 8192, 4096);
	io_prep_pread(&cb[7], fd, rbuf[2], 512, 1 << 20);
	struct iovec rv[2] = { { rbuf[3], 300 }, { rbuf[3] + 300, 300 } };
	io_prep_preadv(&cb[8], fd, rv, 2, 8192);
	for (int i = 5; i <= 8; i++)
		prep_data(i);
	L("io_submit(4 reads)", io_submit(ctx, 4, &cbp[5]));
	reap(ctx, 4, "read");
	printf("  pread  [0,4096) fnv=%016llx same-as-written=%d\n", (unsigned long long)fnv(rbuf[0], 4096),
	       memcmp(rbuf[0], wbuf[0], 4096) == 0);
	printf("  short pread fnv=%016llx\n", (unsigned long long)fnv(rbuf[1], 4696));
	printf("  preadv fnv=%016llx same-as-written=%d\n", (unsigned long long)fnv(rbuf[3], 600),
	       memcmp(rbuf[3], wbuf[2], 600) == 0);

	CASE("pread into a NULL buffer");
	io_prep_pread(&cb[9], fd, NULL, 4096, 0);
	prep_data(9);
	L("io_submit(pread NULL)", io_submit(ctx, 1, &cbp[9]));
	reap(ctx, 1, "pread-null");

	CASE("pwritev2 with RWF_APPEND");
	fill(wbuf[3], 100, 4);
	struct iovec av = { wbuf[3], 100 };
	io_prep_pwritev2(&cb[10], fd, &av, 1, 0, RWF_APPEND);
	prep_data(10);
	L("io_submit(pwritev2 RWF_APPEND)", io_submit(ctx, 1, &cbp[10]));
	reap(ctx, 1, "append");
	print_file("file", fd);

	CASE("access mode, offsets, flags");
	io_prep_pwrite(&cb[11], fd_ro, wbuf[0], 16, 0);
	prep_data(11);
	L("io_submit(pwrite on O_RDONLY fd)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd_wo, rbuf[0], 16, 0);
	prep_data(11);
	L("io_submit(pread on O_WRONLY fd)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd, rbuf[0], 16, -1);
	prep_data(11);
	L("io_submit(pread offset -1)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd, rbuf[0], 16, 0);
	cb[11].aio_rw_flags = 0x40000000;
	prep_data(11);
	L("io_submit(pread unknown RWF flag)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd, rbuf[0], 16, 0);
	cb[11].u.c.flags = 2 /* IOCB_FLAG_IOPRIO */;
	cb[11].aio_reqprio = (short)(7 << 13);
	prep_data(11);
	L("io_submit(pread ioprio class 7)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd, rbuf[0], 16, 0);
	cb[11].u.c.flags = 2 /* IOCB_FLAG_IOPRIO */;
	cb[11].aio_reqprio = (short)((2 << 13) | 4); /* best effort, level 4 */
	prep_data(11);
	L("io_submit(pread ioprio BE/4)", io_submit(ctx, 1, &cbp[11]));
	reap(ctx, 1, "ioprio");
	io_prep_pread(&cb[11], fd, rbuf[0], 16, 0);
	io_set_eventfd(&cb[11], -1);
	prep_data(11);
	L("io_submit(RESFD -1)", io_submit(ctx, 1, &cbp[11]));
	io_prep_pread(&cb[11], fd, rbuf[0], 16, 0);
	io_set_eventfd(&cb[11], fd);
	prep_data(11);
	L("io_submit(RESFD not an eventfd)", io_submit(ctx, 1, &cbp[11]));
	io_prep_poll(&cb[11], fd, POLLIN);
	prep_data(11);
	L("io_submit(POLLIN on a regular file)", io_submit(ctx, 1, &cbp[11]));
	reap(ctx, 1, "poll-file");

	CASE("bad fd, bad opcode, reserved field");
	io_prep_pread(&cb[12], -1, rbuf[0], 16, 0);
	prep_data(12);
	L("io_submit(fd -1)", io_submit(ctx, 1, &cbp[12]));
	io_prep_pread(&cb[12], 999, rbuf[0], 16, 0);
	prep_data(12);
	L("io_submit(fd 999, not open)", io_submit(ctx, 1, &cbp[12]));
	io_prep_pread(&cb[12], fd, rbuf[0], 16, 0);
	cb[12].aio_lio_opcode = 99;
	prep_data(12);
	L("io_submit(opcode 99)", io_submit(ctx, 1, &cbp[12]));
	io_prep_pread(&cb[12], fd, rbuf[0], 16, 0);
	cb[12].aio_lio_opcode = 4; /* IOCB_CMD_PREADX, never implemented */
	prep_data(12);
	L("io_submit(opcode 4)", io_submit(ctx, 1, &cbp[12]));
	io_prep_pread(&cb[12], fd, rbuf[0], 16, 0);
	cb[12].u.c.__pad3 = 1; /* aio_reserved2 */
	prep_data(12);
	L("io_submit(aio_reserved2 != 0)", io_submit(ctx, 1, &cbp[12]));
	io_prep_pread(&cb[12], fd, rbuf[0], 16, 0);
	cb[12].key = 77;
	prep_data(12);
	L("io_submit(aio_key = 77)", io_submit(ctx, 1, &cbp[12]));
	printf("  aio_key after submit: %u\n", cb[12].key);
	reap(ctx, 1, "key");

	CASE("io_submit argument checks");
	L("io_submit(nr 0)", io_submit(ctx, 0, cbp));
	L("io_submit(nr -1)", io_submit(ctx, -1, cbp));
	L("io_submit(NULL array)", io_submit(ctx, 1, NULL));
	struct iocb *nullarr[2] = { NULL, NULL };
	L("io_submit(array of NULL)", io_submit(ctx, 1, nullarr));
	L("io_submit(ctx 0)", io_submit((io_context_t)0, 1, cbp));
	L("io_submit(ctx 0x12345000)", io_submit((io_context_t)0x12345000, 1, cbp));

	CASE("partial submission");
	io_prep_pwrite(&cb[13], fd, wbuf[0], 512, 16384);
	io_prep_pwrite(&cb[14], -1, wbuf[0], 512, 16384 + 512);
	io_prep_pwrite(&cb[15], fd, wbuf[0], 512, 16384 + 1024);
	for (int i = 13; i <= 15; i++)
		prep_data(i);
	L("io_submit(good, bad fd, good)", io_submit(ctx, 3, &cbp[13]));
	reap(ctx, 1, "partial");
	L("io_submit(bad fd, good)", io_submit(ctx, 2, &cbp[14]));
	cbp[16] = NULL;
	L("io_submit(good, NULL)", io_submit(ctx, 2, &cbp[15]));
	reap(ctx, 1, "partial2");
	cbp[16] = &cb[16];
	expect_empty(ctx, "partial");
	print_file("file", fd);

	/* ---------------------------------------------------------------- pipe */
	int p[2];
	if (pipe(p) != 0)
		return 2;

	CASE("pipe write, read of data present, fsync");
	fill(wbuf[0], 10, 9);
	io_prep_pwrite(&cb[20], p[1], wbuf[0], 10, 0);
	prep_data(20);
	L("io_submit(write 10 to pipe)", io_submit(ctx, 1, &cbp[20]));
	reap(ctx, 1, "pipe-write");
	memset(rbuf[0], 0, 100);
	io_prep_pread(&cb[21], p[0], rbuf[0], 100, 0);
	prep_data(21);
	L("io_submit(read 100 from pipe holding 10)", io_submit(ctx, 1, &cbp[21]));
	reap(ctx, 1, "pipe-read");
	printf("  pipe data fnv=%016llx same=%d\n", (unsigned long long)fnv(rbuf[0], 10),
	       memcmp(rbuf[0], wbuf[0], 10) == 0);
	io_prep_fsync(&cb[22], p[1]);
	prep_data(22);
	L("io_submit(fsync on a pipe)", io_submit(ctx, 1, &cbp[22]));
	io_prep_fdsync(&cb[22], p[0]);
	prep_data(22);
	L("io_submit(fdsync on a pipe)", io_submit(ctx, 1, &cbp[22]));

	CASE("POLL on a pipe");
	io_prep_poll(&cb[23], p[1], POLLOUT);
	prep_data(23);
	L("io_submit(POLLOUT on write end)", io_submit(ctx, 1, &cbp[23]));
	reap(ctx, 1, "pollout");
	io_prep_poll(&cb[24], p[0], POLLIN);
	prep_data(24);
	L("io_submit(POLLIN on empty pipe)", io_submit(ctx, 1, &cbp[24]));
	{
		struct timespec t = { 0, 20 * 1000000L };
		L("io_getevents(1,1,20ms) with poll pending", io_getevents(ctx, 1, 1, ev, &t));
	}
	if (write(p[1], "x", 1) != 1)
		return 2;
	reap(ctx, 1, "pollin");
	drain_pipe(p[0]);
	io_prep_poll(&cb[25], p[0], POLLIN);
	cb[25].u.c.nbytes = 1;
	prep_data(25);
	L("io_submit(POLL with nbytes 1)", io_submit(ctx, 1, &cbp[25]));
	io_prep_poll(&cb[25], p[0], POLLIN);
	cb[25].u.c.offset = 8;
	prep_data(25);
	L("io_submit(POLL with offset 8)", io_submit(ctx, 1, &cbp[25]));
	io_prep_poll(&cb[25], p[0], POLLIN);
	cb[25].u.c.buf = (void *)(uintptr_t)0x10001;
	prep_data(25);
	L("io_submit(POLL events 0x10001)", io_submit(ctx, 1, &cbp[25]));
	io_prep_poll(&cb[25], p[0], POLLIN | POLLOUT | POLLPRI);
	io_prep_poll(&cb[26], p[1], POLLIN);
	prep_data(25);
	prep_data(26);
	L("io_submit(POLLIN|OUT|PRI on read end, POLLIN on write end)", io_submit(ctx, 2, &cbp[25]));
	{
		struct timespec t = { 0, 10 * 1000000L };
		L("io_getevents(1,2,10ms)", io_getevents(ctx, 1, 2, ev, &t));
	}
	if (write(p[1], "yz", 2) != 2)
		return 2;
	reap(ctx, 1, "poll-multi");
	L("io_cancel(POLLIN on write end)", io_cancel(ctx, &cb[26], ev));
	reap(ctx, 1, "poll-multi-cancel");
	drain_pipe(p[0]);

	/* ------------------------------------------------------- io_getevents */
	CASE("io_getevents min/nr/timeout rules on an empty context");
	{
		struct timespec z = { 0, 0 }, t10 = { 0, 10 * 1000000L };
		L("io_getevents(2,1,{0,0})", io_getevents(ctx, 2, 1, ev, &z));
		L("io_getevents(2,1,10ms)", io_getevents(ctx, 2, 1, ev, &t10));
		L("io_getevents(2,1,NULL)", io_getevents(ctx, 2, 1, ev, NULL));
		L("io_getevents(-1,1,10ms)", io_getevents(ctx, -1, 1, ev, &t10));
		L("io_getevents(0,-1,10ms)", io_getevents(ctx, 0, -1, ev, &t10));
		L("io_getevents(0,0,NULL)", io_getevents(ctx, 0, 0, NULL, NULL));
		L("io_getevents(0,4,{0,0})", io_getevents(ctx, 0, 4, ev, &z));
		L("io_getevents(0,4,NULL)", io_getevents(ctx, 0, 4, ev, NULL));
		L("io_getevents(ctx 0,1,1,10ms)", io_getevents((io_context_t)0, 1, 1, ev, &t10));
		double t0 = now_ms();
		L("io_getevents(1,1,10ms)", io_getevents(ctx, 1, 1, ev, &t10));
		printf("  waited >= 9 ms: %d\n", now_ms() - t0 >= 9);
		/* (A negative timeout is left out: the kernel then waits forever.) */
		struct timespec t2 = { 0, 2 * 1000000L };
		L("io_getevents(1,4,2ms)", io_getevents(ctx, 1, 4, ev, &t2));
		L("io_queue_wait(NULL)", io_queue_wait(ctx, NULL));
		L("io_queue_wait({0,0})", io_queue_wait(ctx, &z));
		L("io_queue_run (nothing to run)", io_queue_run(ctx));
	}

	CASE("io_getevents with events ready: min/nr limits");
	for (int i = 30; i < 34; i++) {
		io_prep_pwrite(&cb[i], fd, wbuf[0], 256, 32768 + 256 * (i - 30));
		prep_data(i);
	}
	L("io_submit(4 writes)", io_submit(ctx, 4, &cbp[30]));
	{
		struct timespec t = { 5, 0 };
		/* Which three complete first is up to the I/O (the kernel's
		 * buffered writes finish in order, a thread pool's need not): the
		 * counts are compared, and the four events together. */
		L("io_getevents(3,3,5s)", io_getevents(ctx, 3, 3, ev, &t));
		L("io_getevents(1,8,5s)", io_getevents(ctx, 1, 8, ev + 3, &t));
		print_events("all4", ev, 4);
	}

	CASE("io_getevents into a bad events pointer");
	io_prep_pwrite(&cb[34], fd, wbuf[0], 256, 40960);
	prep_data(34);
	L("io_submit(write)", io_submit(ctx, 1, &cbp[34]));
	L("io_getevents(1,1,NULL, events=(void*)8)", io_getevents(ctx, 1, 1, (struct io_event *)8, NULL));
	reap(ctx, 1, "after-efault");

	/* ------------------------------------------------------ io_pgetevents */
	CASE("io_pgetevents");
	{
		sigset_t none, blk, old;
		sigemptyset(&none);
		sigemptyset(&blk);
		sigaddset(&blk, SIGUSR1);
		struct timespec t = { 5, 0 }, t10 = { 0, 10 * 1000000L };
		io_prep_pwrite(&cb[35], fd, wbuf[0], 256, 41216);
		prep_data(35);
		L("io_submit(write)", io_submit(ctx, 1, &cbp[35]));
		L("io_pgetevents(1,1,5s,empty mask)", io_pgetevents(ctx, 1, 1, ev, &t, &none));
		print_events("pget", ev, 1);
		L("io_pgetevents(1,1,10ms,NULL mask)", io_pgetevents(ctx, 1, 1, ev, &t10, NULL));
		L("io_pgetevents(2,1,NULL,empty mask)", io_pgetevents(ctx, 2, 1, ev, NULL, &none));

		/* A pending SIGUSR1, blocked in the thread's mask, unblocked by the
		 * wait's mask: the wait is interrupted and the handler runs. */
		io_prep_poll(&cb[36], p[0], POLLIN);
		prep_data(36);
		L("io_submit(POLLIN on empty pipe)", io_submit(ctx, 1, &cbp[36]));
		pthread_sigmask(SIG_BLOCK, &blk, &old);
		usr1_count = 0;
		raise(SIGUSR1);
		printf("  handler before wait: %d\n", (int)usr1_count);
		struct timespec t1 = { 1, 0 };
		L("io_pgetevents(1,1,1s,mask without SIGUSR1)", io_pgetevents(ctx, 1, 1, ev, &t1, &none));
		printf("  handler after wait: %d\n", (int)usr1_count);
		sigset_t cur;
		pthread_sigmask(SIG_BLOCK, NULL, &cur);
		printf("  SIGUSR1 still blocked after wait: %d\n", sigismember(&cur, SIGUSR1));
		pthread_sigmask(SIG_SETMASK, &old, NULL);

		/* SIGUSR1 sent during the wait, blocked by the wait's mask: the wait
		 * runs to its timeout and the handler runs after it returns. */
		usr1_count = 0;
		pthread_t th;
		pthread_create(&th, NULL, send_usr1_later, NULL);
		struct timespec t300 = { 0, 300 * 1000000L };
		double t0 = now_ms();
		L("io_pgetevents(1,1,300ms,mask with SIGUSR1)", io_pgetevents(ctx, 1, 1, ev, &t300, &blk));
		printf("  waited >= 290 ms: %d\n", now_ms() - t0 >= 290);
		pthread_join(th, NULL);
		printf("  handler ran after the wait: %d\n", (int)usr1_count);
		if (write(p[1], "x", 1) != 1)
			return 2;
		reap(ctx, 1, "poll-after-pget");
		drain_pipe(p[0]);
	}

	/* ------------------------------------------------------------ cancel */
	CASE("io_cancel");
	{
		io_prep_poll(&cb[40], p[0], POLLIN);
		prep_data(40);
		L("io_submit(POLLIN on empty pipe)", io_submit(ctx, 1, &cbp[40]));
		L("io_cancel(pending POLL)", io_cancel(ctx, &cb[40], ev));
		reap(ctx, 1, "cancelled-poll");
		L("io_cancel(same POLL again)", io_cancel(ctx, &cb[40], ev));
		L("io_cancel(finished write)", io_cancel(ctx, &cb[35], ev));
		L("io_cancel(never submitted)", io_cancel(ctx, &cb[41], ev));
		L("io_cancel(ctx 0)", io_cancel((io_context_t)0, &cb[40], ev));
		io_prep_poll(&cb[42], p[1], POLLOUT);
		prep_data(42);
		L("io_submit(POLLOUT, ready)", io_submit(ctx, 1, &cbp[42]));
		printf("  ring has it: %u\n", ring_wait(ctx, 1));
		L("io_cancel(completed, unreaped POLL)", io_cancel(ctx, &cb[42], ev));
		reap(ctx, 1, "completed-poll");
		io_prep_poll(&cb[43], p[0], POLLIN);
		prep_data(43);
		L("io_submit(POLLIN on empty pipe)", io_submit(ctx, 1, &cbp[43]));
		cb[43].key = 5;
		L("io_cancel(pending POLL, aio_key changed to 5)", io_cancel(ctx, &cb[43], ev));
		cb[43].key = 0;
		L("io_cancel(pending POLL, aio_key back to 0)", io_cancel(ctx, &cb[43], ev));
		reap(ctx, 1, "cancelled-poll2");
		expect_empty(ctx, "cancel");
	}

	/* ------------------------------------------------------------- RESFD */
	CASE("RESFD: io_set_eventfd");
	{
		int efd = eventfd(0, EFD_NONBLOCK);
		for (int i = 44; i < 47; i++) {
			io_prep_pwrite(&cb[i], fd, wbuf[1], 512, 65536 + 512 * (i - 44));
			io_set_eventfd(&cb[i], efd);
			prep_data(i);
		}
		printf("  RESFD flag set: %d\n", (cb[44].u.c.flags & 1) != 0);
		L("io_submit(3 writes with RESFD)", io_submit(ctx, 3, &cbp[44]));
		uint64_t total = 0, v;
		double t0 = now_ms();
		while (total < 3 && now_ms() - t0 < 5000) {
			struct pollfd pf = { efd, POLLIN, 0 };
			poll(&pf, 1, 100);
			if (read(efd, &v, 8) == 8)
				total += v;
		}
		printf("  eventfd counter total: %llu\n", (unsigned long long)total);
		reap(ctx, 3, "resfd");
		errno = 0;
		ssize_t n = read(efd, &v, 8);
		printf("  eventfd after reap: read=%zd %s\n", n, n < 0 ? ename(errno) : "");

		io_prep_poll(&cb[47], p[0], POLLIN);
		io_set_eventfd(&cb[47], efd);
		prep_data(47);
		L("io_submit(POLLIN with RESFD)", io_submit(ctx, 1, &cbp[47]));
		sleep_ms(10);
		n = read(efd, &v, 8);
		printf("  eventfd while poll pending: read=%zd %s\n", n, n < 0 ? ename(errno) : "");
		if (write(p[1], "x", 1) != 1)
			return 2;
		struct pollfd pf = { efd, POLLIN, 0 };
		poll(&pf, 1, 5000);
		v = 0;
		n = read(efd, &v, 8);
		printf("  eventfd after pipe write: read=%zd value=%llu\n", n, (unsigned long long)v);
		reap(ctx, 1, "resfd-poll");
		drain_pipe(p[0]);
		close(efd);
	}

	/* ------------------------------------------- callbacks, io_queue_run */
	CASE("io_set_callback and io_queue_run");
	{
		for (int i = 48; i < 51; i++) {
			io_prep_pwrite(&cb[i], fd, wbuf[1], 512, 81920 + 512 * (i - 48));
			cbp[i] = &cb[i];
		}
		io_set_callback(&cb[48], cb_callback_a);
		io_set_callback(&cb[49], cb_callback_b);
		io_set_callback(&cb[50], cb_callback_a);
		L("io_submit(3 writes with callbacks)", io_submit(ctx, 3, &cbp[48]));
		printf("  ring has: %u\n", ring_wait(ctx, 3));
		ncb_calls = 0;
		L("io_queue_run", io_queue_run(ctx));
		printf("  callbacks called: %d\n", ncb_calls);
		/* sort by iocb index */
		for (int i = 0; i < ncb_calls; i++)
			for (int j = i + 1; j < ncb_calls; j++)
				if (cb_order[j] < cb_order[i]) {
					int t = cb_order[i];
					cb_order[i] = cb_order[j];
					cb_order[j] = t;
					t = cb_res[i];
					cb_res[i] = cb_res[j];
					cb_res[j] = t;
					t = cb_which[i];
					cb_which[i] = cb_which[j];
					cb_which[j] = t;
				}
		for (int i = 0; i < ncb_calls; i++)
			printf("  callback %c: iocb=#%d res=%s\n", cb_which[i], cb_order[i], negret(cb_res[i]));
		L("io_queue_run (again)", io_queue_run(ctx));
		/* io_queue_wait with a pending POLL. */
		io_prep_poll(&cb[51], p[0], POLLIN);
		io_set_callback(&cb[51], cb_callback_b);
		cbp[51] = &cb[51];
		L("io_submit(POLL with callback)", io_submit(ctx, 1, &cbp[51]));
		struct timespec t = { 0, 10 * 1000000L };
		L("io_queue_wait(10ms)", io_queue_wait(ctx, &t));
		if (write(p[1], "x", 1) != 1)
			return 2;
		printf("  ring has: %u\n", ring_wait(ctx, 1));
		ncb_calls = 0;
		L("io_queue_run", io_queue_run(ctx));
		printf("  callbacks called: %d first=%c iocb=#%d res=%s\n", ncb_calls, ncb_calls ? cb_which[0] : '-',
		       ncb_calls ? cb_order[0] : -1, negret(ncb_calls ? cb_res[0] : 0));
		drain_pipe(p[0]);
	}
	L("io_destroy", io_destroy(ctx));

	/* -------------------------------------------------------------- ring */
	CASE("reading the ring directly (fio userspace_reap)");
	{
		ctx = 0;
		L("io_setup(16)", io_setup(16, &ctx));
		print_ring("fresh", ctx);
		struct aio_ring *r = (struct aio_ring *)ctx;
		for (int i = 60; i < 64; i++) {
			io_prep_pwrite(&cb[i], fd, wbuf[2], 128, 98304 + 128 * (i - 60));
			prep_data(i);
		}
		L("io_submit(4 writes)", io_submit(ctx, 4, &cbp[60]));
		printf("  ring has: %u\n", ring_wait(ctx, 4));
		print_ring("before reap", ctx);
		int n = ring_reap(ctx, ev, NCB);
		printf("  reaped from ring: %d\n", n);
		print_events("ring", ev, n);
		print_ring("after reap", ctx);
		struct timespec z = { 0, 0 }, t10 = { 0, 10 * 1000000L };
		L("io_getevents(0,4,{0,0}) after userspace reap", io_getevents(ctx, 0, 4, ev, &z));
		L("io_getevents(1,4,10ms) after userspace reap", io_getevents(ctx, 1, 4, ev, &t10));
		/* Several rounds, mixing the two ways of reaping, wrapping the ring. */
		unsigned nr = r->nr;
		int rounds = (int)(3 * nr / 40) + 1, ok = 1;
		for (int k = 0; k < rounds; k++) {
			for (int i = 0; i < 40; i++) {
				io_prep_pwrite(&cb[100 + i], fd, wbuf[2], 64, 131072 + 64 * i);
				prep_data(100 + i);
			}
			int s = io_submit(ctx, 40, &cbp[100]);
			if (s != 40) {
				printf("  round %d: io_submit = %s\n", k, negret(s));
				ok = 0;
				break;
			}
			int got = 0;
			if (k % 2) {
				ring_wait(ctx, 40);
				got = ring_reap(ctx, ev, NCB);
			} else {
				struct timespec t = { 5, 0 };
				while (got < 40) {
					int g = io_getevents(ctx, 40 - got, 40 - got, ev + got, &t);
					if (g <= 0)
						break;
					got += g;
				}
			}
			qsort(ev, got, sizeof ev[0], cmp_ev);
			for (int i = 0; i < got; i++)
				if (idx(ev[i].obj) != 100 + i || (long)ev[i].res != 64 || (uintptr_t)ev[i].data != 1100u + i)
					ok = 0;
			if (got != 40) {
				printf("  round %d: got %d\n", k, got);
				ok = 0;
			}
		}
		printf("  %d rounds of 40 over a ring of %u: all events right: %d\n", rounds, nr, ok);
		print_ring("after rounds", ctx);
		/* A bogus head stored by the application. */
		unsigned saved = r->head;
		__atomic_store_n(&r->head, saved + nr * 4 + 3, __ATOMIC_RELEASE);
		io_prep_pwrite(&cb[64], fd, wbuf[2], 64, 0);
		prep_data(64);
		L("io_submit(write) after head stored as head+4*nr+3", io_submit(ctx, 1, &cbp[64]));
		__atomic_store_n(&r->head, saved, __ATOMIC_RELEASE);
		reap(ctx, 1, "after-bogus-head");
		L("io_destroy", io_destroy(ctx));
	}

	/* ---------------------------------------------------- many contexts */
	CASE("many contexts");
	{
		enum { NCTX = 32 };
		static io_context_t cs[NCTX];
		int setup_ok = 0, events_ok = 0, destroyed = 0, distinct = 1;
		for (int i = 0; i < NCTX; i++) {
			cs[i] = 0;
			if (io_setup(4, &cs[i]) == 0)
				setup_ok++;
			for (int j = 0; j < i; j++)
				if (cs[j] == cs[i])
					distinct = 0;
		}
		for (int i = 0; i < NCTX; i++) {
			io_prep_pwrite(&cb[150 + i], fd, wbuf[3], 64, 200000 + 64 * i);
			prep_data(150 + i);
			io_submit(cs[i], 1, &cbp[150 + i]);
		}
		for (int i = NCTX - 1; i >= 0; i--) {
			struct timespec t = { 5, 0 };
			struct io_event e;
			if (io_getevents(cs[i], 1, 1, &e, &t) == 1 && e.obj == &cb[150 + i] && (long)e.res == 64)
				events_ok++;
		}
		for (int i = 0; i < NCTX; i++)
			if (io_destroy(cs[i]) == 0)
				destroyed++;
		printf("  %d contexts: setup %d, distinct %d, events right %d, destroyed %d\n", NCTX, setup_ok,
		       distinct, events_ok, destroyed);
	}

	/* ---------------------------------------------------------- destroy */
	CASE("io_destroy with a pending POLL, then the dead handle");
	{
		ctx = 0;
		L("io_setup(8)", io_setup(8, &ctx));
		io_prep_poll(&cb[70], p[0], POLLIN);
		prep_data(70);
		L("io_submit(POLLIN on empty pipe)", io_submit(ctx, 1, &cbp[70]));
		L("io_destroy (POLL pending)", io_destroy(ctx));
		io_prep_pwrite(&cb[71], fd, wbuf[0], 16, 0);
		prep_data(71);
		L("io_submit(dead)", io_submit(ctx, 1, &cbp[71]));
		L("io_cancel(dead)", io_cancel(ctx, &cb[70], ev));
		L("io_destroy(dead)", io_destroy(ctx));
		L("io_queue_release(dead)", io_queue_release(ctx));
		io_context_t again = 0;
		L("io_setup(8) after destroy", io_setup(8, &again));
		io_prep_poll(&cb[72], p[1], POLLOUT);
		prep_data(72);
		L("io_submit(POLLOUT)", io_submit(again, 1, &cbp[72]));
		reap(again, 1, "new-ctx");
		L("io_destroy", io_destroy(again));
	}

	/* ------------------------------------------------------------- fork */
	CASE("fork");
	{
		ctx = 0;
		L("io_setup(8) in parent", io_setup(8, &ctx));
		io_prep_poll(&cb[80], p[0], POLLIN);
		prep_data(80);
		L("io_submit(POLLIN on empty pipe) in parent", io_submit(ctx, 1, &cbp[80]));
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			io_prep_pwrite(&cb[81], fd, wbuf[0], 16, 0);
			prep_data(81);
			L("child: io_submit(parent ctx)", io_submit(ctx, 1, &cbp[81]));
			L("child: io_cancel(parent ctx, parent's POLL)", io_cancel(ctx, &cb[80], ev));
			L("child: io_destroy(parent ctx)", io_destroy(ctx));
			io_context_t cc = 0;
			L("child: io_setup(8)", io_setup(8, &cc));
			io_prep_pwrite(&cb[82], fd, wbuf[0], 16, 300000);
			prep_data(82);
			L("child: io_submit(write)", io_submit(cc, 1, &cbp[82]));
			reap(cc, 1, "child");
			io_prep_poll(&cb[83], p[0], POLLIN);
			prep_data(83);
			L("child: io_submit(POLLIN on empty pipe)", io_submit(cc, 1, &cbp[83]));
			L("child: io_cancel(own POLL)", io_cancel(cc, &cb[83], ev));
			reap(cc, 1, "child-cancel");
			L("child: io_destroy", io_destroy(cc));
			fflush(stdout);
			_exit(7);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		printf("  child exited: %d status %d\n", WIFEXITED(st), WEXITSTATUS(st));
		if (write(p[1], "x", 1) != 1)
			return 2;
		reap(ctx, 1, "parent-after-fork");
		drain_pipe(p[0]);
		io_prep_pwrite(&cb[84], fd, wbuf[0], 16, 301000);
		prep_data(84);
		L("parent: io_submit(write)", io_submit(ctx, 1, &cbp[84]));
		reap(ctx, 1, "parent-write");
		L("parent: io_destroy", io_destroy(ctx));

		/* A child that exits with a POLL pending on a context of its own. */
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			io_context_t cc = 0;
			io_setup(4, &cc);
			io_prep_poll(&cb[85], p[0], POLLIN);
			io_submit(cc, 1, &cbp[85]);
			_exit(3);
		}
		waitpid(pid, &st, 0);
		printf("  child with pending POLL exited: %d status %d\n", WIFEXITED(st), WEXITSTATUS(st));
	}

	CASE("final file contents");
	print_file("file", fd);

	close(fd);
	close(fd_ro);
	close(fd_wo);
	close(p[0]);
	close(p[1]);
	rm_tmpdir();
	printf("done\n");
	return 0;
}
