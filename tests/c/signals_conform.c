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
 *   signals_conform reentry   a SIGALRM handler every 200 us reaps the
 *                             context the main thread uses (io_pgetevents,
 *                             min_nr 1, 50 us, an empty mask: the next
 *                             signal may interrupt it too) while the main
 *                             thread submits batches of POLLs (of ready
 *                             pipes, and of an empty one), cancels those
 *                             pending now and then, and reaps:
 *                             the run ends, and every POLL accepted comes
 *                             back once (a watchdog exits 3 on a hang)
 *   signals_conform actions   what sigaction, signal, sysv_signal and sigset
 *                             report and install (the drop-in defines them):
 *                             old handlers, flags as the kernel reports them
 *                             (SA_RESTORER, unknown bits dropped, after
 *                             SA_RESETHAND fired), a handler saved by sigset
 *                             and put back with signal, SIG_ERR refused
 *   signals_conform jumpwait-same
 *   signals_conform jumpwait-other
 *                             a SIGALRM handler jumps (siglongjmp) out of an
 *                             untimed io_getevents that sleeps for a POLL
 *                             (made ready and reaped next); then the same thread
 *                             (or another one) does 10 O_DIRECT 4 KiB reads,
 *                             each waited for in io_getevents: at least 8
 *                             of the waits end within 25 ms (each takes
 *                             well under 1 ms on the kernel; the margin is
 *                             for a loaded machine). Before uaio passed the
 *                             lead of the wait on from the jumped-out
 *                             waiter, most took 100 ms.
 *   signals_conform faults    SIGSEGV and SIGBUS once uaio has a fault handler
 *                             of its own: sigaction reports the program's
 *                             actions (as before io_setup, SIG_IGN kept,
 *                             a handler with its mask and flags, reset by
 *                             SA_RESETHAND), a SIGSEGV sent by kill runs
 *                             the program's handler (SI_USER), is ignored
 *                             when it is ignored, and ends a child by the
 *                             default action; bad pointers still give
 *                             EFAULT; a SIGFPE sent to the process while
 *                             its thread blocks it waits for sigtimedwait
 *   signals_conform faultmasks
 *                             SIGSEGV blocked and pending across io_setup
 *                             and calls (bad pointers still EFAULT) stays
 *                             pending for sigwait; a child's real fault and
 *                             raised SIGBUS end it by that signal; a bad
 *                             pointer with a 2 KiB alternate stack, and
 *                             from inside a SIGSEGV handler (the signal
 *                             blocked there), gives EFAULT; an ignored
 *                             SIGSEGV stays ignored across exec
 *   signals_conform jumpsubmit
 *                             a SIGALRM every 100 us, whose handler jumps
 *                             (siglongjmp) out of io_submit whenever the
 *                             signal comes during one, while the thread
 *                             submits batches of 16 buffered writes: each
 *                             batch comes back whole (every write once, with
 *                             its bytes in the file) or not at all, whether
 *                             or not its io_submit returned, and the thread's
 *                             later calls work (the kernel runs the handler
 *                             only once the system call has returned; before
 *                             uaio held handlers back, the first jump left
 *                             the thread's calls failing with EAGAIN)
 *   signals_conform jumpdestroy
 *                             twelve rounds: a SIGALRM handler jumps
 *                             (siglongjmp) out of an untimed io_getevents
 *                             (io_pgetevents in odd rounds) that sleeps for
 *                             a POLL of an empty pipe, then the thread
 *                             destroys the context: at least 10 of the 12
 *                             destroys return within 0.3 s (the kernel's
 *                             take microseconds; before uaio let a thread's
 *                             destroy pass its own jumped-out waits, each
 *                             waited 1.2 s for them to end, and from the
 *                             ninth on while the thread's record of them
 *                             kept only eight contexts, none of them freed
 *                             by the destroy)
 *   signals_conform jumpmany  the same handler jumps out of a wait on each
 *                             of 12 contexts in turn, then the thread
 *                             destroys them all: at least 10 of the 12
 *                             destroys return within 0.3 s (before, while
 *                             the thread's record kept 8 contexts, the 4
 *                             oldest took 1.25 s each)
 *   signals_conform jumpdestroy-other
 *                             twelve rounds: a SIGUSR1 handler jumps out of
 *                             a second thread's untimed io_getevents, which
 *                             sleeps for a POLL of an empty pipe; the thread
 *                             stays, and the main thread destroys the
 *                             context: at least 10 of the 12 destroys return
 *                             within 0.3 s (before, each waited 1.2 s for
 *                             the jumped-out wait to end)
 *   signals_conform destroy-during-handler
 *                             twelve rounds: a second thread sleeps in
 *                             io_getevents for such a POLL; the main thread
 *                             sends it SIGUSR1, whose handler waits for the
 *                             main thread to destroy the context: at least
 *                             10 of the 12 destroys return within 0.3 s, and
 *                             the interrupted call answers EINTR once the
 *                             handler returns (the kernel's returned before
 *                             the handler ran; before, each destroy waited
 *                             1.2 s)
 *   signals_conform event-during-handler
 *                             a second thread sleeps in io_getevents on an
 *                             empty context; a SIGUSR1 handler on it waits
 *                             while the main thread submits a POLL and makes
 *                             it ready: the interrupted call answers EINTR
 *                             (the kernel's returned before the handler ran)
 *                             and the next one returns the event (before, on
 *                             both backends, the interrupted call returned
 *                             it)
 *   signals_conform submit-in-handler
 *                             the same with the thread's own SIGALRM
 *                             handler submitting the POLL and writing to the
 *                             pipe
 *   signals_conform complete-in-handler
 *                             the same with the POLL submitted before the
 *                             wait and the handler writing to the pipe
 *                             (before, on io_uring, the interrupted call
 *                             returned the event)
 *   signals_conform destroyinhandler
 *                             a SIGALRM handler destroys the context while
 *                             the thread it interrupted sleeps in
 *                             io_getevents for a POLL of an empty pipe:
 *                             the destroy answers 0 within 0.3 s (at least
 *                             10 of 12 rounds), and the interrupted call
 *                             EINTR (the kernel runs the handler after the
 *                             call returned); before, the destroy took
 *                             1.2 s and the call returned the cancelled
 *                             POLL's event
 *
 *   signals_conform stop-getevents
 *   signals_conform stop-pgetevents
 *   signals_conform stop-pgetevents-mask
 *                             the thread waits (no time limit) for a POLL
 *                             on an empty pipe when a child stops the
 *                             process (SIGSTOP) and continues it (SIGCONT),
 *                             then writes the pipe; no handler is installed:
 *                             io_getevents answers EINTR, io_pgetevents
 *                             (with no mask, or an empty one) is restarted
 *                             and returns the event
 *   signals_conform xfsz      buffered writes past RLIMIT_FSIZE (4 KiB), with
 *                             no rw flags and with RWF_NOSIGNAL (which only
 *                             spares SIGPIPE): a write that starts past the
 *                             limit ends a child by SIGXFSZ; with a handler,
 *                             it runs in the submitting thread and the event
 *                             is EFBIG; a write that crosses the limit is
 *                             cut short there, with no signal; the same
 *                             for O_DIRECT writes past the limit, and for
 *                             writes past the limit inside a file already
 *                             longer than it
 *   signals_conform stop-pgetevents-timeout
 *                             the same with a 1 s timeout and a stop of
 *                             1.1 s: the restarted call has its whole
 *                             timeout again, and the event written 0.3 s
 *                             after the continue comes back
 *   signals_conform teardown  20 times: io_setup, epoll_wait of an empty
 *                             epoll set for 20 ms, a read, io_destroy, the
 *                             same epoll_wait: none ends with EINTR (no
 *                             signal was sent). io_uring tears down an
 *                             instance whose last descriptor is closed by
 *                             interrupting every thread that submitted to
 *                             it; uaio's rings are kept for reuse instead
 *                             (before, on io_uring, 19 of 20 waits after
 *                             io_destroy and 2 after io_setup ended with
 *                             EINTR)
 *
 * Build: gcc -O2 -Wall -o signals_conform signals_conform.c */
#include "conform_common.h"

#include <linux/aio_abi.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

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

/* io_pgetevents, with an empty signal mask in force while it waits
 * (`empty_mask`) or with no mask; the raw result (-1 and errno). */
static long pgetevents(aio_context_t c, long mn, long n, struct io_event *e, struct timespec *t, int empty_mask)
{
	sigset_t none;
	sigemptyset(&none);
	struct {
		const sigset_t *m;
		size_t n;
	} arg = { &none, 8 };
	return syscall(SYS_io_pgetevents, c, mn, n, e, t, empty_mask ? &arg : NULL);
}

/* One cached read of the scratch file, reaped: the context works. */
#ifndef RWF_NOSIGNAL
#define RWF_NOSIGNAL 0x00000100
#endif

static volatile sig_atomic_t xf_hits;
static volatile pid_t xf_tid;

static void xf_handler(int s)
{
	(void)s;
	xf_hits++;
	xf_tid = (pid_t)syscall(SYS_gettid);
}

/* One buffered write of `len` bytes at `off` with `flags`, in a child whose
 * file size limit is 4 KiB (`handler`: with a SIGXFSZ handler); prints the
 * event and how the child ended. */
static void xf_child_in(const char *tag, int flags, long long off, size_t len, int handler, int direct,
			long long prefill)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		if (handler) {
			struct sigaction sa = { 0 };
			sa.sa_handler = xf_handler;
			sigaction(SIGXFSZ, &sa, NULL);
		}
		int fd = tmpfile_open("xfsz.dat", O_RDWR | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0));
		/* A file longer than the limit, made before the limit is set. */
		if (fd >= 0 && prefill > 0 && ftruncate(fd, prefill) != 0)
			_exit(5);
		struct rlimit rl = { 4096, 4096 };
		setrlimit(RLIMIT_FSIZE, &rl);
		aio_context_t ctx = 0;
		if (fd < 0 || setup(8, &ctx) != 0)
			_exit(2);
		static char buf[8192] __attribute__((aligned(4096)));
		memset(buf, 'x', sizeof buf);
		struct iocb cb = { 0 };
		struct iocb *p = &cb;
		cb.aio_lio_opcode = IOCB_CMD_PWRITE;
		cb.aio_fildes = fd;
		cb.aio_buf = (uintptr_t)buf;
		cb.aio_nbytes = len;
		cb.aio_offset = off;
		cb.aio_rw_flags = flags;
		if (direct) {
			/* A block below the limit first, as a program writing a
			 * file in order does. */
			struct iocb first = cb;
			struct iocb *fp = &first;
			first.aio_offset = 0;
			struct io_event fe;
			struct timespec ft = { 5, 0 };
			if (submit(ctx, 1, &fp) != 1 || getevents(ctx, 1, 1, &fe, &ft) != 1 || fe.res != (long)len)
				_exit(4);
		}
		long r = submit(ctx, 1, &p);
		struct io_event e = { 0 };
		struct timespec t = { 5, 0 };
		long g = r == 1 ? getevents(ctx, 1, 1, &e, &t) : 0;
		printf("%s: submit %s, event %s, res %s, handler ran %d time(s)%s, size %lld\n", tag, negret(r),
		       negret(g), negret((long)e.res), (int)xf_hits,
		       xf_hits ? (xf_tid == (pid_t)syscall(SYS_gettid) ? " in the submitting thread" : " in another thread")
			       : "",
		       (long long)lseek(fd, 0, SEEK_END));
		fflush(stdout);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st))
		printf("%s: child ended by signal %d\n", tag, WTERMSIG(st));
	else
		printf("%s: child exited %d\n", tag, WEXITSTATUS(st));
}

