/* Leaving a process with AIO requests still in flight. Every mode must end
 * with status 0 and print the same lines on kernel AIO and on uaio. The
 * process that leaves is a child; its parent then reports its exit status
 * and how many of the written blocks are on the file (the kernel lets
 * requests in flight finish before a process is gone).
 *
 *   exit_inflight exit         POLLs pending on an empty pipe + a queue of
 *                              large file writes and syncs, then exit(0)
 *   exit_inflight exec [FN]    the same with the writes O_DIRECT, then
 *                              /bin/true through FN: execv (the default),
 *                              execl, execle, execlp, execvp, execvpe,
 *                              execve, fexecve, execveat, or syscall
 *                              (syscall(SYS_execve, ...)); the kernel lets
 *                              the writes in flight finish first
 *   exit_inflight exec-fails   the same, then an execv that fails
 *                              (ENOENT): the process goes on and reaps
 *                              every event
 *   exit_inflight exit-waiter  the same, with a second thread blocked in
 *                              io_getevents on the context, then exit(0)
 *   exit_inflight return       the same, returning from main without
 *                              destroying the contexts
 *   exit_inflight _exit        the same with the writes O_DIRECT, then
 *                              _exit(0): no exit handler runs
 *   exit_inflight exit_group   the same, while the main thread sleeps in
 *                              io_getevents a second thread calls
 *                              syscall(SYS_exit_group, 0)
 *   exit_inflight handler-_exit  one thread submits O_DIRECT writes one by
 *                              one (none reaped) until, 20 ms in, a
 *                              SIGALRM handler calls _exit(0), most
 *                              likely while io_submit runs: every write
 *                              io_submit accepted must be on the file
 *   exit_inflight handler-exit  the same with exit(0) in the handler
 *   exit_inflight handler-malloc  the same with 48 O_DIRECT writes, then the
 *                              main thread allocates and frees memory in a
 *                              loop until a SIGALRM handler calls _exit(0)
 *                              (most likely inside malloc or free): the
 *                              process must be gone promptly (no hang on
 *                              malloc's lock) with every write on the file
 *   exit_inflight pthread_exit  the same with the writes O_DIRECT and an
 *                              exit handler, then pthread_exit in main:
 *                              the process ends (exit(0), handlers run)
 *                              once its last thread has
 *   exit_inflight pthread_exit-last  the same, with a second thread that
 *                              returns 50 ms after main's pthread_exit
 *   exit_inflight pthread_exit-at-once  20 times: a child sets up a
 *                              context, submits one 1 MiB RWF_DSYNC
 *                              write, and calls pthread_exit in main at
 *                              once (uaio's threads may still be starting):
 *                              each child must end with status 0, its exit
 *                              handler run once and its write on the file
 *   exit_inflight pthread_exit-destroyer  60 times: a child submits a
 *                              POLL on an empty pipe,
 *                              starts a thread that destroys the context
 *                              and returns, and calls pthread_exit in main:
 *                              each child must run its exit handler once
 *   exit_inflight sys_exit     the same as pthread_exit, but main ends
 *                              with syscall(SYS_exit, 3), which the C
 *                              library does not see: the process ends
 *                              with status 3, its exit handler not run
 *   exit_inflight sys_exit-last  the same, with a second thread that ends
 *                              50 ms after main with syscall(SYS_exit, 0), the
 *                              last: status 0
 *   exit_inflight sys_exit-spawning  40 times: a child submits O_DIRECT
 *                              writes that extend a file, main ends with
 *                              syscall(SYS_exit, 3), and then a second
 *                              thread submits more such writes one by one
 *                              (the thread pool starts workers meanwhile)
 *                              and 30 ms later ends with
 *                              syscall(SYS_exit, 0), the last: status 0
 *                              and every write on the file
 *   exit_inflight left-reads   a thread submits 16 buffered reads of 256
 *                              KiB of a file not in the page cache and a
 *                              POLL of an empty pipe, then ends (main's
 *                              pthread_exit, which runs no thread-local
 *                              destructor; another thread's
 *                              syscall(SYS_exit); or a plain return);
 *                              another thread writes the pipe and reaps:
 *                              every read whole and right, the POLL 65
 *                              (before, on io_uring, io_uring ended the
 *                              requests of the thread that left: reads
 *                              -EFAULT, the POLL 0; black-box attack 27)
 *   exit_inflight destroy-exit  40 times: a child submits a 4 MiB O_DIRECT
 *                              write and an fsync, starts a thread that
 *                              destroys the context, and calls exit(0)
 *                              0-2 ms later (most likely while io_destroy
 *                              waits): each write must be on the file
 *   exit_inflight exit-busy    two threads keep submitting direct writes
 *                              (each keeping 32 or more in flight on its
 *                              own context) while the main thread calls
 *                              exit(0): the process must be gone promptly
 *                              and every write io_submit accepted must be
 *                              on the file
 *   exit_inflight kill-memory  20 times: a child opens a file of a memory
 *                              file system (tmpfs at /dev/shm, no swap)
 *                              O_DSYNC and O_DIRECT, submits a buffered
 *                              O_DSYNC write and 8 direct writes of 64 KiB
 *                              in one batch and kills itself with SIGKILL
 *                              as io_submit returns: the kernel copied
 *                              them inside io_submit, so all 9 must be on
 *                              the file
 *                              (skipped, saying why, where /dev/shm is not
 *                              tmpfs, refuses O_DIRECT, or swap is on)
 *   exit_inflight kill-durable  the writes the kernel finishes inside
 *                              io_submit while uaio by default would not
 *                              (UAIO_DURABLE_SUBMIT=1 is set; the kernel
 *                              ignores it), 10 times each: a buffered
 *                              write of 65,336 bytes at offset 100 of a
 *                              file not in the page cache, the same to a
 *                              file opened O_DSYNC, and an O_DIRECT write
 *                              of 64 KiB that extends its file; a child
 *                              submits one and kills itself with SIGKILL
 *                              as io_submit returns: each must be whole
 *                              on the file
 *
 * Build: gcc -O2 -Wall -pthread -o exit_inflight exit_inflight.c -laio */
