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
 *   fork_conform vfork        contexts made by a child that shares its
 *                             parent's memory (vfork, or clone(CLONE_VM)
 *                             running beside the parent), each form in a
 *                             fresh process, the parent's own context made
 *                             before or after: the child writes and reads
 *                             (O_DIRECT)
 *                             back through its context, then leaves with
 *                             _exit, exit or execve; the parent then uses
 *                             the child's context and its own. On the
 *                             kernel a context belongs to the memory, so
 *                             the parent's calls work; every call of the
 *                             parent runs under a watchdog (a fresh process
 *                             per form, killed after 10 s: uaio's parent
 *                             hung in its next io_submit, since the child
 *                             that made the first context counted as the
 *                             process and its exit as the process's)
 *   fork_conform raw-fork     a child made by a system call the C library
 *                             does not see (syscall(SYS_fork),
 *                             syscall(SYS_clone, SIGCHLD), clone3, an
 *                             inline fork instruction), so that no
 *                             pthread_atfork handler runs: its io_submit of
 *                             a write on its parent's context, its
 *                             io_getevents there, then a context of its
 *                             own with a write and a read; the parent's
 *                             file keeps its bytes and the parent's
 *                             context still works (before, the child's
 *                             write landed in the parent's file through
 *                             the parent's ring and the child crashed)
 *   fork_conform vfork-nokcmp the same, each fresh process under a seccomp
 *                             filter that refuses kcmp(2) with EPERM (as
 *                             Docker's default profile does)
 */
#include "conform_common.h"

#include <libaio.h>
#include <pthread.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

/* vfork: see the top. */
static io_context_t vf_child_ctx;
static int vf_fd;
static char vf_out[4096] __attribute__((aligned(4096))), vf_in[4096] __attribute__((aligned(4096)));

/* A write of block `at` of vf_fd through ctx and a read of it back: 0
 * when both gave the whole block and the same bytes. */
static int vf_write_read(io_context_t ctx, int at)
{
	fill(vf_out, sizeof vf_out, 100 + at);
	struct iocb w, rd, *p = &w;
	struct io_event ev;
	struct timespec ts = { 5, 0 };
	io_prep_pwrite(&w, vf_fd, vf_out, sizeof vf_out, (long long)at * 4096);
	if (io_submit(ctx, 1, &p) != 1 || io_getevents(ctx, 1, 1, &ev, &ts) != 1 || ev.res != sizeof vf_out)
		return 1;
	memset(vf_in, 0, sizeof vf_in);
	io_prep_pread(&rd, vf_fd, vf_in, sizeof vf_in, (long long)at * 4096);
	p = &rd;
	if (io_submit(ctx, 1, &p) != 1 || io_getevents(ctx, 1, 1, &ev, &ts) != 1 || ev.res != sizeof vf_in)
		return 2;
	return memcmp(vf_in, vf_out, sizeof vf_in) != 0 ? 3 : 0;
}

/* The child's part: a context, one write and read back; leaves as `how`
 * says ('_': _exit, 'e': exit, 'x': execve of /bin/true). Only calls a
 * vfork child may make besides the AIO ones (no stdio). */
static int vf_child(void *arg)
{
	int how = *(int *)arg;
	int r = io_setup(8, &vf_child_ctx);
	int code = r != 0 ? 10 : vf_write_read(vf_child_ctx, 1);
	if (how == 'x' && code == 0) {
		char *argv[] = { "true", NULL };
		execve("/bin/true", argv, environ);
		code = 20;
	}
	if (how == 'e')
		exit(code);
	_exit(code);
}

/* One form, in the calling (fresh) process: prints one line. */
static void vf_form(const char *name, int kind, int how, int parent_first)
{
	io_context_t mine = 0;
	int early = parent_first ? io_setup(8, &mine) : 0;
	vf_child_ctx = 0;
	pid_t pid;
	static char stack[256 * 1024] __attribute__((aligned(16)));
	if (kind == 'v') {
		pid = vfork();
		if (pid == 0)
			vf_child(&how);
	} else {
		pid = clone(vf_child, stack + sizeof stack, CLONE_VM | SIGCHLD, &how);
	}
	int st = -1;
	if (pid > 0)
		waitpid(pid, &st, 0);
	int child = pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	int on_childs = vf_child_ctx ? vf_write_read(vf_child_ctx, 2) : -1;
	int late = parent_first ? 0 : io_setup(8, &mine);
	int on_mine = late == 0 && early == 0 ? vf_write_read(mine, 3) : -1;
	int d1 = vf_child_ctx ? io_destroy(vf_child_ctx) : -1;
	int d2 = mine ? io_destroy(mine) : -1;
	printf("%s: child %d, parent on the child's context %d, own context %d %d, destroyed %d %d\n", name, child,
	       on_childs, early | late, on_mine, d1, d2);
}

/* raw-fork: see the top. */
static long inline_fork(void)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_fork) : "rcx", "r11", "memory");
	return r;
}