/* `xf_child` on a new, empty file. */
static void xf_child(const char *tag, int flags, long long off, size_t len, int handler, int direct)
{
	xf_child_in(tag, flags, off, len, handler, direct, 0);
}

static void xfsz(void)
{
	/* Made here, so that the parent's cleanup removes it. */
	close(tmpfile_open("xfsz.dat", O_RDWR));
	xf_child("past the limit", 0, 4096, 4096, 0, 0);
	xf_child("past the limit, RWF_NOSIGNAL", RWF_NOSIGNAL, 4096, 4096, 0, 0);
	xf_child("past the limit, handler", 0, 4096, 4096, 1, 0);
	xf_child("past the limit, RWF_NOSIGNAL, handler", RWF_NOSIGNAL, 4096, 4096, 1, 0);
	xf_child("across the limit", 0, 0, 8192, 0, 0);
	xf_child("across the limit, RWF_NOSIGNAL", RWF_NOSIGNAL, 0, 8192, 0, 0);
	xf_child("past the limit, O_DIRECT", 0, 4096, 4096, 0, 1);
	xf_child("past the limit, O_DIRECT, handler", 0, 4096, 4096, 1, 1);
	/* Inside a file already longer than the limit: the write starts past
	 * the limit all the same. */
	xf_child_in("inside a longer file, past the limit, handler", 0, 8192, 4096, 1, 0, 16384);
	xf_child_in("inside a longer file, past the limit, O_DIRECT, handler", 0, 8192, 4096, 1, 1, 16384);
	xf_child_in("inside a longer file, past the limit, O_DIRECT", 0, 8192, 4096, 0, 1, 16384);
}

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

