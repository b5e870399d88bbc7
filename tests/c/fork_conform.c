/* fork(2) while other threads are inside AIO calls. The child of a fork has
 * one thread; any lock another thread of the parent held at the fork stays
 * held in the child for ever. On the kernel, a child's io_setup and its own
 * exit never wait on its parent's threads. Every mode prints counts only, so
 * that kernel AIO and uaio print the same lines.
 *
 *   fork_conform first-setup  10 times: a fresh process starts a thread that
 *                             makes the process's first context and
 *                             submits and reaps a write and a read of a
 *                             file, and at once forks 20 children, each of
 *                             which does the same under alarm(5) and leaves
 *                             with _exit: every child must end with status
 *                             0 (a child killed by SIGALRM hung)
 *   fork_conform busy         for 2 s two threads each loop { open an
 *                             O_DIRECT file, io_submit one 4 KiB read,
 *                             close, io_getevents } while the main thread
 *                             forks children that _exit(0) at once: each
 *                             child must be gone within 5 s (one that is
 *                             not hung inside fork and is killed)
 *   fork_conform exit-child   300 times: a new context, 6 overlapping
 *                             buffered writes with 2 fsyncs and 2
 *                             fdatasyncs between them, of a file, in one
 *                             io_submit, then a fork whose child leaves at
 *                             once with exit(0) (thread-local destructors
 *                             run), then the events reaped: each child must
 *                             be gone within 5 s with status 0 (uaio's
 *                             destructor of the child's copy of its thread
 *                             waited for a lock of the parent's progress
 *                             thread: 2 of 3 runs hung on io_uring)
 */
#include "conform_common.h"

#include <libaio.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

/* Waits up to ms for pid; kills it when it is still there. Returns its
 * status, or -1 when it had to be killed. */
static int wait_or_kill(pid_t pid, int ms)
{
	double end = now_ms() + ms;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0) {
			perror("waitpid");
			exit(2);
		}
		if (now_ms() > end)
			break;
		sleep_ms(1);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static int first_fd;

/* A context, a 4 KiB write at block `at` of first_fd and a read of it back,
 * submitted and reaped: 0 when all went as on the kernel. */
static int setup_write_read(int at)
{
	io_context_t ctx = 0;
	int r = io_setup(8, &ctx);
	if (r != 0) {
		fprintf(stderr, "io_setup: %s\n", negret(r));
		return 1;
	}
	char out[4096], in[4096];
	fill(out, sizeof out, at);
	struct iocb w, rd, *p = &w;
	io_prep_pwrite(&w, first_fd, out, sizeof out, (long long)at * 4096);
	struct io_event ev;
	int bad = io_submit(ctx, 1, &p) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof out;
	io_prep_pread(&rd, first_fd, in, sizeof in, (long long)at * 4096);
	p = &rd;
	bad = bad || io_submit(ctx, 1, &p) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof in ||
	      memcmp(in, out, sizeof in) != 0;
	if (bad)
		fprintf(stderr, "write and read back at block %d failed\n", at);
	return (io_destroy(ctx) != 0) | bad;
}

static void *first_setup_thread(void *arg)
{
	*(int *)arg = setup_write_read(0);
	return NULL;
}

/* One round of first-setup, in a fresh process: the number of children
 * that ended with status 0. */
static int first_setup_round(void)
{
	enum { CHILDREN = 20 };
	int thread_bad = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, first_setup_thread, &thread_bad) != 0)
		return -1;
	pid_t kids[CHILDREN];
	for (int i = 0; i < CHILDREN; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			alarm(5);
			_exit(setup_write_read(i + 1));
		}
	}
	int fine = 0;
	for (int i = 0; i < CHILDREN; i++) {
		int st = kids[i] > 0 ? wait_or_kill(kids[i], 10000) : -1;
		if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			fine++;
		else if (st >= 0 && WIFSIGNALED(st))
			fprintf(stderr, "child %d: killed by signal %d\n", i, WTERMSIG(st));
		else
			fprintf(stderr, "child %d: status %d\n", i, st);
	}
	pthread_join(t, NULL);
	return thread_bad ? -1 : fine;
}

static void first_setup(void)
{
	enum { ROUNDS = 10 };
	int fine_rounds = 0;
	first_fd = tmpfile_open("first", O_RDWR | O_TRUNC);
	for (int r = 0; r < ROUNDS; r++) {
		pid_t p = fork();
		if (p == 0)
			_exit(first_setup_round() == 20 ? 0 : 1);
		int st = wait_or_kill(p, 60000);
		if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			fine_rounds++;
		else
			fprintf(stderr, "round %d: status %d\n", r, st);
	}
	printf("first-setup: %d of %d rounds, every child wrote and read back\n", fine_rounds, ROUNDS);
}

static volatile int busy_stop;
static char busy_path[512];
static int busy_errors;