#include "conform_common.h"

#include <libaio.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#define NPOLL 8
#define NWRITE 48
#define WSIZE (256 * 1024)

static struct iocb cb[NPOLL + NWRITE + 2];
static struct iocb *cbp[NPOLL + NWRITE + 2];
static io_context_t ctx_poll, ctx_write;

static void *group_exiter(void *a)
{
	(void)a;
	printf("syscall(SYS_exit_group, 0)\n");
	fflush(stdout);
	syscall(SYS_exit_group, 0);
	return NULL;
}

static void say_bye(void)
{
	printf("exit handler ran\n");
}

static void *last_thread(void *a)
{
	(void)a;
	sleep_ms(50);
	printf("the last thread returns\n");
	return NULL;
}

/* Waits until the first thread has ended (a zombie until the process
 * ends), so that the caller's own end comes after it whatever the
 * scheduler does: the process's exit status is that of its last thread. */
static void wait_for_first_thread_end(void)
{
	char path[64], stat[512];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
	for (;;) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
		if (f)
			fclose(f);
		stat[n] = 0;
		char *end = strrchr(stat, ')');
		if (!end || end[1] != ' ' || end[2] == 'Z' || end[2] == 'X')
			return;
		sleep_ms(1);
	}
}

/* The sys_exit-last child's second thread: ends with the raw system call,
 * which the C library does not see, 50 ms after the first thread. */
static void *last_raw_exit(void *a)
{
	(void)a;
	wait_for_first_thread_end();
	sleep_ms(50);
	printf("the last thread calls syscall(SYS_exit, 0)\n");
	syscall(SYS_exit, 0);
	return NULL;
}

static void *waiter(void *a)
{
	(void)a;
	struct io_event e[4];
	io_getevents(ctx_poll, 1, 4, e, NULL); /* never returns: nothing completes */
	return NULL;
}

#define BUSY_SLOTS (1 << 18)
#define BUSY_BS 4096

/* Shared with the parent: the next slot to write, and which slots'
 * writes io_submit accepted. */
struct busy {
	atomic_long next;
	char accepted[BUSY_SLOTS];
};
static struct busy *busy;
static int busy_fd;
static char *busy_buf;

static void *busy_writer(void *a)
{
	(void)a;
	io_context_t c = 0;
	if (io_setup(64, &c) != 0)
		return NULL;
	struct iocb cbs[8], *p[8];
	struct io_event ev[64];
	long in_flight = 0;
	for (;;) {
		long b = atomic_fetch_add(&busy->next, 8);
		if (b + 8 > BUSY_SLOTS)
			pause();
		for (int k = 0; k < 8; k++) {
			io_prep_pwrite(&cbs[k], busy_fd, busy_buf, BUSY_BS, (b + k) * (long long)BUSY_BS);
			p[k] = &cbs[k];
		}
		int r = io_submit(c, 8, p);
		for (int k = 0; k < r; k++)
			busy->accepted[b + k] = 1;
		if (r > 0)
			in_flight += r;
		int g = io_getevents(c, in_flight > 32 ? in_flight - 32 : 0, 64, ev, NULL);
		if (g > 0)
			in_flight -= g;
	}
	return NULL;
}

/* Waits up to 20 s for `child` to end (then kills it); whether it ended
 * by itself. */
static int reap_within_20s(pid_t child, int *status)
{
	for (int i = 0; i < 20000; i++) {
		if (waitpid(child, status, WNOHANG) == child)
			return 1;
		sleep_ms(1);
	}
	kill(child, SIGKILL);
	waitpid(child, status, 0);
	return 0;
}

/* Of the first `slots` slots of `bs` bytes, those whose write io_submit
 * accepted must hold busy_buf on the file: prints whether any was accepted
 * and how many are missing; returns the program's exit status. */
static int report_accepted(long slots, int bs)
{
	long accepted = 0, missing = 0;
	char *got;
	if (posix_memalign((void **)&got, 4096, bs) != 0)
		return 2;
	for (long i = 0; i < slots; i++) {
		if (!busy->accepted[i])
			continue;
		accepted++;
		if (pread(busy_fd, got, bs, i * (off_t)bs) != bs || memcmp(got, busy_buf, bs))
			missing++;
	}
	printf("writes accepted: %s; accepted writes missing from the file: %ld\n", accepted > 0 ? "some" : "none",
	       missing);
	return 0;
}