/* The reentry mode: its requests, one slot each, and what came back. The
 * handler and the thread it interrupts both count events, so every update is
 * a single atomic instruction. */
#define RE_SLOTS 128
static struct iocb re_cb[RE_SLOTS];
static int re_busy[RE_SLOTS];
static long re_accepted, re_events, re_wrong;
static aio_context_t re_ctx;

static void re_event(const struct io_event *e)
{
	uint64_t i = e->data;
	if (i >= RE_SLOTS || e->obj != (uintptr_t)&re_cb[i] || !__atomic_exchange_n(&re_busy[i], 0, __ATOMIC_SEQ_CST))
		__atomic_fetch_add(&re_wrong, 1, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_add(&re_events, 1, __ATOMIC_SEQ_CST);
}

static void on_alrm_reap(int s)
{
	(void)s;
	int saved = errno;
	struct io_event ev[8];
	struct timespec t = { 0, 50000 };
	long n = pgetevents(re_ctx, 1, 8, ev, &t, 1);
	for (long k = 0; k < n; k++)
		re_event(&ev[k]);
	errno = saved;
}

static void *re_watchdog(void *a)
{
	(void)a;
	sleep(30);
	_exit(3);
	return NULL;
}

static void set_timer(long usec)
{
	struct itimerval it = { { 0, usec }, { 0, usec } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void reentry(void)
{
	/* POLLs of three kinds: of a pipe's write end (ready), of a pipe
	 * holding a byte (ready), of an empty pipe (pending until cancelled). */
	int pw[2], pr[2], pe[2];
	if (pipe(pw) || pipe(pr) || pipe(pe) || write(pr[1], "x", 1) != 1)
		exit(2);
	const int poll_fd[3] = { pw[1], pr[0], pe[0] };
	const int poll_ev[3] = { POLLOUT, POLLIN, POLLIN };
	printf("setup = %s\n", negret(setup(256, &re_ctx)));
	sigset_t alrm, old;
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &alrm, &old);
	pthread_t wd;
	pthread_create(&wd, NULL, re_watchdog, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_alrm_reap;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	set_timer(200);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long loops = 0, kind = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > 1000000000L)
			break;
		loops++;
		struct iocb *batch[8];
		int n = 0;
		for (int i = 0; i < RE_SLOTS && n < 8; i++) {
			if (__atomic_load_n(&re_busy[i], __ATOMIC_SEQ_CST))
				continue;
			memset(&re_cb[i], 0, sizeof re_cb[i]);
			re_cb[i].aio_lio_opcode = IOCB_CMD_POLL;
			re_cb[i].aio_fildes = poll_fd[kind % 3];
			re_cb[i].aio_buf = poll_ev[kind % 3];
			kind++;
			re_cb[i].aio_data = i;
			__atomic_store_n(&re_busy[i], 1, __ATOMIC_SEQ_CST);
			batch[n++] = &re_cb[i];
		}
		long r = n ? submit(re_ctx, n, batch) : 0;
		for (long j = r > 0 ? r : 0; j < n; j++)
			__atomic_store_n(&re_busy[batch[j] - re_cb], 0, __ATOMIC_SEQ_CST);
		if (r > 0)
			__atomic_fetch_add(&re_accepted, r, __ATOMIC_SEQ_CST);
		if (loops % 50 == 0)
			for (int i = 0; i < RE_SLOTS; i++)
				if (__atomic_load_n(&re_busy[i], __ATOMIC_SEQ_CST)) {
					struct io_event e;
					if (sc(syscall(SYS_io_cancel, re_ctx, &re_cb[i], &e)) == 0)
						re_event(&e);
				}
		struct io_event ev[16];
		struct timespec t = { 0, 200000 };
		long got = getevents(re_ctx, 1, 16, ev, &t);
		for (long k = 0; k < got; k++)
			re_event(&ev[k]);
	}
	set_timer(0);
	/* What is still pending: cancelled, then reaped. */
	for (int i = 0; i < RE_SLOTS; i++)
		if (__atomic_load_n(&re_busy[i], __ATOMIC_SEQ_CST)) {
			struct io_event e;
			if (sc(syscall(SYS_io_cancel, re_ctx, &re_cb[i], &e)) == 0)
				re_event(&e);
		}
	for (int tries = 0; re_events < re_accepted && tries < 100; tries++) {
		struct io_event ev[16];
		struct timespec t = { 0, 20000000 };
		long got = getevents(re_ctx, 1, 16, ev, &t);
		for (long k = 0; k < got; k++)
			re_event(&ev[k]);
	}
	printf("the main thread looped: %d\n", loops > 0);
	printf("every POLL accepted came back once: %d (wrong or repeated events: %ld)\n",
	       re_accepted > 0 && re_events == re_accepted, re_wrong);
	for (int k = 0; k < 2; k++) {
		close(pw[k]);
		close(pr[k]);
		close(pe[k]);
	}
}

/* The jumpwait modes: a POLL of jw_pipe, then reads of jw_fd, on jw_ctx. */
static aio_context_t jw_ctx;
static int jw_pipe[2];
static struct iocb jw_cb;
static int jw_fd;
static char *jw_buf;
static sigjmp_buf jw_jump;

static void jw_alarm(int s)
{
	(void)s;
	siglongjmp(jw_jump, 1);
}

static long jw_submit_poll(void)
{
	memset(&jw_cb, 0, sizeof jw_cb);
	jw_cb.aio_lio_opcode = IOCB_CMD_POLL;
	jw_cb.aio_fildes = jw_pipe[0];
	jw_cb.aio_buf = POLLIN;
	jw_cb.aio_data = 7;
	struct iocb *p = &jw_cb;
	return submit(jw_ctx, 1, &p);
}

/* Ten O_DIRECT reads, each waited for; counts the waits that took less than
 * 25 ms (a read here takes well under 1 ms). */
static void *jw_waiter(void *arg)
{
	long *prompt = arg;
	*prompt = 0;
	for (int round = 0; round < 10; round++) {
		struct iocb cb = { 0 };
		struct iocb *p = &cb;
		cb.aio_lio_opcode = IOCB_CMD_PREAD;
		cb.aio_fildes = jw_fd;
		cb.aio_buf = (uintptr_t)jw_buf;
		cb.aio_nbytes = 4096;
		cb.aio_offset = 4096 * (round % 16);
		cb.aio_data = 9;
		double t0 = now_ms();
		if (submit(jw_ctx, 1, &p) != 1)
			return NULL;
		struct io_event e;
		long r = getevents(jw_ctx, 1, 1, &e, NULL);
		double took = now_ms() - t0;
		if (r != 1 || e.data != 9 || e.res != 4096)
			return NULL;
		if (took < 25.0)
			(*prompt)++;
	}
	return NULL;
}

static void jumpwait(int other)
{
	if (pipe(jw_pipe) != 0)
		return;
	jw_fd = tmpfile_open("direct.dat", O_RDWR | O_TRUNC | O_DIRECT);
	if (posix_memalign((void **)&jw_buf, 4096, 16 * 4096) != 0)
		return;
	memset(jw_buf, 0x5a, 16 * 4096);
	if (pwrite(jw_fd, jw_buf, 16 * 4096, 0) != 16 * 4096 || fsync(jw_fd) != 0)
		return;
	printf("setup = %s\n", negret(setup(8, &jw_ctx)));
	printf("submit(POLL) = %s\n", negret(jw_submit_poll()));
	struct sigaction sa = { 0 };
	sa.sa_handler = jw_alarm;
	sigaction(SIGALRM, &sa, NULL);
	int jumped = 0;
	if (!sigsetjmp(jw_jump, 1)) {
		set_timer(20000);
		struct io_event e[2];
		getevents(jw_ctx, 2, 2, e, NULL);
	} else {
		jumped = 1;
	}
	set_timer(0);
	printf("the handler jumped out of io_getevents: %d\n", jumped);
	/* The first POLL becomes ready and is reaped. */
	if (write(jw_pipe[1], "x", 1) != 1)
		return;
	struct io_event e;
	struct timespec t = { 10, 0 };
	long r = getevents(jw_ctx, 1, 1, &e, &t);
	char c;
	printf("first POLL = %s res=%lld, read %d\n", negret(r), r == 1 ? (long long)e.res : 0LL,
	       (int)read(jw_pipe[0], &c, 1));
	long prompt = -1;
	if (other) {
		pthread_t x;
		pthread_create(&x, NULL, jw_waiter, &prompt);
		pthread_join(x, NULL);
	} else {
		jw_waiter(&prompt);
	}
	printf("waits ended when their event came, in at least 8 of 10 rounds: %d\n", prompt >= 8);
	if (prompt < 8)
		fprintf(stderr, "prompt rounds: %ld of 10\n", prompt);
}

/* The actions mode. */
static volatile sig_atomic_t act_h1, act_h2;

static void act_one(int s)
{
	(void)s;
	act_h1++;
}

static void act_two(int s)
{
	(void)s;
	act_h2++;
}

static void act_info(int s, siginfo_t *i, void *u)
{
	(void)s;
	(void)i;
	(void)u;
	act_h2++;
}

static void show_action(const char *tag, int sig)
{
	struct sigaction o;
	sigaction(sig, NULL, &o);
	const char *h = o.sa_handler == SIG_DFL   ? "SIG_DFL"
			: o.sa_handler == SIG_IGN ? "SIG_IGN"
			: o.sa_handler == act_one ? "act_one"
			: o.sa_handler == act_two ? "act_two"
			: (void *)o.sa_sigaction == (void *)act_info ? "act_info"
								      : "other";
	printf("%s: handler %s flags %#x\n", tag, h, (unsigned)o.sa_flags);
}

static void actions(void)
{
	printf("signal(USR1, act_one) old is SIG_DFL: %d\n", signal(SIGUSR1, act_one) == SIG_DFL);
	show_action("after signal", SIGUSR1);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	void (*old)(int) = sigset(SIGUSR1, act_two);
#pragma GCC diagnostic pop
	printf("sigset(USR1, act_two) returned act_one: %d\n", old == act_one);
	raise(SIGUSR1);
	printf("after raise: one %d two %d\n", (int)act_h1, (int)act_h2);
	printf("signal(USR1, old) returned act_two: %d\n", signal(SIGUSR1, old) == act_two);
	raise(SIGUSR1);
	printf("after raise: one %d two %d\n", (int)act_h1, (int)act_h2);
	show_action("after putting back", SIGUSR1);
	struct sigaction a = { 0 };
	a.sa_sigaction = act_info;
	a.sa_flags = SA_SIGINFO | SA_RESETHAND | 0x400;
	printf("sigaction(USR2, SA_SIGINFO|SA_RESETHAND|0x400) = %d\n", sigaction(SIGUSR2, &a, NULL));
	show_action("USR2", SIGUSR2);
	raise(SIGUSR2);
	printf("after raise: two %d\n", (int)act_h2);
	show_action("USR2 after its handler ran once", SIGUSR2);
	sysv_signal(SIGHUP, act_one);
	show_action("after sysv_signal", SIGHUP);
	errno = 0;
	int is_err = signal(SIGUSR1, SIG_ERR) == SIG_ERR;
	printf("signal(USR1, SIG_ERR) is SIG_ERR: %d, errno %s\n", is_err, ename(errno));
	show_action("USR1 still", SIGUSR1);
	errno = 0;
	int r0 = sigaction(0, &a, NULL);
	printf("sigaction(0) = %d errno %s\n", r0, ename(errno));
	errno = 0;
	int rk = sigaction(SIGKILL, &a, NULL);
	printf("sigaction(SIGKILL) = %d errno %s\n", rk, ename(errno));
	signal(SIGUSR1, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* The faults mode. */
static volatile sig_atomic_t fa_hits;
static volatile int fa_code;

static void fa_info(int s, siginfo_t *i, void *u)
{
	(void)s;
	(void)u;
	fa_hits++;
	fa_code = i->si_code;
}

static void fa_show(const char *tag, int sig)
{
	struct sigaction o;
	sigaction(sig, NULL, &o);
	const char *h = o.sa_handler == SIG_DFL				? "SIG_DFL"
			: o.sa_handler == SIG_IGN			? "SIG_IGN"
			: (void *)o.sa_sigaction == (void *)fa_info ? "fa_info"
								      : "other";
	unsigned long mask;
	memcpy(&mask, &o.sa_mask, sizeof mask);
	printf("%s: handler %s flags %#x mask %#lx\n", tag, h, (unsigned)o.sa_flags, mask);
}

/* A child that sends itself `sig` (no core file): how it ended. */
static void fa_child_kill(aio_context_t ctx, int sig)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit no = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no);
		kill(getpid(), sig);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("child sent itself %s: %s %d\n", strsignal(sig), WIFSIGNALED(st) ? "killed by signal" : "exit",
	       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	(void)ctx;
}

static void faults_mode(aio_context_t *ctx, int fd)
{
	fa_show("SEGV before setup", SIGSEGV);
	struct sigaction a = { 0 };
	a.sa_handler = SIG_IGN;
	sigaction(SIGBUS, &a, NULL);
	printf("setup = %s\n", negret(setup(8, ctx)));
	/* A bad pointer: uaio's handler is in place from here on. */
	printf("submit(bad array) = %s\n", negret(submit(*ctx, 1, (struct iocb **)16)));
	fa_show("SEGV after setup", SIGSEGV);
	fa_show("BUS after setup", SIGBUS);
	kill(getpid(), SIGBUS);
	printf("SIGBUS sent while ignored: survived\n");
	fa_child_kill(*ctx, SIGSEGV);
	struct sigaction old;
	a.sa_handler = NULL;
	a.sa_sigaction = fa_info;
	a.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&a.sa_mask);
	sigaddset(&a.sa_mask, SIGUSR2);
	sigaction(SIGSEGV, &a, &old);
	printf("old SEGV handler was SIG_DFL: %d\n", old.sa_handler == SIG_DFL);
	fa_show("SEGV with a handler", SIGSEGV);
	kill(getpid(), SIGSEGV);
	printf("handler ran %d time(s), si_code SI_USER: %d\n", (int)fa_hits, fa_code == SI_USER);
	fa_show("SEGV after SA_RESETHAND fired", SIGSEGV);
	printf("submit(bad array) = %s\n", negret(submit(*ctx, 1, (struct iocb **)16)));
	printf("handler ran %d time(s)\n", (int)fa_hits);
	sigaction(SIGSEGV, &old, NULL);
	fa_show("SEGV put back", SIGSEGV);
	a.sa_handler = SIG_DFL;
	a.sa_flags = 0;
	sigaction(SIGBUS, &a, NULL);
	/* SIGFPE sent to the process, blocked in the program's only thread:
	 * it waits there for sigtimedwait (uaio's threads must not take it). */
	sigset_t fpe;
	sigemptyset(&fpe);
	sigaddset(&fpe, SIGFPE);
	sigprocmask(SIG_BLOCK, &fpe, NULL);
	kill(getpid(), SIGFPE);
	struct timespec two = { 2, 0 };
	int got = sigtimedwait(&fpe, NULL, &two);
	printf("sigtimedwait(SIGFPE) = %s\n", got == SIGFPE ? "SIGFPE" : ename(errno));
	sigprocmask(SIG_UNBLOCK, &fpe, NULL);
	one_read(*ctx, fd);
}

/* The faultmasks mode. */
static volatile sig_atomic_t fm_hits;
static aio_context_t fm_ctx;
static long fm_in_handler = 1;

static void fm_segv(int s)
{
	(void)s;
	fm_hits++;
	/* SIGSEGV is blocked here, as in any handler of it. */
	fm_in_handler = submit(fm_ctx, 1, (struct iocb **)16);
}

static void fm_child(const char *what, void (*body)(void))
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit no = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no);
		alarm(10);
		body();
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("%s: %s %d\n", what, WIFSIGNALED(st) ? "killed by signal" : "exit",
	       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void fm_real_fault(void)
{
	*unmapped = 1;
}

static void fm_raise_bus(void)
{
	raise(SIGBUS);
}

static void fm_show_ign(void)
{
	struct sigaction o;
	sigaction(SIGSEGV, NULL, &o);
	printf("after exec: SIGSEGV %s\n", o.sa_handler == SIG_IGN ? "SIG_IGN" : "not ignored");
}

static void faultmasks(aio_context_t *ctx, int fd, const char *self)
{
	sigset_t segv, pend;
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	sigprocmask(SIG_BLOCK, &segv, NULL);
	raise(SIGSEGV);
	printf("setup = %s\n", negret(setup(8, ctx)));
	fm_ctx = *ctx;
	printf("submit(bad array) = %s\n", negret(submit(*ctx, 1, (struct iocb **)16)));
	one_read(*ctx, fd);
	sigpending(&pend);
	printf("SIGSEGV still pending: %d\n", sigismember(&pend, SIGSEGV));
	int got = 0;
	sigwait(&segv, &got);
	printf("sigwait got %s\n", got == SIGSEGV ? "SIGSEGV" : "other");
	sigprocmask(SIG_UNBLOCK, &segv, NULL);
	fm_child("child, real fault, default action", fm_real_fault);
	fm_child("child, SIGBUS raised, default action", fm_raise_bus);
	/* A handler on a small alternate stack it does not ask for. */
	static char small[2048];
	stack_t ss = { .ss_sp = small, .ss_size = sizeof small };
	sigaltstack(&ss, NULL);
	struct sigaction a = { 0 };
	a.sa_handler = fm_segv;
	sigaction(SIGSEGV, &a, NULL);
	printf("submit(bad array), small alternate stack = %s\n", negret(submit(*ctx, 1, (struct iocb **)16)));
	raise(SIGSEGV);
	printf("handler ran %d time(s); its submit(bad array) = %s\n", (int)fm_hits, negret(fm_in_handler));
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	a.sa_handler = SIG_IGN;
	sigaction(SIGSEGV, &a, NULL);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execl(self, self, "showign", (char *)NULL);
		_exit(3);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	a.sa_handler = SIG_DFL;
	sigaction(SIGSEGV, &a, NULL);
}

/* The jumpsubmit mode. */
#define JS_BATCH 16
#define JS_BATCHES 1500
static volatile sig_atomic_t js_inside;
static sigjmp_buf js_jump;

static void js_alarm(int s)
{
	(void)s;
	if (js_inside)
		siglongjmp(js_jump, 1);
}

/* Reaps every event there is (min_nr 0), or that comes within 1 s of the
 * last (min_nr 1), counting each write's; returns the wrong results. */
static int js_reap(long min_nr, unsigned char (*arrived)[JS_BATCH])
{
	struct io_event ev[64];
	struct timespec t = { min_nr ? 1 : 5, 0 };
	int wrong = 0;
	long got;
	while ((got = getevents(jw_ctx, min_nr, 64, ev, &t)) > 0)
		for (long e = 0; e < got; e++) {
			uint64_t d = ev[e].data;
			if (d >= (uint64_t)JS_BATCHES * JS_BATCH || ev[e].res != 4096)
				wrong++;
			else
				arrived[d / JS_BATCH][d % JS_BATCH]++;
		}
	if (got < 0 && got != -EINTR)
		wrong++;
	return wrong;
}

static void jumpsubmit(void)
{
	static struct iocb cbs[JS_BATCHES][JS_BATCH];
	static unsigned char arrived[JS_BATCHES][JS_BATCH];
	static char bufs[JS_BATCH][4096];
	int fd = tmpfile_open("jumpsubmit.dat", O_RDWR | O_TRUNC);
	printf("setup = %s\n", negret(setup(512, &jw_ctx)));
	struct sigaction sa = { 0 };
	sa.sa_handler = js_alarm;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	setitimer(ITIMER_REAL, &it, NULL);
	int jumps = 0, returned = 0, wrong = 0;
	for (int i = 0; i < JS_BATCHES; i++) {
		struct iocb *p[JS_BATCH];
		for (int k = 0; k < JS_BATCH; k++) {
			memset(&cbs[i][k], 0, sizeof cbs[i][k]);
			cbs[i][k].aio_lio_opcode = IOCB_CMD_PWRITE;
			cbs[i][k].aio_fildes = fd;
			/* Each write's 4 KiB tell its batch: block k holds batch i's
			 * bytes if batch i was the last to write it. */
			memset(bufs[k], 'A' + i % 26, sizeof bufs[k]);
			cbs[i][k].aio_buf = (uintptr_t)bufs[k];
			cbs[i][k].aio_nbytes = 4096;
			cbs[i][k].aio_offset = (long long)k * 4096;
			cbs[i][k].aio_data = (uint64_t)i * JS_BATCH + k;
			p[k] = &cbs[i][k];
		}
		if (sigsetjmp(js_jump, 1) == 0) {
			js_inside = 1;
			long r = submit(jw_ctx, JS_BATCH, p);
			js_inside = 0;
			if (r == JS_BATCH)
				returned++;
			else
				wrong++;
		} else {
			js_inside = 0;
			jumps++;
		}
		/* Every event so far (the writes are page-cache copies). */
		wrong += js_reap(0, arrived);
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	/* Late events, if any. */
	wrong += js_reap(1, arrived);
	int whole = 1, last = -1;
	for (int i = 0; i < JS_BATCHES; i++) {
		int n = 0;
		for (int k = 0; k < JS_BATCH; k++)
			n += arrived[i][k] == 1 ? 1 : (arrived[i][k] > 1 ? 100 : 0);
		if (n != 0 && n != JS_BATCH)
			whole = 0;
		if (n == JS_BATCH)
			last = i;
	}
	int content = last >= 0;
	for (int k = 0; content && k < JS_BATCH; k++) {
		char b[4096];
		content = pread(fd, b, sizeof b, (off_t)k * 4096) == (ssize_t)sizeof b && b[0] == 'A' + last % 26 &&
			  b[4095] == 'A' + last % 26;
	}
	printf("jumped out of io_submit at least 20 times: %d\n", jumps >= 20);
	printf("every batch came back whole or not at all, each write once: %d (wrong results: %d)\n", whole, wrong);
	printf("the file holds the last batch that came back: %d\n", content);
	if (jumps < 20 || !whole || !content)
		fprintf(stderr, "jumps %d, returned %d, wrong %d, last %d\n", jumps, returned, wrong, last);
	one_read(jw_ctx, fd);
	close(fd);
}

/* The state letter of the process `pid`'s first thread ('S', 'T', ...). */
static char state_of(pid_t pid)
{
	char p[64], b[512];
	snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
	int f = open(p, O_RDONLY);
	if (f < 0)
		return '?';
	ssize_t n = read(f, b, sizeof b - 1);
	close(f);
	if (n <= 0)
		return '?';
	b[n] = 0;
	char *q = strrchr(b, ')');
	return q && q[1] ? q[2] : '?';
}

/* Waits until the first thread of `pid` has been in state `want` for
 * 50 ms in a row (at most 10 s). */
static void await_state(pid_t pid, char want)
{
	for (int i = 0, run = 0; i < 1000 && run < 5; i++) {
		run = state_of(pid) == want ? run + 1 : 0;
		usleep(10000);
	}
}

/* stop-*: a POLL on an empty pipe waited for while the process is
 * stopped and continued, with no handler. */
static void stop_wait(aio_context_t *ctx, const char *how)
{
	int p[2];
	if (pipe(p) != 0)
		exit(2);
	printf("setup = %s\n", negret(setup(8, ctx)));
	struct iocb cb = { 0 };
	struct iocb *cbp = &cb;
	cb.aio_lio_opcode = IOCB_CMD_POLL;
	cb.aio_fildes = p[0];
	cb.aio_buf = POLLIN;
	cb.aio_data = 7;
	printf("submit(POLL) = %s\n", negret(submit(*ctx, 1, &cbp)));
	pid_t me = getpid();
	int timed = !strcmp(how, "pgetevents-timeout");
	struct timespec second = { 1, 0 };
	pid_t child = fork();
	if (child == 0) {
		await_state(me, 'S');
		kill(me, SIGSTOP);
		await_state(me, 'T');
		if (timed)
			usleep(1100000);
		kill(me, SIGCONT);
		usleep(300000);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		_exit(0);
	}
	struct io_event e = { 0 };
	long r;
	if (!strcmp(how, "getevents")) {
		r = getevents(*ctx, 1, 1, &e, NULL);
	} else {
		r = sc(pgetevents(*ctx, 1, 1, &e, timed ? &second : NULL, !strcmp(how, "pgetevents-mask")));
	}
	printf("io_%s across a stop and continue = %s", how, negret(r));
	if (r == 1)
		printf(" (data %llu res %lld)", (unsigned long long)e.data, (long long)e.res);
	printf("\n");
	int st;
	waitpid(child, &st, 0);
	if (r != 1) {
		struct timespec t = { 5, 0 };
		r = getevents(*ctx, 1, 1, &e, &t);
		printf("getevents after = %s (data %llu res %lld)\n", negret(r), (unsigned long long)e.data,
		       (long long)e.res);
	}
}

/* The jumpdestroy and destroyinhandler modes. */
static sigjmp_buf jd_jump;
static aio_context_t jd_ctx;
static volatile long jd_destroyed;
static volatile double jd_took;

static void jd_jump_out(int s)
{
	(void)s;
	siglongjmp(jd_jump, 1);
}

static void jd_destroy(int s)
{
	(void)s;
	double t0 = now_ms();
	jd_destroyed = sc(syscall(SYS_io_destroy, jd_ctx));
	jd_took = now_ms() - t0;
}

/* Submits `cb`, made a POLL for input of `fd` with `data`, to jd_ctx. */
static long submit_poll(struct iocb *cb, int fd, unsigned long long data)
{
	struct iocb *q = cb;
	memset(cb, 0, sizeof *cb);
	cb->aio_lio_opcode = IOCB_CMD_POLL;
	cb->aio_fildes = fd;
	cb->aio_buf = POLLIN;
	cb->aio_data = data;
	return submit(jd_ctx, 1, &q);
}

/* Counts a destroy that took `took` ms in `prompt` if it took less than
 * 0.3 s, and says so on stderr otherwise. */
static void tally_destroy(int round, double took, int *prompt)
{
	if (took < 300.0)
		(*prompt)++;
	else
		fprintf(stderr, "round %d: destroy took %.0f ms\n", round, took);
}

/* A context with one POLL pending on the empty end of `p`. */
static long jd_start(int p[2])
{
	jd_ctx = 0;
	if (pipe(p) != 0 || setup(4, &jd_ctx) != 0)
		return -1;
	struct iocb cb;
	return submit_poll(&cb, p[0], 5);
}

static void jumpdestroy(int in_handler)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = in_handler ? jd_destroy : jd_jump_out;
	sigaction(SIGALRM, &sa, NULL);
	int prompt = 0;
	for (int round = 0; round < 12; round++) {
		int p[2];
		printf("round %d: submit(POLL) = %s\n", round, negret(jd_start(p)));
		struct io_event e[2];
		struct itimerval it = { { 0, 0 }, { 0, 20000 } };
		jd_destroyed = 1;
		if (in_handler) {
			setitimer(ITIMER_REAL, &it, NULL);
			long r = getevents(jd_ctx, 1, 2, e, NULL);
			printf("round %d: interrupted getevents = %s, destroy in the handler = %s\n", round, negret(r),
			       negret(jd_destroyed));
			printf("round %d: getevents after = %s\n", round, negret(getevents(jd_ctx, 0, 2, e, NULL)));
		} else {
			int jumped = 0;
			if (!sigsetjmp(jd_jump, 1)) {
				setitimer(ITIMER_REAL, &it, NULL);
				if (round % 2)
					pgetevents(jd_ctx, 1, 2, e, NULL, 0);
				else
					getevents(jd_ctx, 1, 2, e, NULL);
			} else {
				jumped = 1;
			}
			double t0 = now_ms();
			jd_destroyed = sc(syscall(SYS_io_destroy, jd_ctx));
			jd_took = now_ms() - t0;
			printf("round %d: jumped out %d, destroy = %s\n", round, jumped, negret(jd_destroyed));
		}
		tally_destroy(round, jd_took, &prompt);
		close(p[0]);
		close(p[1]);
	}
	printf("destroys returned within 0.3 s in at least 10 of 12 rounds: %d\n", prompt >= 10);
}

/* The jumpdestroy-other and destroy-during-handler modes: the wait is
 * another thread's. */
static volatile int jo_waiting, jo_jumped, jo_in_handler, jo_release;

static void jo_handler(int s)
{
	(void)s;
	jo_in_handler = 1;
	while (!jo_release)
		usleep(1000);
}

static void *jo_waiter(void *arg)
{
	int jump = *(int *)arg;
	struct io_event e[2];
	if (jump) {
		if (!sigsetjmp(jd_jump, 1)) {
			jo_waiting = 1;
			getevents(jd_ctx, 1, 2, e, NULL);
		}
		jo_jumped = 1;
	} else {
		jo_waiting = 1;
		long r = getevents(jd_ctx, 1, 2, e, NULL);
		printf("interrupted getevents = %s\n", negret(r));
	}
	while (!jo_release)
		usleep(1000);
	return NULL;
}

static void destroy_other(int jump)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = jump ? jd_jump_out : jo_handler;
	sigaction(SIGUSR1, &sa, NULL);
	int prompt = 0;
	for (int round = 0; round < 12; round++) {
		int p[2];
		printf("round %d: submit(POLL) = %s\n", round, negret(jd_start(p)));
		jo_waiting = jo_jumped = jo_in_handler = jo_release = 0;
		pthread_t t;
		pthread_create(&t, NULL, jo_waiter, &jump);
		while (!jo_waiting)
			usleep(1000);
		usleep(20000);
		pthread_kill(t, SIGUSR1);
		while (!(jump ? jo_jumped : jo_in_handler))
			usleep(1000);
		double t0 = now_ms();
		long d = sc(syscall(SYS_io_destroy, jd_ctx));
		double took = now_ms() - t0;
		jo_release = 1;
		pthread_join(t, NULL);
		printf("round %d: destroy = %s\n", round, negret(d));
		tally_destroy(round, took, &prompt);
		close(p[0]);
		close(p[1]);
	}
	printf("destroys returned within 0.3 s in at least 10 of 12 rounds: %d\n", prompt >= 10);
}

