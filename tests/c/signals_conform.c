/* The program's own signal handling around AIO calls. Every mode must end
 * with status 0 and print the same lines on kernel AIO and on uaio.
 *
 *   signals_conform longjmp   a SIGSEGV handler installed before io_setup
 *                             that recovers with siglongjmp: three faults of
 *                             the program's own are all handled, and a bad
 *                             iocb array still gives EFAULT in between
 *   signals_conform blocked   SIGSEGV and SIGBUS blocked by the program:
 *                             bad pointers still give EFAULT, the mask is
 *                             left as it was
 *   signals_conform pending   io_pgetevents with a zero timeout while a
 *                             signal is pending that its mask lets through:
 *                             EINTR, the handler runs once
 *
 * Build: gcc -O2 -Wall -o signals_conform signals_conform.c */
#include "conform_common.h"

#include <linux/aio_abi.h>
#include <setjmp.h>
#include <sys/syscall.h>

static sigjmp_buf jb;
static volatile sig_atomic_t faults, usr1;
static int *volatile unmapped = (int *)8;

static void on_segv(int s)
{
	(void)s;
	faults++;
	siglongjmp(jb, 1);
}

static void on_usr1(int s)
{
	(void)s;
	usr1++;
}

static long sc(long r)
{
	return r < 0 ? -errno : r;
}

static long setup(unsigned n, aio_context_t *c)
{
	return sc(syscall(SYS_io_setup, n, c));
}

static long submit(aio_context_t c, long n, struct iocb **p)
{
	return sc(syscall(SYS_io_submit, c, n, p));
}

static long getevents(aio_context_t c, long mn, long n, struct io_event *e, struct timespec *t)
{
	return sc(syscall(SYS_io_getevents, c, mn, n, e, t));
}

/* One cached read of the scratch file, reaped: the context works. */
static void one_read(aio_context_t ctx, int fd)
{
	static char buf[8];
	struct iocb cb = { 0 };
	struct iocb *p = &cb;
	cb.aio_lio_opcode = IOCB_CMD_PREAD;
	cb.aio_fildes = fd;
	cb.aio_buf = (uintptr_t)buf;
	cb.aio_nbytes = 5;
	cb.aio_data = 42;
	printf("submit(read) = %s\n", negret(submit(ctx, 1, &p)));
	struct io_event e;
	struct timespec t = { 5, 0 };
	printf("getevents = %s", negret(getevents(ctx, 1, 1, &e, &t)));
	printf(" data=%llu res=%lld\n", (unsigned long long)e.data, (long long)e.res);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "longjmp";
	printf("mode %s\n", mode);
	make_tmpdir();
	int fd = tmpfile_open("sig.dat", O_RDWR | O_TRUNC);
	if (write(fd, "hello", 5) != 5)
		return 2;
	aio_context_t ctx = 0;

	if (!strcmp(mode, "longjmp")) {
		struct sigaction sa = { 0 };
		sa.sa_handler = on_segv;
		sigaction(SIGSEGV, &sa, NULL);
		printf("setup = %s\n", negret(setup(8, &ctx)));
		for (int i = 0; i < 3; i++) {
			if (!sigsetjmp(jb, 1))
				*unmapped = 1;
			printf("own fault %d handled: faults=%d\n", i, (int)faults);
			printf("submit(bad array) = %s\n", negret(submit(ctx, 1, (struct iocb **)16)));
		}
		one_read(ctx, fd);
	} else if (!strcmp(mode, "blocked")) {
		sigset_t s, after;
		sigemptyset(&s);
		sigaddset(&s, SIGSEGV);
		sigaddset(&s, SIGBUS);
		sigprocmask(SIG_BLOCK, &s, NULL);
		printf("setup = %s\n", negret(setup(8, &ctx)));
		printf("submit(bad array) = %s\n", negret(submit(ctx, 1, (struct iocb **)16)));
		struct iocb *bad = (struct iocb *)24;
		printf("submit(bad iocb) = %s\n", negret(submit(ctx, 1, &bad)));
		one_read(ctx, fd);
		struct iocb cb = { 0 };
		struct iocb *p = &cb;
		cb.aio_lio_opcode = IOCB_CMD_PREAD;
		cb.aio_fildes = fd;
		static char buf[8];
		cb.aio_buf = (uintptr_t)buf;
		cb.aio_nbytes = 5;
		submit(ctx, 1, &p);
		struct timespec t = { 5, 0 };
		printf("getevents(bad events) = %s\n", negret(getevents(ctx, 1, 1, (struct io_event *)8, &t)));
		printf("getevents after = %s\n", negret(getevents(ctx, 1, 1, (struct io_event[1]){ 0 }, &t)));
		sigprocmask(SIG_BLOCK, NULL, &after);
		printf("SIGSEGV still blocked: %d, SIGBUS still blocked: %d\n", sigismember(&after, SIGSEGV),
		       sigismember(&after, SIGBUS));
	} else if (!strcmp(mode, "pending")) {
		struct sigaction sa = { 0 };
		sa.sa_handler = on_usr1;
		sigaction(SIGUSR1, &sa, NULL);
		sigset_t s, after;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		sigprocmask(SIG_BLOCK, &s, NULL);
		printf("setup = %s\n", negret(setup(8, &ctx)));
		raise(SIGUSR1);
		sigset_t none;
		sigemptyset(&none);
		struct {
			const sigset_t *m;
			size_t n;
		} arg = { &none, 8 };
		struct io_event e;
		struct timespec z = { 0, 0 };
		long r = sc(syscall(SYS_io_pgetevents, ctx, 1, 1, &e, &z, &arg));
		printf("io_pgetevents(zero timeout, signal pending) = %s, handler ran %d time(s)\n", negret(r),
		       (int)usr1);
		sigprocmask(SIG_BLOCK, NULL, &after);
		printf("SIGUSR1 blocked again after: %d\n", sigismember(&after, SIGUSR1));
		one_read(ctx, fd);
	} else {
		printf("unknown mode\n");
		return 2;
	}
	printf("destroy = %s\n", negret(sc(syscall(SYS_io_destroy, ctx))));
	close(fd);
	rm_tmpdir();
	return 0;
}
