/* Raw-syscall conformance program: the AIO system calls made through
 * syscall(2) only (no libaio), checking the -1/errno convention, plus
 * non-AIO system calls that must pass through syscall() unchanged. One
 * printed line per observation; kernel and uaio runs must print the same.
 *
 * Build: gcc -O2 -Wall -pthread -o syscall_conform syscall_conform.c */
#include "conform_common.h"

#include <linux/aio_abi.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define NCB 64
static struct iocb cb[NCB];
static struct iocb *cbp[NCB];
static struct io_event ev[NCB];

/* A raw system call: prints "ret" or "-1 ENAME". */
#define S(desc, expr)                                                                  \
	({                                                                             \
		errno = 12345;                                                         \
		long _r = (long)(expr);                                                \
		int _e = errno;                                                        \
		if (_r == -1)                                                          \
			printf("%s = -1 %s\n", (desc), ename(_e));                     \
		else                                                                   \
			printf("%s = %ld errno:%s%s\n", (desc), _r, _e == 12345 ? "kept" : "CHANGED->", _e == 12345 ? "" : ename(_e));\
		_r;                                                                    \
	})

static long sys_io_setup(long nr, aio_context_t *c)
{
	return syscall(SYS_io_setup, nr, c);
}
static long sys_io_destroy(aio_context_t c)
{
	return syscall(SYS_io_destroy, c);
}
static long sys_io_submit(aio_context_t c, long nr, struct iocb **v)
{
	return syscall(SYS_io_submit, c, nr, v);
}
static long sys_io_getevents(aio_context_t c, long min, long nr, struct io_event *e, struct timespec *t)
{
	return syscall(SYS_io_getevents, c, min, nr, e, t);
}
struct usig {
	const sigset_t *sigmask;
	size_t sigsetsize;
};
static long sys_io_pgetevents(aio_context_t c, long min, long nr, struct io_event *e, struct timespec *t,
			      const struct usig *u)
{
	return syscall(SYS_io_pgetevents, c, min, nr, e, t, u);
}
static long sys_io_cancel(aio_context_t c, struct iocb *i, struct io_event *e)
{
	return syscall(SYS_io_cancel, c, i, e);
}

static int idx(uint64_t obj)
{
	struct iocb *o = (struct iocb *)(uintptr_t)obj;
	if (o >= cb && o < cb + NCB)
		return (int)(o - cb);
	return -1;
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
		printf("  %s: obj=#%d data=%llu res=%s res2=%lld\n", tag, idx(e[i].obj), (unsigned long long)e[i].data,
		       negret((long)e[i].res), (long long)e[i].res2);
}

static int reap(aio_context_t ctx, int n, const char *tag)
{
	int got = 0;
	while (got < n) {
		struct timespec ts = { 5, 0 };
		long r = sys_io_getevents(ctx, n - got, n - got, ev + got, &ts);
		if (r <= 0) {
			printf("  %s: io_getevents while reaping = %ld %s after %d of %d\n", tag, r, r < 0 ? ename(errno) : "",
			       got, n);
			break;
		}
		got += (int)r;
	}
	printf("  %s: reaped %d of %d\n", tag, got, n);
	print_events(tag, ev, got);
	return got;
}

static void prep(int i, int op, int fd, void *buf, size_t n, long long off)
{
	memset(&cb[i], 0, sizeof cb[i]);
	cb[i].aio_lio_opcode = op;
	cb[i].aio_fildes = fd;
	cb[i].aio_buf = (uintptr_t)buf;
	cb[i].aio_nbytes = n;
	cb[i].aio_offset = off;
	cb[i].aio_data = 1000 + i;
	cbp[i] = &cb[i];
}

static void prep_poll(int i, int fd, int events)
{
	prep(i, IOCB_CMD_POLL, fd, NULL, 0, 0);
	cb[i].aio_buf = events;
}