/* The event-during-handler and submit-in-handler modes. */
static int eh_pipe[2];
static struct iocb eh_cb;

/* Submits a POLL (data 42) of the pipe's read end; a failure is noted. */
static void eh_submit(void)
{
	if (submit_poll(&eh_cb, eh_pipe[0], 42) != 1)
		jo_jumped = -1;
}

static void eh_submit_ready(void)
{
	eh_submit();
	if (write(eh_pipe[1], "x", 1) != 1)
		jo_jumped = -1;
}

static void eh_in_handler(int s)
{
	(void)s;
	eh_submit_ready();
}

static void eh_ready_in_handler(int s)
{
	(void)s;
	if (write(eh_pipe[1], "x", 1) != 1)
		jo_jumped = -1;
}

static void *eh_waiter(void *arg)
{
	(void)arg;
	struct io_event e[2];
	jo_waiting = 1;
	long r = getevents(jd_ctx, 1, 2, e, NULL);
	printf("interrupted getevents = %s\n", negret(r));
	struct timespec t = { 5, 0 };
	r = getevents(jd_ctx, 1, 2, e, &t);
	printf("next getevents = %s (data %llu res %lld)\n", negret(r), r > 0 ? (unsigned long long)e[0].data : 0ULL,
	       r > 0 ? (long long)e[0].res : 0LL);
	return NULL;
}