static void raw_fork_forms(void)
{
	static const char *names[] = { "syscall(SYS_fork)", "syscall(SYS_clone, SIGCHLD)", "clone3", "inline fork" };
	int fd = tmpfile_open("raw-fork", O_RDWR | O_TRUNC);
	io_context_t ctx = 0;
	if (io_setup(8, &ctx) != 0 || pwrite(fd, "AAAAAAAA", 8, 0) != 8)
		exit(2);
	for (int k = 0; k < 4; k++) {
		pid_t pid;
		if (k == 0)
			pid = syscall(SYS_fork);
		else if (k == 1)
			pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		else if (k == 2) {
			struct clone_args ca;
			memset(&ca, 0, sizeof ca);
			ca.exit_signal = SIGCHLD;
			pid = syscall(SYS_clone3, &ca, sizeof ca);
		} else
			pid = inline_fork();
		if (pid == 0) {
			struct iocb cb, *cbs[1] = { &cb };
			struct io_event ev;
			struct timespec zero = { 0, 0 };
			io_prep_pwrite(&cb, fd, "CHILD", 5, 0);
			int sub = io_submit(ctx, 1, cbs);
			int get = io_getevents(ctx, 0, 1, &ev, &zero);
			io_context_t own = 0;
			int set = io_setup(4, &own);
			char buf[8] = "";
			int w = -1, r = -1;
			if (set == 0) {
				io_prep_pwrite(&cb, fd, "child", 5, 8);
				w = io_submit(own, 1, cbs) == 1 && io_getevents(own, 1, 1, &ev, NULL) == 1 ? (int)ev.res : -1;
				io_prep_pread(&cb, fd, buf, 5, 8);
				r = io_submit(own, 1, cbs) == 1 && io_getevents(own, 1, 1, &ev, NULL) == 1 ? (int)ev.res : -1;
			}
			char line[256];
			int n = snprintf(line, sizeof line,
					 "%s: child: submit on the parent's context %s, getevents %s; own context %s, write %d, read %d '%.5s'\n",
					 names[k], negret(sub), negret(get), negret(set), w, r, buf);
			if (write(1, line, n) != n)
				_exit(3);
			syscall(SYS_exit_group, 0);
		}
		int st = wait_or_kill(pid, 10000);
		char b[9] = "";
		if (pread(fd, b, 8, 0) != 8)
			exit(2);
		struct iocb cb, *cbs[1] = { &cb };
		struct io_event ev;
		io_prep_pread(&cb, fd, b, 8, 0);
		int ok = io_submit(ctx, 1, cbs) == 1 && io_getevents(ctx, 1, 1, &ev, NULL) == 1 && ev.res == 8;
		printf("%s: child status %d, the parent's file starts '%.8s', the parent's context %s\n", names[k],
		       st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1, b, ok ? "works" : "fails");
	}
	io_destroy(ctx);
	close(fd);
}

/* A seccomp filter on the calling process (and its children): kcmp fails
 * with EPERM, every other call is allowed. */
static void refuse_kcmp(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kcmp, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof f / sizeof f[0], f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("seccomp");
		_exit(2);
	}
	if (syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0) != -1 || errno != EPERM) {
		fprintf(stderr, "kcmp not refused\n");
		_exit(2);
	}
}

static void vfork_forms(int no_kcmp)
{
	static const struct {
		const char *name;
		int kind, how, parent_first;
	} forms[] = {
		{ "vfork, _exit, first context", 'v', '_', 0 },
		{ "vfork, exit, first context", 'v', 'e', 0 },
		{ "vfork, execve, first context", 'v', 'x', 0 },
		{ "vfork, _exit, parent's context first", 'v', '_', 1 },
		{ "vfork, execve, parent's context first", 'v', 'x', 1 },
		{ "clone(CLONE_VM), _exit, first context", 'c', '_', 0 },
		{ "clone(CLONE_VM), exit, parent's context first", 'c', 'e', 1 },
	};
	vf_fd = tmpfile_open("vfork", O_RDWR | O_TRUNC | O_DIRECT);
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		pid_t p = fork();
		if (p == 0) {
			if (no_kcmp)
				refuse_kcmp();
			vf_form(forms[i].name, forms[i].kind, forms[i].how, forms[i].parent_first);
			_exit(0);
		}
		int st = wait_or_kill(p, 10000);
		if (st == -1)
			printf("%s: hung, killed after 10 s\n", forms[i].name);
	}
	close(vf_fd);
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
	if (strcmp(mode, "raw-fork") == 0) {
		make_tmpdir();
		raw_fork_forms();
		rm_tmpdir();
		return 0;
	}
	if (strcmp(mode, "vfork") == 0 || strcmp(mode, "vfork-nokcmp") == 0) {
		make_tmpdir();
		vfork_forms(strcmp(mode, "vfork-nokcmp") == 0);
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