static volatile sig_atomic_t usr1_count;
static void on_usr1(int s)
{
	(void)s;
	usr1_count++;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_tmpdir();
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	static char wbuf[8192], rbuf[8192];
	fill(wbuf, sizeof wbuf, 5);
	int fd = tmpfile_open("data", O_RDWR | O_TRUNC);
	int p[2];
	if (pipe(p) != 0)
		return 2;
	aio_context_t ctx = 0;

	CASE("io_setup");
	S("io_setup(0)", sys_io_setup(0, &ctx));
	S("io_setup(-1)", sys_io_setup(-1, &ctx));
	S("io_setup(0x80000000)", sys_io_setup(0x80000000L, &ctx));
	S("io_setup(70000)", sys_io_setup(70000, &ctx));
	S("io_setup(8, NULL)", sys_io_setup(8, NULL));
	S("io_setup(8, (void*)16)", sys_io_setup(8, (aio_context_t *)16));
	ctx = 99;
	S("io_setup(8, *ctxp=99)", sys_io_setup(8, &ctx));
	ctx = 0;
	S("io_setup(32)", sys_io_setup(32, &ctx));
	printf("  handle nonzero: %d magic_ok: %d\n", ctx != 0, ((unsigned *)(uintptr_t)ctx)[4] == 0xa10a10a1);

	CASE("io_submit and io_getevents");
	prep(0, IOCB_CMD_PWRITE, fd, wbuf, 4096, 0);
	prep(1, IOCB_CMD_PWRITE, fd, wbuf + 4096, 4096, 4096);
	S("io_submit(2 writes)", sys_io_submit(ctx, 2, cbp));
	reap(ctx, 2, "write");
	prep(2, IOCB_CMD_PREAD, fd, rbuf, 8192, 0);
	S("io_submit(read)", sys_io_submit(ctx, 1, &cbp[2]));
	reap(ctx, 1, "read");
	printf("  read back same: %d\n", memcmp(rbuf, wbuf, 8192) == 0);
	prep(3, IOCB_CMD_FDSYNC, fd, NULL, 0, 0);
	S("io_submit(fdsync)", sys_io_submit(ctx, 1, &cbp[3]));
	reap(ctx, 1, "fdsync");
	S("io_submit(nr -1)", sys_io_submit(ctx, -1, cbp));
	S("io_submit(nr 0)", sys_io_submit(ctx, 0, cbp));
	S("io_submit(NULL array)", sys_io_submit(ctx, 1, NULL));
	S("io_submit(ctx 0)", sys_io_submit(0, 1, cbp));
	prep(4, IOCB_CMD_PREAD, -1, rbuf, 16, 0);
	S("io_submit(fd -1)", sys_io_submit(ctx, 1, &cbp[4]));
	prep(4, 42, fd, rbuf, 16, 0);
	S("io_submit(opcode 42)", sys_io_submit(ctx, 1, &cbp[4]));
	prep(4, IOCB_CMD_PREAD, fd, rbuf, 16, 0);
	cb[4].aio_reserved2 = 1;
	S("io_submit(aio_reserved2 1)", sys_io_submit(ctx, 1, &cbp[4]));
	prep(4, IOCB_CMD_PREAD, fd, rbuf, 16, 0);
	prep(5, IOCB_CMD_PREAD, 999, rbuf, 16, 0);
	prep(6, IOCB_CMD_PREAD, fd, rbuf, 16, 0);
	S("io_submit(good, fd 999, good)", sys_io_submit(ctx, 3, &cbp[4]));
	reap(ctx, 1, "partial");
	prep(7, IOCB_CMD_PREAD, fd, (void *)8, 4096, 0);
	S("io_submit(pread into (void*)8)", sys_io_submit(ctx, 1, &cbp[7]));
	reap(ctx, 1, "efault-buf");
	struct iovec badv = { (void *)8, 4096 };
	prep(8, IOCB_CMD_PREADV, fd, &badv, 1, 0);
	S("io_submit(preadv, iovec pointing to (void*)8)", sys_io_submit(ctx, 1, &cbp[8]));
	reap(ctx, 1, "efault-iov");
	prep(8, IOCB_CMD_PREADV, fd, (void *)8, 1, 0);
	S("io_submit(preadv, iovec array at (void*)8)", sys_io_submit(ctx, 1, &cbp[8]));
	prep(8, IOCB_CMD_PREADV, fd, &badv, 2000, 0);
	S("io_submit(preadv, 2000 iovecs)", sys_io_submit(ctx, 1, &cbp[8]));

	CASE("io_getevents rules");
	{
		struct timespec z = { 0, 0 }, t10 = { 0, 10 * 1000000L };
		S("io_getevents(2,1,{0,0})", sys_io_getevents(ctx, 2, 1, ev, &z));
		S("io_getevents(-1,1,{0,0})", sys_io_getevents(ctx, -1, 1, ev, &z));
		S("io_getevents(0,-1,{0,0})", sys_io_getevents(ctx, 0, -1, ev, &z));
		S("io_getevents(0,4,{0,0})", sys_io_getevents(ctx, 0, 4, ev, &z));
		S("io_getevents(0,0,NULL,NULL)", sys_io_getevents(ctx, 0, 0, NULL, NULL));
		S("io_getevents(ctx 0)", sys_io_getevents(0, 1, 1, ev, &z));
		S("io_getevents(ctx 0x5000)", sys_io_getevents(0x5000, 1, 1, ev, &z));
		S("io_getevents(timeout (void*)8)", sys_io_getevents(ctx, 1, 1, ev, (struct timespec *)8));
		double t0 = now_ms();
		S("io_getevents(1,1,10ms)", sys_io_getevents(ctx, 1, 1, ev, &t10));
		printf("  waited >= 9 ms: %d\n", now_ms() - t0 >= 9);
		prep(9, IOCB_CMD_PWRITE, fd, wbuf, 100, 10000);
		S("io_submit(write)", sys_io_submit(ctx, 1, &cbp[9]));
		S("io_getevents(1,1,NULL, events (void*)8)", sys_io_getevents(ctx, 1, 1, (struct io_event *)8, NULL));
		reap(ctx, 1, "after-efault");
	}

	CASE("io_pgetevents");
	{
		sigset_t none, blk, old;
		sigemptyset(&none);
		sigemptyset(&blk);
		sigaddset(&blk, SIGUSR1);
		struct timespec t5 = { 5, 0 }, z = { 0, 0 }, t10 = { 0, 10 * 1000000L };
		struct usig good = { &none, 8 }, big = { &none, 16 }, small = { &none, 4 }, nullmask = { NULL, 16 },
			    badmask = { (sigset_t *)8, 8 };
		prep(10, IOCB_CMD_PWRITE, fd, wbuf, 100, 10100);
		S("io_submit(write)", sys_io_submit(ctx, 1, &cbp[10]));
		S("io_pgetevents(1,1,5s,{mask,8})", sys_io_pgetevents(ctx, 1, 1, ev, &t5, &good));
		print_events("pget", ev, 1);
		S("io_pgetevents(1,1,{0,0},{mask,16})", sys_io_pgetevents(ctx, 1, 1, ev, &z, &big));
		S("io_pgetevents(1,1,{0,0},{mask,4})", sys_io_pgetevents(ctx, 1, 1, ev, &z, &small));
		S("io_pgetevents(1,1,{0,0},{NULL,16})", sys_io_pgetevents(ctx, 1, 1, ev, &z, &nullmask));
		S("io_pgetevents(1,1,{0,0},{(void*)8,8})", sys_io_pgetevents(ctx, 1, 1, ev, &z, &badmask));
		S("io_pgetevents(1,1,{0,0},usig (void*)8)",
		  sys_io_pgetevents(ctx, 1, 1, ev, &z, (struct usig *)8));
		S("io_pgetevents(1,1,10ms,NULL usig)", sys_io_pgetevents(ctx, 1, 1, ev, &t10, NULL));
		S("io_pgetevents(2,1,{0,0},{mask,8})", sys_io_pgetevents(ctx, 2, 1, ev, &z, &good));
		S("io_pgetevents(ctx 0,{mask,16})", sys_io_pgetevents(0, 1, 1, ev, &z, &big));

		prep_poll(11, p[0], POLLIN);
		S("io_submit(POLLIN on empty pipe)", sys_io_submit(ctx, 1, &cbp[11]));
		pthread_sigmask(SIG_BLOCK, &blk, &old);
		usr1_count = 0;
		raise(SIGUSR1);
		struct timespec t1 = { 1, 0 };
		S("io_pgetevents(1,1,1s,{mask without SIGUSR1,8}) with SIGUSR1 pending",
		  sys_io_pgetevents(ctx, 1, 1, ev, &t1, &good));
		printf("  handler ran: %d\n", (int)usr1_count);
		sigset_t cur;
		pthread_sigmask(SIG_BLOCK, NULL, &cur);
		printf("  SIGUSR1 still blocked: %d\n", sigismember(&cur, SIGUSR1));
		usr1_count = 0;
		raise(SIGUSR1);
		S("io_getevents(1,1,10ms) with SIGUSR1 pending and blocked", sys_io_getevents(ctx, 1, 1, ev, &t10));
		printf("  handler ran: %d\n", (int)usr1_count);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		printf("  handler ran after unblocking: %d\n", (int)usr1_count);
		if (write(p[1], "x", 1) != 1)
			return 2;
		reap(ctx, 1, "poll");
		drain_pipe(p[0]);
	}

	CASE("io_cancel");
	{
		prep_poll(12, p[0], POLLIN);
		S("io_submit(POLLIN on empty pipe)", sys_io_submit(ctx, 1, &cbp[12]));
		S("io_cancel(pending POLL)", sys_io_cancel(ctx, &cb[12], ev));
		reap(ctx, 1, "cancelled");
		S("io_cancel(same again)", sys_io_cancel(ctx, &cb[12], ev));
		S("io_cancel(finished write)", sys_io_cancel(ctx, &cb[10], ev));
		S("io_cancel(ctx 0)", sys_io_cancel(0, &cb[12], ev));
		S("io_cancel(iocb (void*)8)", sys_io_cancel(ctx, (struct iocb *)8, ev));
	}

	CASE("RESFD");
	{
		int efd = eventfd(0, EFD_NONBLOCK);
		prep_poll(13, p[0], POLLIN);
		cb[13].aio_flags = IOCB_FLAG_RESFD;
		cb[13].aio_resfd = efd;
		S("io_submit(POLLIN with RESFD)", sys_io_submit(ctx, 1, &cbp[13]));
		uint64_t v = 0;
		S("read(eventfd) while pending", read(efd, &v, 8));
		if (write(p[1], "x", 1) != 1)
			return 2;
		struct pollfd pf = { efd, POLLIN, 0 };
		poll(&pf, 1, 5000);
		S("read(eventfd) after pipe write", read(efd, &v, 8));
		printf("  counter: %llu\n", (unsigned long long)v);
		reap(ctx, 1, "resfd");
		drain_pipe(p[0]);
		close(efd);
	}

	CASE("fork");
	{
		prep_poll(14, p[0], POLLIN);
		S("io_submit(POLLIN on empty pipe)", sys_io_submit(ctx, 1, &cbp[14]));
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			struct timespec z = { 0, 0 };
			prep(15, IOCB_CMD_PWRITE, fd, wbuf, 10, 20000);
			S("child: io_submit(parent ctx)", sys_io_submit(ctx, 1, &cbp[15]));
			S("child: io_getevents(parent ctx)", sys_io_getevents(ctx, 0, 1, ev, &z));
			S("child: io_cancel(parent ctx)", sys_io_cancel(ctx, &cb[14], ev));
			S("child: io_destroy(parent ctx)", sys_io_destroy(ctx));
			aio_context_t cc = 0;
			S("child: io_setup(4)", sys_io_setup(4, &cc));
			S("child: io_submit(write)", sys_io_submit(cc, 1, &cbp[15]));
			reap(cc, 1, "child");
			S("child: io_destroy", sys_io_destroy(cc));
			fflush(stdout);
			_exit(0);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		printf("  child exited: %d status %d\n", WIFEXITED(st), WEXITSTATUS(st));
		S("parent: io_cancel(POLL)", sys_io_cancel(ctx, &cb[14], ev));
		reap(ctx, 1, "parent");
	}

	CASE("io_destroy and the dead handle");
	{
		prep_poll(16, p[0], POLLIN);
		S("io_submit(POLLIN on empty pipe)", sys_io_submit(ctx, 1, &cbp[16]));
		S("io_destroy", sys_io_destroy(ctx));
		struct timespec z = { 0, 0 };
		struct usig none = { NULL, 8 };
		prep(17, IOCB_CMD_PWRITE, fd, wbuf, 10, 0);
		S("io_submit(dead)", sys_io_submit(ctx, 1, &cbp[17]));
		S("io_getevents(dead)", sys_io_getevents(ctx, 0, 1, ev, &z));
		S("io_pgetevents(dead)", sys_io_pgetevents(ctx, 0, 1, ev, &z, &none));
		S("io_cancel(dead)", sys_io_cancel(ctx, &cb[16], ev));
		S("io_destroy(dead)", sys_io_destroy(ctx));
		S("io_destroy(0)", sys_io_destroy(0));
	}

	CASE("non-AIO system calls through syscall()");
	{
		errno = 12345;
		long pid = syscall(SYS_getpid);
		printf("getpid matches: %d errno:%s\n", pid == getpid(), errno == 12345 ? "kept" : "CHANGED");
		printf("gettid matches: %d\n", syscall(SYS_gettid) == gettid());
		S("write(pipe, 5 bytes)", syscall(SYS_write, p[1], "hello", 5));
		char b[8] = { 0 };
		S("read(pipe, 8)", syscall(SYS_read, p[0], b, 8));
		printf("  read back: %s\n", b);
		S("close(-1)", syscall(SYS_close, -1));
		S("read(fd 999)", syscall(SYS_read, 999, b, 1));
		void *m = (void *)syscall(SYS_mmap, NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		printf("mmap (6 arguments) ok: %d\n", m != MAP_FAILED);
		S("munmap", syscall(SYS_munmap, m, 8192));
		S("pwrite64(file, 4 bytes, 30000)", syscall(SYS_pwrite64, fd, "abcd", 4, 30000));
		S("pread64(file, 4, 30000)", syscall(SYS_pread64, fd, b, 4, 30000));
		S("syscall(100000)", syscall(100000));
		S("syscall(-1)", syscall(-1));
	}

	CASE("many contexts through syscall()");
	{
		enum { N = 32 };
		aio_context_t cs[N];
		int ok = 0, got = 0, gone = 0;
		for (int i = 0; i < N; i++) {
			cs[i] = 0;
			if (sys_io_setup(2, &cs[i]) == 0)
				ok++;
			prep(20 + i, IOCB_CMD_PWRITE, fd, wbuf, 16, 40000 + 16 * i);
			sys_io_submit(cs[i], 1, &cbp[20 + i]);
		}
		for (int i = 0; i < N; i++) {
			struct timespec t = { 5, 0 };
			if (sys_io_getevents(cs[i], 1, 1, ev, &t) == 1 && idx(ev[0].obj) == 20 + i && ev[0].res == 16)
				got++;
			if (sys_io_destroy(cs[i]) == 0)
				gone++;
		}
		printf("  %d contexts: setup %d, events right %d, destroyed %d\n", N, ok, got, gone);
	}

	CASE("final file contents");
	print_file("file", fd);
	close(fd);
	rm_tmpdir();
	printf("done\n");
	return 0;
}