/* own: 0, another thread submits and readies the POLL during the handler;
 * 1, the handler does; 2, the POLL is submitted before and the handler
 * readies it. */
static void event_during_handler(int own)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = own == 2 ? eh_ready_in_handler : own ? eh_in_handler : jo_handler;
	sigaction(own ? SIGALRM : SIGUSR1, &sa, NULL);
	for (int round = 0; round < 3; round++) {
		jd_ctx = 0;
		jo_waiting = jo_jumped = jo_in_handler = jo_release = 0;
		if (pipe(eh_pipe) != 0 || setup(4, &jd_ctx) != 0)
			return;
		printf("round %d\n", round);
		if (own == 2)
			eh_submit();
		if (own) {
			struct itimerval it = { { 0, 0 }, { 0, 20000 } };
			setitimer(ITIMER_REAL, &it, NULL);
			eh_waiter(NULL);
		} else {
			pthread_t t;
			pthread_create(&t, NULL, eh_waiter, NULL);
			while (!jo_waiting)
				usleep(1000);
			usleep(20000);
			pthread_kill(t, SIGUSR1);
			while (!jo_in_handler)
				usleep(1000);
			eh_submit_ready();
			usleep(20000);
			jo_release = 1;
			pthread_join(t, NULL);
		}
		printf("submitted and made ready: %d\n", jo_jumped == 0);
		printf("destroy = %s\n", negret(sc(syscall(SYS_io_destroy, jd_ctx))));
		close(eh_pipe[0]);
		close(eh_pipe[1]);
	}
}