static void *busy_thread(void *arg)
{
	(void)arg;
	io_context_t ctx = 0;
	if (io_setup(4, &ctx) != 0) {
		__atomic_add_fetch(&busy_errors, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, 4096) != 0)
		abort();
	while (!__atomic_load_n(&busy_stop, __ATOMIC_RELAXED)) {
		int fd = open(busy_path, O_RDONLY | O_DIRECT);
		if (fd < 0) {
			__atomic_add_fetch(&busy_errors, 1, __ATOMIC_RELAXED);
			break;
		}
		struct iocb cb, *p = &cb;
		io_prep_pread(&cb, fd, buf, 4096, 0);
		int r = io_submit(ctx, 1, &p);
		close(fd);
		struct io_event ev;
		if (r == 1 && io_getevents(ctx, 1, 1, &ev, NULL) != 1)
			__atomic_add_fetch(&busy_errors, 1, __ATOMIC_RELAXED);
		/* A read whose descriptor was closed before it ran may end with
		 * -EBADF on uaio (README, Differences); only a lost event or a
		 * refused submission counts. */
		if (r != 1)
			__atomic_add_fetch(&busy_errors, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	io_destroy(ctx);
	return NULL;
}

static void busy(void)
{
	int fd = tmpfile_open("busy", O_RDWR | O_TRUNC);
	char block[4096];
	fill(block, sizeof block, 7);
	if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block) {
		perror("pwrite");
		exit(2);
	}
	close(fd);
	snprintf(busy_path, sizeof busy_path, "%s", tmpfiles[ntmpfiles - 1]);
	int probe = open(busy_path, O_RDONLY | O_DIRECT);
	if (probe < 0) {
		/* Same line on every run: the case cannot run here. */
		printf("busy: skipped, O_DIRECT not supported in %s\n", tmpdir);
		return;
	}
	close(probe);

	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, busy_thread, NULL);
	int forks = 0, hung = 0, bad = 0;
	double end = now_ms() + 2000;
	while (now_ms() < end) {
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		if (p < 0) {
			perror("fork");
			break;
		}
		forks++;
		int st = wait_or_kill(p, 5000);
		if (st < 0)
			hung++;
		else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad++;
	}
	busy_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr, "busy: %d forks\n", forks);
	printf("busy: forks > 50: %s, hung children: %d, other endings: %d, I/O errors: %d\n", forks > 50 ? "yes" : "no",
	       hung, bad, busy_errors);
}

/* exit-child: see the top. */
static void exit_child(void)
{
	int fd = tmpfile_open("exit-child", O_RDWR | O_TRUNC);
	if (fd < 0) {
		perror("exit-child setup");
		exit(2);
	}
	static char buf[10][4096];
	/* Writes over one another, with syncs between them: a write after a
	 * sync waits for it. */
	const char kinds[10] = { 'W', 'W', 'S', 'W', 'D', 'W', 'W', 'S', 'W', 'D' };
	int gone = 0, events_right = 0;
	for (int round = 0; round < 300; round++) {
		io_context_t ctx = 0;
		if (io_setup(16, &ctx) != 0) {
			perror("io_setup");
			exit(2);
		}
		struct iocb cb[10], *cbs[10];
		for (int i = 0; i < 10; i++) {
			memset(buf[i], 'a' + (round + i) % 26, sizeof buf[i]);
			if (kinds[i] == 'W')
				io_prep_pwrite(&cb[i], fd, buf[i], sizeof buf[i], (i % 2) * 4096);
			else if (kinds[i] == 'S')
				io_prep_fsync(&cb[i], fd);
			else
				io_prep_fdsync(&cb[i], fd);
			cbs[i] = &cb[i];
		}
		int r = io_submit(ctx, 10, cbs);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			exit(2);
		}
		if (pid == 0)
			exit(0);
		int st = wait_or_kill(pid, 5000);
		gone += st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
		struct io_event ev[10];
		struct timespec ts = { 10, 0 };
		int got = 0;
		while (r > 0 && got < r) {
			int n = io_getevents(ctx, 1, r - got, ev + got, &ts);
			if (n <= 0)
				break;
			got += n;
		}
		int ok = got == 10;
		for (int i = 0; i < got; i++)
			ok &= ev[i].res == (((struct iocb *)ev[i].obj)->aio_lio_opcode == IO_CMD_PWRITE ? 4096 : 0);
		events_right += ok;
		io_destroy(ctx);
	}
	printf("children gone with status 0 within 5 s: %d of 300; rounds with every event right: %d of 300\n", gone,
	       events_right);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "first-setup";
	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(mode, "first-setup") == 0) {
		make_tmpdir();
		first_setup();
		rm_tmpdir();
		return 0;
	}
	if (strcmp(mode, "exit-child") == 0) {
		make_tmpdir();
		exit_child();
		rm_tmpdir();
		return 0;
	}
	if (strcmp(mode, "busy") == 0) {
		make_tmpdir();
		busy();
		rm_tmpdir();
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