/* The exit-busy mode: returns the exit status of the program. */
static int exit_busy(void)
{
	busy = mmap(NULL, sizeof *busy, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	busy_fd = tmpfile_open("busy", O_RDWR | O_TRUNC | O_DIRECT);
	rm_tmpdir();
	if (posix_memalign((void **)&busy_buf, 4096, BUSY_BS) != 0)
		return 2;
	memset(busy_buf, 0x5a, BUSY_BS);
	pid_t child = fork();
	if (child == 0) {
		pthread_t t;
		for (int i = 0; i < 2; i++)
			pthread_create(&t, NULL, busy_writer, NULL);
		sleep_ms(1000);
		exit(0);
	}
	int status = 0, gone = reap_within_20s(child, &status);
	printf("the process was gone within 20 s of exit(): %d\n", gone);
	long n = atomic_load(&busy->next);
	return report_accepted(n < BUSY_SLOTS ? n : BUSY_SLOTS, BUSY_BS);
}

/* Replaces the process with /bin/true through the exec function `fn`;
 * returns only if that fails. */
static int exec_true(const char *fn)
{
	char *av[] = { "true", NULL };
	char *env[] = { "UAIO_EXEC_TEST=1", NULL };
	printf("%s /bin/true\n", fn);
	fflush(stdout);
	if (!strcmp(fn, "execv"))
		execv("/bin/true", av);
	else if (!strcmp(fn, "execl"))
		execl("/bin/true", "true", (char *)NULL);
	else if (!strcmp(fn, "execle"))
		execle("/bin/true", "true", (char *)NULL, env);
	else if (!strcmp(fn, "execlp"))
		execlp("true", "true", (char *)NULL);
	else if (!strcmp(fn, "execvp"))
		execvp("true", av);
	else if (!strcmp(fn, "execvpe"))
		execvpe("true", av, env);
	else if (!strcmp(fn, "execve"))
		execve("/bin/true", av, env);
	else if (!strcmp(fn, "fexecve")) {
		int t = open("/bin/true", O_RDONLY | O_CLOEXEC);
		fexecve(t, av, env);
	} else if (!strcmp(fn, "execveat"))
		execveat(AT_FDCWD, "/bin/true", av, env, 0);
	else if (!strcmp(fn, "syscall"))
		syscall(SYS_execve, "/bin/true", av, env);
	else
		errno = EINVAL;
	printf("%s failed: %s\n", fn, ename(errno));
	return 1;
}

static void alarm_exit(int sig)
{
	(void)sig;
	_exit(0);
}

/* The same with exit(), which is not async-signal-safe, but which programs
 * call from handlers: it must neither hang nor lose what the kernel keeps. */
static void alarm_full_exit(int sig)
{
	(void)sig;
	exit(0);
}

/* Runs `handler` on a SIGALRM 20 ms from now. */
static void alarm_in_20ms(void (*handler)(int))
{
	signal(SIGALRM, handler);
	struct itimerval it = { { 0, 0 }, { 0, 20000 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

/* The handler-_exit mode: returns the exit status of the program. */
static int handler_exit(void (*handler)(int))
{
	enum { SLOTS = 8192, BS = 16384 };
	busy = mmap(NULL, sizeof *busy, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	busy_fd = tmpfile_open("handler", O_RDWR | O_TRUNC | O_DIRECT);
	rm_tmpdir();
	if (posix_memalign((void **)&busy_buf, 4096, BS) != 0)
		return 2;
	memset(busy_buf, 0x6b, BS);
	pid_t child = fork();
	if (child == 0) {
		io_context_t c = 0;
		if (io_setup(SLOTS, &c) != 0)
			_exit(3);
		static struct iocb cbs[SLOTS];
		alarm_in_20ms(handler);
		for (long i = 0; i < SLOTS; i++) {
			struct iocb *p = &cbs[i];
			io_prep_pwrite(p, busy_fd, busy_buf, BS, i * (long long)BS);
			if (io_submit(c, 1, &p) == 1)
				busy->accepted[i] = 1;
		}
		for (;;)
			pause();
	}
	int status = 0, gone = reap_within_20s(child, &status);
	printf("the process was gone within 20 s: %d, exit status %d\n", gone,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
	return report_accepted(SLOTS, BS);
}

/* The handler-malloc mode: returns the exit status of the program. */
static int handler_malloc(void)
{
	enum { N = 48, BS = 256 * 1024 };
	int fd = tmpfile_open("malloc", O_RDWR | O_TRUNC | O_DIRECT);
	rm_tmpdir();
	char *buf;
	if (posix_memalign((void **)&buf, 4096, BS) != 0)
		return 2;
	memset(buf, 0x3c, BS);
	pid_t child = fork();
	if (child == 0) {
		io_context_t c = 0;
		if (io_setup(N, &c) != 0)
			_exit(3);
		static struct iocb cbs[N];
		struct iocb *p[N];
		for (int i = 0; i < N; i++) {
			io_prep_pwrite(&cbs[i], fd, buf, BS, i * (long long)BS);
			p[i] = &cbs[i];
		}
		if (io_submit(c, N, p) != N)
			_exit(4);
		alarm_in_20ms(alarm_exit);
		for (unsigned i = 0;; i++) {
			volatile char *m = malloc(1000 + (i % 61) * 1000);
			m[0] = 1;
			free((void *)m);
		}
	}
	int status = 0, gone = reap_within_20s(child, &status);
	printf("the process was gone within 20 s of the handler's _exit: %d, exit status %d\n", gone,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
	char *got;
	if (posix_memalign((void **)&got, 4096, BS) != 0)
		return 2;
	int blocks = 0;
	for (int i = 0; i < N; i++)
		blocks += pread(fd, got, BS, i * (off_t)BS) == BS && !memcmp(got, buf, BS);
	printf("blocks on the file after the child left: %d of %d\n", blocks, N);
	return 0;
}

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x2
#endif
#define AT_ONCE_RUNS 20
#define AT_ONCE_SIZE (1 << 20)
#define AT_ONCE_FD 100

/* The children's stream on AT_ONCE_FD: through stdio, as a program's
 * exit handler would print (a second exit running beside the first
 * flushes the stream a second time, or cuts the handler off). */
static FILE *bye_stream;

static void say_bye_quietly(void)
{
	fprintf(bye_stream, "b");
	fflush(bye_stream);
}

static io_context_t at_once_ctx;

/* The pthread_exit-destroyer child's second thread. */
static void *destroy_and_return(void *a)
{
	(void)a;
	io_destroy(at_once_ctx);
	return NULL;
}

/* See pthread_exit-at-once and pthread_exit-destroyer above. The children
 * tell the parent that their exit handler ran through a pipe on descriptor
 * AT_ONCE_FD, one byte each time it runs (see bye_stream). */
static int pthread_exit_runs(int destroyer)
{
	int fd = tmpfile_open("atonce", O_RDWR | O_TRUNC);
	rm_tmpdir();
	char *buf = malloc(AT_ONCE_SIZE), *got = malloc(AT_ONCE_SIZE);
	int good = 0, runs = destroyer ? 60 : AT_ONCE_RUNS;
	for (int run = 0; run < runs; run++) {
		int p[2], q[2];
		if (pipe(p) != 0 || pipe(q) != 0 || dup2(p[1], AT_ONCE_FD) != AT_ONCE_FD)
			return 2;
		memset(buf, 'a' + run % 26, AT_ONCE_SIZE);
		pid_t child = fork();
		if (child < 0)
			return 2;
		if (child == 0) {
			struct iocb cbs[2], *cbps[2] = { &cbs[0], &cbs[1] };
			bye_stream = fdopen(AT_ONCE_FD, "w");
			if (!bye_stream)
				_exit(5);
			atexit(say_bye_quietly);
			if (io_setup(4, &at_once_ctx) != 0)
				_exit(3);
			io_prep_pwrite(&cbs[0], fd, buf, AT_ONCE_SIZE, 0);
			cbs[0].aio_rw_flags = RWF_DSYNC;
			io_prep_poll(&cbs[1], q[0], POLLIN);
			/* The destroyer submits the POLL alone. */
			if (io_submit(at_once_ctx, 1, &cbps[destroyer ? 1 : 0]) != 1)
				_exit(4);
			if (destroyer) {
				pthread_t th;
				pthread_create(&th, NULL, destroy_and_return, NULL);
			}
			pthread_exit(NULL);
		}
		close(AT_ONCE_FD);
		close(p[1]);
		int status = 0, gone = reap_within_20s(child, &status);
		char b[8];
		int handler = 0;
		ssize_t r;
		while ((r = read(p[0], b, sizeof b)) > 0)
			handler += r;
		close(p[0]);
		close(q[0]);
		close(q[1]);
		int on_file = destroyer ||
			      (pread(fd, got, AT_ONCE_SIZE, 0) == AT_ONCE_SIZE && !memcmp(got, buf, AT_ONCE_SIZE));
		if (gone && WIFEXITED(status) && WEXITSTATUS(status) == 0 && handler == 1 && on_file)
			good++;
		else
			printf("run %d: gone %d, status %d, exit handler runs %d, write on the file %d\n", run, gone,
			       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), handler, on_file);
	}
	printf("children that ended with status 0, their exit handler run once and their write on the file: %d of %d\n",
	       good, runs);
	return 0;
}

/* sys_exit-spawning: see the list of modes above. */
#define SPAWNING_RUNS 40
#define SPAWNING_WRITES 16
#define SPAWNING_SIZE (64 * 1024)

static io_context_t spawning_ctx;
static int spawning_fd;
static char *spawning_buf;

/* The second thread: extending writes one per io_submit once main has
 * ended, then the raw exit, which the C library does not see. */
static void *spawning_last(void *a)
{
	(void)a;
	wait_for_first_thread_end();
	for (int i = SPAWNING_WRITES / 2; i < SPAWNING_WRITES; i++) {
		static struct iocb cbs[SPAWNING_WRITES];
		struct iocb *p = &cbs[i];
		io_prep_pwrite(p, spawning_fd, spawning_buf, SPAWNING_SIZE, (long long)i * SPAWNING_SIZE);
		if (io_submit(spawning_ctx, 1, &p) != 1)
			syscall(SYS_exit, 4);
	}
	/* Long enough for uaio's watcher, woken by main's end, to see this
	 * thread alive on a loaded machine (it cannot tell the order of ends
	 * it did not see). */
	sleep_ms(30);
	syscall(SYS_exit, 0);
	return NULL;
}

static int sys_exit_spawning_runs(void)
{
	spawning_fd = tmpfile_open("spawning", O_RDWR | O_TRUNC | O_DIRECT);
	rm_tmpdir();
	char *got;
	if (posix_memalign((void **)&spawning_buf, 4096, SPAWNING_SIZE) != 0 ||
	    posix_memalign((void **)&got, 4096, SPAWNING_SIZE) != 0)
		return 2;
	int good = 0;
	for (int run = 0; run < SPAWNING_RUNS; run++) {
		memset(spawning_buf, 'a' + run % 26, SPAWNING_SIZE);
		if (ftruncate(spawning_fd, 0) != 0)
			return 2;
		pid_t child = fork();
		if (child < 0)
			return 2;
		if (child == 0) {
			static struct iocb cbs[SPAWNING_WRITES / 2];
			if (io_setup(SPAWNING_WRITES + 4, &spawning_ctx) != 0)
				syscall(SYS_exit_group, 3);
			for (int i = 0; i < SPAWNING_WRITES / 2; i++) {
				struct iocb *p = &cbs[i];
				io_prep_pwrite(p, spawning_fd, spawning_buf, SPAWNING_SIZE, (long long)i * SPAWNING_SIZE);
				if (io_submit(spawning_ctx, 1, &p) != 1)
					syscall(SYS_exit_group, 4);
			}
			pthread_t th;
			pthread_create(&th, NULL, spawning_last, NULL);
			syscall(SYS_exit, 3);
		}
		int status = 0, gone = reap_within_20s(child, &status);
		int blocks = 0;
		for (int i = 0; i < SPAWNING_WRITES; i++)
			blocks += pread(spawning_fd, got, SPAWNING_SIZE, (off_t)i * SPAWNING_SIZE) == SPAWNING_SIZE &&
				  !memcmp(got, spawning_buf, SPAWNING_SIZE);
		if (gone && WIFEXITED(status) && WEXITSTATUS(status) == 0 && blocks == SPAWNING_WRITES)
			good++;
		else
			printf("run %d: gone %d, status %d, writes on the file %d of %d\n", run, gone,
			       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), blocks, SPAWNING_WRITES);
	}
	printf("children that ended with the last thread's status 0 and every write on the file: %d of %d\n", good,
	       SPAWNING_RUNS);
	return 0;
}

/* destroy-exit: see the list of modes above. */
#define DESTROY_EXIT_RUNS 40
#define DESTROY_EXIT_SIZE (4 << 20)

static int destroy_exit_runs(void)
{
	int fd = tmpfile_open("destroyexit", O_RDWR | O_TRUNC);
	rm_tmpdir();
	char *buf, *got = malloc(DESTROY_EXIT_SIZE);
	if (posix_memalign((void **)&buf, 4096, DESTROY_EXIT_SIZE) != 0 || !got)
		return 2;
	int good = 0;
	for (int run = 0; run < DESTROY_EXIT_RUNS; run++) {
		memset(buf, 'a' + run % 26, DESTROY_EXIT_SIZE);
		pid_t child = fork();
		if (child < 0)
			return 2;
		if (child == 0) {
			struct iocb cbs[2], *cbps[2] = { &cbs[0], &cbs[1] };
			if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT) != 0)
				_exit(6);
			if (io_setup(4, &at_once_ctx) != 0)
				_exit(3);
			io_prep_pwrite(&cbs[0], fd, buf, DESTROY_EXIT_SIZE, 0);
			io_prep_fsync(&cbs[1], fd);
			if (io_submit(at_once_ctx, 2, cbps) != 2)
				_exit(4);
			pthread_t th;
			pthread_create(&th, NULL, destroy_and_return, NULL);
			sleep_ms(run % 3);
			exit(0);
		}
		int status = 0, gone = reap_within_20s(child, &status);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
		int on_file = pread(fd, got, DESTROY_EXIT_SIZE, 0) == DESTROY_EXIT_SIZE &&
			      !memcmp(got, buf, DESTROY_EXIT_SIZE);
		if (gone && WIFEXITED(status) && WEXITSTATUS(status) == 0 && on_file)
			good++;
		else
			printf("run %d: gone %d, status %d, write on the file %d\n", run, gone,
			       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), on_file);
	}
	printf("children that ended with status 0 and their write on the file: %d of %d\n", good,
	       DESTROY_EXIT_RUNS);
	return 0;
}

/* kill-memory: see the list of modes above. */
#define KILL_RUNS 20
#define KILL_WRITES 8
#define KILL_SIZE (64 * 1024)

/* Why a memory file system cannot be had for kill-memory, or NULL. */
static const char *no_memory_fs(void)
{
	struct statfs sf;
	if (statfs("/dev/shm", &sf) != 0 || sf.f_type != 0x01021994)
		return "/dev/shm is not tmpfs";
	FILE *f = fopen("/proc/swaps", "r");
	char line[256];
	int lines = 0;
	while (f && fgets(line, sizeof line, f))
		lines++;
	if (f)
		fclose(f);
	if (lines > 1)
		return "swap is on (tmpfs pages may wait for it)";
	return NULL;
}

static int kill_memory_runs(void)
{
	const char *why = no_memory_fs();
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/exit_inflight.%d", (int)getpid());
	int fd = why ? -1 : open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
	if (!why && fd < 0)
		why = "tmpfs refuses O_DIRECT (before Linux 6.6)";
	int dsync = why ? -1 : open(path, O_RDWR | O_DSYNC);
	if (why) {
		printf("skipped: %s\n", why);
		return 0;
	}
	unlink(path);
	char *buf, *got = malloc(KILL_SIZE);
	if (dsync < 0 || posix_memalign((void **)&buf, 4096, (KILL_WRITES + 1) * KILL_SIZE) != 0 || !got)
		return 2;
	int good = 0;
	for (int run = 0; run < KILL_RUNS; run++) {
		for (int i = 0; i <= KILL_WRITES; i++)
			memset(buf + i * KILL_SIZE, 'a' + (run + i) % 26, KILL_SIZE);
		if (ftruncate(fd, 0) != 0)
			return 2;
		pid_t child = fork();
		if (child < 0)
			return 2;
		if (child == 0) {
			struct iocb cbs[KILL_WRITES + 1], *cbps[KILL_WRITES + 1];
			if (io_setup(KILL_WRITES + 1, &at_once_ctx) != 0)
				_exit(3);
			for (int i = 0; i <= KILL_WRITES; i++) {
				io_prep_pwrite(&cbs[i], i ? fd : dsync, buf + i * KILL_SIZE, KILL_SIZE,
					       (long long)i * KILL_SIZE);
				cbps[i] = &cbs[i];
			}
			if (io_submit(at_once_ctx, KILL_WRITES + 1, cbps) != KILL_WRITES + 1)
				_exit(4);
			kill(getpid(), SIGKILL);
			_exit(5);
		}
		int status = 0, gone = reap_within_20s(child, &status);
		int blocks = 0;
		for (int i = 0; i <= KILL_WRITES; i++)
			blocks += pread(dsync, got, KILL_SIZE, (off_t)i * KILL_SIZE) == KILL_SIZE &&
				  !memcmp(got, buf + i * KILL_SIZE, KILL_SIZE);
		if (gone && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && blocks == KILL_WRITES + 1)
			good++;
		else
			printf("run %d: gone %d, status %d, writes on the file %d of %d\n", run, gone,
			       WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), blocks, KILL_WRITES + 1);
	}
	printf("children killed after io_submit with every write on the file: %d of %d\n", good, KILL_RUNS);
	return 0;
}

/* kill-durable: see the list of modes above. */
#define DURABLE_RUNS 10
#define DURABLE_FILE (256 * 1024)
#define DURABLE_OFF 100
#define DURABLE_LEN 65336
#define DURABLE_DIRECT (64 * 1024)

/* One round of kill-durable: a child submits a write of `len` bytes at
 * `off` of `fd` from `buf` and is killed; whether the file then holds the
 * bytes, read through `check` (not O_DIRECT). */
static int durable_round(int fd, int check, const char *buf, size_t len, off_t off)
{
	pid_t child = fork();
	if (child < 0)
		return 0;
	if (child == 0) {
		struct iocb one, *onep = &one;
		if (io_setup(4, &at_once_ctx) != 0)
			_exit(3);
		io_prep_pwrite(&one, fd, (void *)buf, len, off);
		if (io_submit(at_once_ctx, 1, &onep) != 1)
			_exit(4);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	int status = 0, gone = reap_within_20s(child, &status);
	char *got = malloc(len);
	int whole = got && pread(check, got, len, off) == (ssize_t)len && !memcmp(got, buf, len);
	free(got);
	if (!(gone && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		printf("child: gone %d, status %d\n", gone, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
	return whole;
}

static int kill_durable_runs(void)
{
	setenv("UAIO_DURABLE_SUBMIT", "1", 1);
	char *old, *buf;
	if (posix_memalign((void **)&old, 4096, DURABLE_FILE) != 0 ||
	    posix_memalign((void **)&buf, 4096, DURABLE_FILE) != 0)
		return 2;
	memset(old, 'o', DURABLE_FILE);
	for (int dsync = 0; dsync < 2; dsync++) {
		int whole = 0;
		for (int run = 0; run < DURABLE_RUNS; run++) {
			int fd = tmpfile_open(dsync ? "durable-dsync" : "durable-cold", O_RDWR | O_TRUNC);
			if (pwrite(fd, old, DURABLE_FILE, 0) != DURABLE_FILE || fsync(fd) != 0)
				return 2;
			/* Out of the page cache: the partial first and last pages
			 * of the write must be read from the disk first. */
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			if (dsync) {
				close(fd);
				fd = tmpfile_open("durable-dsync", O_RDWR | O_DSYNC);
			}
			memset(buf, 'a' + run, DURABLE_LEN);
			whole += durable_round(fd, fd, buf, DURABLE_LEN, DURABLE_OFF);
			close(fd);
		}
		printf("%s buffered write whole on the file after SIGKILL: %d of %d\n",
		       dsync ? "O_DSYNC" : "uncached partial-page", whole, DURABLE_RUNS);
	}
	int whole = 0;
	for (int run = 0; run < DURABLE_RUNS; run++) {
		int fd = tmpfile_open("durable-direct", O_RDWR | O_TRUNC);
		if (pwrite(fd, old, DURABLE_DIRECT, 0) != DURABLE_DIRECT || fsync(fd) != 0)
			return 2;
		int direct = tmpfile_open("durable-direct", O_RDWR | O_DIRECT);
		memset(buf, 'a' + run, DURABLE_DIRECT);
		whole += durable_round(direct, fd, buf, DURABLE_DIRECT, DURABLE_DIRECT);
		close(direct);
		close(fd);
	}
	printf("O_DIRECT write extending the file whole on it after SIGKILL: %d of %d\n", whole, DURABLE_RUNS);
	rm_tmpdir();
	return 0;
}

/* left-reads: see the top. */
enum { LR_N = 16, LR_SZ = 256 << 10 };
static io_context_t lr_ctx;
static char *lr_buf[LR_N];
static int lr_pipe[2];

/* Submits the reads and the POLL, then leaves as `how` says. */
static void lr_submit(int fd, int how)
{
	static struct iocb cb[LR_N + 1];
	struct iocb *p[LR_N + 1];
	for (int i = 0; i < LR_N; i++) {
		io_prep_pread(&cb[i], fd, lr_buf[i], LR_SZ, (long long)i * LR_SZ);
		cb[i].data = (void *)(long)i;
		p[i] = &cb[i];
	}
	io_prep_poll(&cb[LR_N], lr_pipe[0], POLLIN);
	cb[LR_N].data = (void *)99L;
	p[LR_N] = &cb[LR_N];
	if (io_submit(lr_ctx, LR_N + 1, p) != LR_N + 1)
		printf("io_submit short\n");
	if (how == 'p')
		pthread_exit(NULL);
	if (how == 's')
		syscall(SYS_exit, 0);
}

static int lr_fd;
static void *lr_thread(void *arg)
{
	lr_submit(lr_fd, *(int *)arg);
	return NULL;
}

static void *lr_reaper(void *arg)
{
	const char *name = arg;
	sleep_ms(100);
	if (write(lr_pipe[1], "x", 1) != 1)
		exit(2);
	struct io_event ev[LR_N + 1];
	int got = 0, whole = 0, right = 0;
	long poll_res = -1;
	while (got < LR_N + 1) {
		struct timespec ts = { 10, 0 };
		int g = io_getevents(lr_ctx, 1, LR_N + 1 - got, ev + got, &ts);
		if (g <= 0)
			break;
		got += g;
	}
	for (int i = 0; i < got; i++) {
		long k = (long)ev[i].data;
		if (k == 99) {
			poll_res = ev[i].res;
			continue;
		}
		whole += ev[i].res == LR_SZ;
		char want[LR_SZ / 64];
		fill(want, sizeof want, (unsigned)k);
		right += memcmp(lr_buf[k], want, sizeof want) == 0;
	}
	printf("%s: events %d, reads whole %d, right %d, POLL %ld\n", name, got, whole, right, poll_res);
	exit(0);
}

static int left_reads(void)
{
	int w = tmpfile_open("left", O_RDWR | O_TRUNC);
	for (int i = 0; i < LR_N; i++) {
		static char block[LR_SZ];
		memset(block, 0, sizeof block);
		fill(block, LR_SZ / 64, (unsigned)i);
		if (pwrite(w, block, LR_SZ, (off_t)i * LR_SZ) != LR_SZ)
			return 2;
	}
	fsync(w);
	static const struct {
		const char *name;
		int how;
	} ways[] = { { "main's pthread_exit", 'p' }, { "a thread's syscall(SYS_exit)", 's' }, { "a thread's return", 'r' } };
	for (size_t k = 0; k < sizeof ways / sizeof ways[0]; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			posix_fadvise(w, 0, 0, POSIX_FADV_DONTNEED);
			lr_fd = w;
			if (pipe(lr_pipe) != 0 || io_setup(64, &lr_ctx) != 0)
				_exit(2);
			for (int i = 0; i < LR_N; i++)
				lr_buf[i] = calloc(1, LR_SZ);
			pthread_t r, t;
			pthread_create(&r, NULL, lr_reaper, (void *)ways[k].name);
			if (ways[k].how == 'p') {
				lr_submit(w, 'p');
			}
			int how = ways[k].how;
			pthread_create(&t, NULL, lr_thread, &how);
			pthread_join(r, NULL);
			_exit(3);
		}
		int status = 0;
		reap_within_20s(pid, &status);
		printf("%s: child exit status %d\n", ways[k].name, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
	}
	rm_tmpdir();
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "exit";
	printf("mode %s\n", mode);
	make_tmpdir();
	if (!strcmp(mode, "exit-busy"))
		return exit_busy();
	if (!strcmp(mode, "handler-_exit"))
		return handler_exit(alarm_exit);
	if (!strcmp(mode, "handler-exit"))
		return handler_exit(alarm_full_exit);
	if (!strcmp(mode, "handler-malloc"))
		return handler_malloc();
	if (!strcmp(mode, "pthread_exit-at-once"))
		return pthread_exit_runs(0);
	if (!strcmp(mode, "pthread_exit-destroyer"))
		return pthread_exit_runs(1);
	if (!strcmp(mode, "destroy-exit"))
		return destroy_exit_runs();
	if (!strcmp(mode, "sys_exit-spawning"))
		return sys_exit_spawning_runs();
	if (!strcmp(mode, "kill-memory"))
		return kill_memory_runs();
	if (!strcmp(mode, "kill-durable"))
		return kill_durable_runs();
	if (!strcmp(mode, "left-reads"))
		return left_reads();
	int fd = tmpfile_open("big", O_RDWR | O_TRUNC);
	/* The directory and file go away now; the descriptor stays usable. */
	rm_tmpdir();

	pid_t child = fork();
	if (child < 0)
		return 2;
	if (child > 0) {
		int status = 0;
		reap_within_20s(child, &status); /* a hang is killed: status -9 */
		printf("child exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
		char *want = malloc(WSIZE), *got = malloc(WSIZE);
		fill(want, WSIZE, 3);
		/* The child may have set O_DIRECT on the open file they share. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
		int blocks = 0;
		for (int i = 0; i < NWRITE; i++)
			if (pread(fd, got, WSIZE, (off_t)i * WSIZE) == WSIZE && !memcmp(got, want, WSIZE))
				blocks++;
		printf("blocks on the file after the child left: %d of %d\n", blocks, NWRITE);
		return 0;
	}

	int p[2];
	if (pipe(p) != 0)
		return 2;
	printf("io_setup(poll) = %s\n", negret(io_setup(NPOLL + 4, &ctx_poll)));
	printf("io_setup(write) = %s\n", negret(io_setup(NWRITE + 4, &ctx_write)));

	for (int i = 0; i < NPOLL; i++) {
		io_prep_poll(&cb[i], p[0], POLLIN);
		cb[i].data = (void *)(uintptr_t)i;
		cbp[i] = &cb[i];
	}
	printf("io_submit(%d POLLs on an empty pipe) = %s\n", NPOLL, negret(io_submit(ctx_poll, NPOLL, cbp)));

	/* The modes that leave without exit handlers write O_DIRECT: those
	 * writes are in flight, not in the page cache, when io_submit returns. */
	int direct = !strcmp(mode, "_exit") || !strcmp(mode, "exit_group") || !strncmp(mode, "exec", 4) ||
		     !strncmp(mode, "pthread_exit", 12) || !strncmp(mode, "sys_exit", 8);
	if (direct)
		printf("F_SETFL O_DIRECT = %d\n", fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT));
	char *buf;
	if (posix_memalign((void **)&buf, 4096, WSIZE) != 0)
		return 2;
	fill(buf, WSIZE, 3);
	for (int i = 0; i < NWRITE; i++) {
		int k = NPOLL + i;
		io_prep_pwrite(&cb[k], fd, buf, WSIZE, (long long)i * WSIZE);
		cb[k].data = (void *)(uintptr_t)k;
		cbp[k] = &cb[k];
	}
	io_prep_fsync(&cb[NPOLL + NWRITE], fd);
	io_prep_fdsync(&cb[NPOLL + NWRITE + 1], fd);
	for (int k = NPOLL + NWRITE; k < NPOLL + NWRITE + 2; k++) {
		cb[k].data = (void *)(uintptr_t)k;
		cbp[k] = &cb[k];
	}
	printf("io_submit(%d writes of %d KiB + fsync + fdsync) = %s\n", NWRITE, WSIZE / 1024,
	       negret(io_submit(ctx_write, NWRITE + 2, &cbp[NPOLL])));

	struct timespec z = { 0, 0 };
	struct io_event e[NPOLL];
	printf("io_getevents(poll ctx, 0, %d, {0,0}) = %s\n", NPOLL, negret(io_getevents(ctx_poll, 0, NPOLL, e, &z)));

	if (!strcmp(mode, "exit-waiter")) {
		pthread_t th;
		pthread_create(&th, NULL, waiter, NULL);
		sleep_ms(20);
		printf("waiter thread started\n");
	}

	/* The buffer is freed only by the process going away. */
	if (!strcmp(mode, "exec"))
		return exec_true(argc > 2 ? argv[2] : "execv");
	if (!strcmp(mode, "exec-fails")) {
		char *av[] = { "/nonexistent/true", NULL };
		errno = 0;
		int r = execv(av[0], av);
		printf("execv(/nonexistent/true) = %d, errno %s\n", r, ename(errno));
		struct io_event ev[NWRITE + 2];
		int got = 0, right = 0;
		while (got < NWRITE + 2) {
			int r = io_getevents(ctx_write, 1, NWRITE + 2 - got, ev, NULL);
			if (r <= 0) {
				printf("io_getevents = %s\n", negret(r));
				break;
			}
			for (int i = 0; i < r; i++) {
				long k = (long)(uintptr_t)ev[i].data;
				right += (long)ev[i].res == (k < NPOLL + NWRITE ? WSIZE : 0) && ev[i].res2 == 0;
			}
			got += r;
		}
		printf("events of the writes and syncs: %d, as expected: %d\n", got, right);
		return 0;
	}
	if (!strcmp(mode, "return")) {
		printf("return 0 from main\n");
		return 0;
	}
	if (!strncmp(mode, "pthread_exit", 12)) {
		atexit(say_bye);
		if (!strcmp(mode, "pthread_exit-last")) {
			pthread_t th;
			pthread_create(&th, NULL, last_thread, NULL);
		}
		printf("pthread_exit(NULL) in main\n");
		pthread_exit(NULL);
	}
	if (!strncmp(mode, "sys_exit", 8)) {
		/* Must not run: no C library exit happens. */
		atexit(say_bye);
		if (!strcmp(mode, "sys_exit-last")) {
			pthread_t th;
			pthread_create(&th, NULL, last_raw_exit, NULL);
		}
		printf("syscall(SYS_exit, 3) in main\n");
		syscall(SYS_exit, 3);
	}
	if (!strcmp(mode, "_exit")) {
		printf("_exit(0)\n");
		fflush(stdout);
		_exit(0);
	}
	if (!strcmp(mode, "exit_group")) {
		pthread_t th;
		pthread_create(&th, NULL, group_exiter, NULL);
		io_getevents(ctx_poll, 1, NPOLL, e, NULL); /* ended by the exit */
		printf("io_getevents returned\n");
		return 1;
	}
	printf("exit(0)\n");
	exit(0);
}