/* The jumpmany mode: a handler jumps out of a wait on each of 12
 * contexts, then the thread destroys them all. */
static void jumpmany(void)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = jd_jump_out;
	sigaction(SIGALRM, &sa, NULL);
	aio_context_t ctxs[12];
	int pipes[12][2];
	for (int i = 0; i < 12; i++) {
		long r = jd_start(pipes[i]);
		ctxs[i] = jd_ctx;
		int jumped = 0;
		if (!sigsetjmp(jd_jump, 1)) {
			struct itimerval it = { { 0, 0 }, { 0, 20000 } };
			setitimer(ITIMER_REAL, &it, NULL);
			struct io_event e[2];
			getevents(jd_ctx, 1, 2, e, NULL);
		} else {
			jumped = 1;
		}
		printf("context %d: submit(POLL) = %s, jumped out %d\n", i, negret(r), jumped);
	}
	int prompt = 0;
	for (int i = 0; i < 12; i++) {
		double t0 = now_ms();
		long d = sc(syscall(SYS_io_destroy, ctxs[i]));
		double took = now_ms() - t0;
		printf("context %d: destroy = %s\n", i, negret(d));
		if (took < 300.0)
			prompt++;
		else
			fprintf(stderr, "context %d: destroy took %.0f ms\n", i, took);
		close(pipes[i][0]);
		close(pipes[i][1]);
	}
	printf("destroys returned within 0.3 s for at least 10 of 12 contexts: %d\n", prompt >= 10);
}

/* teardown: see the top. */
static void teardown(int fd)
{
	int ep = epoll_create1(0);
	int after_setup = 0, after_destroy = 0, failed = 0;
	for (int i = 0; i < 20; i++) {
		aio_context_t c = 0;
		struct epoll_event ev;
		if (setup(8u << (i % 3), &c) != 0) {
			failed++;
			continue;
		}
		if (epoll_wait(ep, &ev, 1, 20) < 0 && errno == EINTR)
			after_setup++;
		static char buf[8];
		struct iocb cb = { 0 }, *p = &cb;
		struct io_event e;
		struct timespec t = { 5, 0 };
		cb.aio_lio_opcode = IOCB_CMD_PREAD;
		cb.aio_fildes = fd;
		cb.aio_buf = (uintptr_t)buf;
		cb.aio_nbytes = 5;
		if (submit(c, 1, &p) != 1 || getevents(c, 1, 1, &e, &t) != 1 || e.res != 5)
			failed++;
		if (sc(syscall(SYS_io_destroy, c)) != 0)
			failed++;
		if (epoll_wait(ep, &ev, 1, 20) < 0 && errno == EINTR)
			after_destroy++;
	}
	printf("epoll_wait ended by EINTR: after io_setup %d, after io_destroy %d; calls failed %d\n", after_setup,
	       after_destroy, failed);
	close(ep);
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

	if (!strcmp(mode, "teardown")) {
		teardown(fd);
	} else if (!strcmp(mode, "longjmp")) {
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
		struct io_event e;
		struct timespec z = { 0, 0 };
		long r = sc(pgetevents(ctx, 1, 1, &e, &z, 1));
		printf("io_pgetevents(zero timeout, signal pending) = %s, handler ran %d time(s)\n", negret(r),
		       (int)usr1);
		sigprocmask(SIG_BLOCK, NULL, &after);
		printf("SIGUSR1 blocked again after: %d\n", sigismember(&after, SIGUSR1));
		one_read(ctx, fd);
	} else if (!strncmp(mode, "stop-", 5)) {
		stop_wait(&ctx, mode + 5);
		one_read(ctx, fd);
	} else if (!strcmp(mode, "xfsz")) {
		xfsz();
		printf("setup = %s\n", negret(setup(8, &ctx)));
		one_read(ctx, fd);
	} else if (!strcmp(mode, "reentry")) {
		reentry();
		ctx = re_ctx;
	} else if (!strcmp(mode, "actions")) {
		actions();
		printf("setup = %s\n", negret(setup(8, &ctx)));
		one_read(ctx, fd);
	} else if (!strcmp(mode, "showign")) {
		fm_show_ign();
		return 0;
	} else if (!strcmp(mode, "faultmasks")) {
		faultmasks(&ctx, fd, argv[0]);
	} else if (!strcmp(mode, "faults")) {
		faults_mode(&ctx, fd);
	} else if (!strcmp(mode, "jumpsubmit")) {
		jumpsubmit();
		ctx = jw_ctx;
	} else if (!strcmp(mode, "jumpmany")) {
		jumpmany();
	} else if (!strcmp(mode, "event-during-handler") || !strcmp(mode, "submit-in-handler") ||
		   !strcmp(mode, "complete-in-handler")) {
		event_during_handler(!strcmp(mode, "complete-in-handler") ? 2 : !strcmp(mode, "submit-in-handler"));
	} else if (!strcmp(mode, "jumpdestroy-other") || !strcmp(mode, "destroy-during-handler")) {
		destroy_other(!strcmp(mode, "jumpdestroy-other"));
	} else if (!strcmp(mode, "jumpdestroy") || !strcmp(mode, "destroyinhandler")) {
		jumpdestroy(!strcmp(mode, "destroyinhandler"));
	} else if (!strcmp(mode, "jumpwait-same") || !strcmp(mode, "jumpwait-other")) {
		jumpwait(!strcmp(mode, "jumpwait-other"));
		ctx = jw_ctx;
	} else {
		printf("unknown mode\n");
		return 2;
	}
	printf("destroy = %s\n", negret(sc(syscall(SYS_io_destroy, ctx))));
	close(fd);
	rm_tmpdir();
	return 0;
}
