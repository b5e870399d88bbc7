/* A program that closes or replaces descriptors it never opened while it
 * has an AIO context. A kernel AIO context holds no descriptor of the
 * program's, so whatever the program closes, its context goes on working.
 * Every mode prints the same lines on kernel AIO and on uaio.
 *
 *   fd_conform close_range   close_range(3, ~0U, 0) from the C library
 *   fd_conform sys-close     the same as syscall(SYS_close_range, ...)
 *   fd_conform closefrom     closefrom(3)
 *   fd_conform close-each    close() of every number up to the soft
 *                            RLIMIT_NOFILE (at most 65536); the closes of
 *                            numbers the program neither inherited nor
 *                            opened must all fail with EBADF
 *   fd_conform dup2          dup2() of /dev/null onto every number open in
 *                            /proc/self/fd that the program did not open
 *                            (after io_setup); the context works after
 *
 *   fd_conform race          a thread puts a victim file on every number
 *                            from 100 to 4399 (below the soft limit) with
 *                            dup2 and closes them again with close_range,
 *                            over and over, while 3 threads each make 60
 *                            contexts (io_setup, 8 writes, an fdatasync
 *                            and a POLL of a ready pipe, reaped, then
 *                            io_destroy): every call and event succeeds,
 *                            the files hold what was written, and the
 *                            victim stays empty (uaio makes descriptors of
 *                            its own at low numbers and moves them above
 *                            its floor: a close or dup2 in between made
 *                            io_setup fault with SIGBUS, POLLs hang and
 *                            syncs fail with EBADF)
 *
 *   fd_conform reuse         one number names a regular file and a
 *                            directory (opened with the same status flags)
 *                            in turn, put there by dup2, close and open,
 *                            close_range and open; an empty read and a
 *                            16-byte read right after each change get the
 *                            answer of the file the number names then
 *                            (uaio keeps what a number named from one call
 *                            to the next until the program closes or
 *                            replaces it)
 *
 *   fd_conform closerace     a thread puts one of two files on a number
 *                            (dup2, dup3), or closes it and puts one back
 *                            (close, syscall(SYS_close)), over and over,
 *                            while the main thread submits reads and
 *                            writes on that number, one per io_submit:
 *                            every request is accepted or refused with
 *                            EBADF, and none that was accepted ends with
 *                            EBADF (the kernel's io_submit holds the file
 *                            it looked up; before uaio held closes back
 *                            while io_submit looked and handed over, 1,082
 *                            of 9,600 ended so on io_uring, 688 on the
 *                            thread pool)
 *
 *   fd_conform release       the program's flock on a file it read with
 *                            O_DIRECT, one request at a time, is free for
 *                            another process right after the program's
 *                            close, close_range, dup2 or fclose of its
 *                            descriptor, and on one it wrote (buffered
 *                            writes and an fdatasync) right after a close
 *                            made by an inline system call
 *                            (the kernel lets go of the file in that call;
 *                            so must uaio, whose thread pool holds a
 *                            duplicate of the descriptor for each request)
 *
 *   fd_conform lockrace      the program takes a POSIX record lock on a
 *                            file (F_SETLK, through one of two
 *                            descriptors), has another process check that
 *                            it is held, and lets it go, over and over for
 *                            a second, while 2 threads (a context each)
 *                            read and write the file with AIO through one of those
 *                            descriptors (O_DIRECT one at a time, O_DIRECT
 *                            in batches of 16, buffered in batches of 16):
 *                            the lock is never found free while held, and
 *                            every request succeeds (closing any
 *                            descriptor of a file releases the process's
 *                            locks on it: uaio's duplicates, looked at
 *                            for a lock and then closed, released locks
 *                            taken in between, hundreds a second on the
 *                            thread pool)
 *
 *   fd_conform full          the program fills its descriptor table
 *                            (open until EMFILE), then, 20 times: 8
 *                            buffered writes, or cold buffered reads, or
 *                            a write and an fdatasync, on a number in one
 *                            io_submit, and at once dup2 of another file
 *                            (a pipe for the sync) onto that number: the
 *                            requests ran on the file the number named in
 *                            io_submit (the writes are in it and not in
 *                            the other file, the reads return its bytes,
 *                            the sync answers 0); then 300 fdatasyncs
 *                            and 8 writes in one io_submit, and 8 cold
 *                            reads and an fdatasync submitted by a thread
 *                            that ended before the dup2. (With no number left
 *                            for a duplicate, io_uring looked the number
 *                            up only when a write's turn came: 20 of 20
 *                            rounds wrote into the other file; past 256
 *                            requests held so, the same; a thread's
 *                            requests failed with EFAULT once it ended.)
 *
 *   fd_conform setfl         a number's status flags change between two
 *                            reads right after one another: O_DIRECT set
 *                            (through fcntl, fcntl64 and syscall(SYS_fcntl))
 *                            and cleared, and a read from a misaligned
 *                            buffer follows each change at once (the
 *                            kernel refuses it, in its event, with EINVAL
 *                            while the number is O_DIRECT and reads 4096
 *                            bytes otherwise); then the number is closed
 *                            by an inline system call instruction (which
 *                            the drop-in library cannot see) right after a
 *                            read, and io_submit on it answers EBADF (uaio
 *                            keeps a number's flags and file from one call
 *                            to the next until the program changes them);
 *                            the same for buffered writes, which uaio runs
 *                            inside io_submit without asking for the flags
 *                            again; and O_DIRECT set and cleared by an
 *                            inline system call right after a write: an
 *                            aligned write that follows writes 4096 bytes,
 *                            a misaligned one gets EINVAL while O_DIRECT;
 *                            a pipe's read end put on the number by an
 *                            inline dup2 right after a write: a write of
 *                            part of a page is refused with EBADF and the
 *                            pipe keeps its bytes; 12 writes of 4 MiB
 *                            through a number an inline dup2 switches
 *                            between two files after each: each lands,
 *                            whole, in the file the number named; 64
 *                            buffered writes, then 64 reads, of parts of
 *                            pages not in the page cache, from misaligned
 *                            buffers, with O_DIRECT set right after their
 *                            io_submit: all done as buffered I/O (the
 *                            kernel did them in io_submit; uaio's backends
 *                            failed every one with EINVAL)
 *
 *   fd_conform freopen       freopen() puts one of two files on a stream's
 *                            number in turn (the C library closes and
 *                            reopens it without going through close), and
 *                            a write, an fsync and a read on the number
 *                            follow at once, 1,000 times: all succeed on
 *                            the file named then (before, on the thread
 *                            pool, 500 of the fsyncs ended with EBADF:
 *                            uaio still took the number for the earlier
 *                            file)
 *
 *   fd_conform append-after  16 O_DIRECT writes of 4 KiB at offsets 0..60 KiB
 *                            of a 64 KiB file in one io_submit, and the
 *                            descriptor's O_APPEND changed right after
 *                            (set, or cleared), 20 rounds each: the writes
 *                            land as the flags were at io_submit (the
 *                            kernel fixes a request's append at
 *                            submission; before, uaio's backends read the
 *                            flag when each write ran: 20 of 20 rounds
 *                            differed with O_APPEND cleared, 13-19 of 20
 *                            with it set, from a black-box attack)
 *
 * In each mode but race, release and full, before the descriptors go: a POLL on an empty pipe is in
 * flight and a write to a file done. After: the pipe is written and the
 * POLL's event reaped; a write, an fsync and a read of the file, a POLL of
 * a new pipe; io_destroy; a second context reads the file.
 *
 * Build: gcc -O2 -Wall -pthread -o fd_conform fd_conform.c -laio */
#include "conform_common.h"

#include <dirent.h>
#include <libaio.h>
#include <poll.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/syscall.h>

/* The numbers open at a moment (from /proc/self/fd), as a bitmap. */
#define MAXFD 65536
static unsigned char known[MAXFD / 8];

static void mark(int fd)
{
	if (fd >= 0 && fd < MAXFD)
		known[fd / 8] |= 1 << (fd % 8);
}

static int is_known(int fd)
{
	return fd >= 0 && fd < MAXFD && (known[fd / 8] >> (fd % 8)) & 1;
}

/* Marks every number open now; with `list`, calls it for each number that
 * is open and not marked instead. */
static int scan_open(void (*list)(int))
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int self = dirfd(d), n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = atoi(e->d_name);
		if (fd == self)
			continue;
		if (!list) {
			mark(fd);
		} else if (!is_known(fd)) {
			list(fd);
			n++;
		}
	}
	closedir(d);
	return n;
}

static int devnull = -1;
static void onto(int fd)
{
	/* On the kernel there is none; on uaio they are its own, and the
	 * result is not printed (see the README on dup2). */
	(void)dup2(devnull, fd);
}

static void one(io_context_t ctx, struct iocb *cb, const char *what)
{
	struct iocb *cbs[1] = { cb };
	struct io_event ev;
	struct timespec ts = { 5, 0 };
	int r = io_submit(ctx, 1, cbs);
	int g = r == 1 ? io_getevents(ctx, 1, 1, &ev, &ts) : 0;
	printf("%s: submit %s getevents %s res %s\n", what, negret(r), negret(g), g == 1 ? negret(ev.res) : "-");
}

/* race: see the top. */
#define RACE_LO 100
#define RACE_HI 4400
#define RACE_ROUNDS 60
#define RACE_WRITES 8
static volatile int race_stop;
static int race_victim;

static void *race_closer(void *a)
{
	int hi = *(int *)a;
	while (!race_stop) {
		for (int n = RACE_LO; n < hi && !race_stop; n++)
			dup2(race_victim, n);
		close_range(RACE_LO, ~0U, 0);
	}
	return NULL;
}

struct race_worker {
	pthread_t t;
	int file;
	long errors;
};

static void *race_work(void *a)
{
	struct race_worker *w = a;
	static __thread char buf[RACE_WRITES][512];
	for (int round = 0; round < RACE_ROUNDS; round++) {
		int p[2];
		if (pipe(p) != 0 || write(p[1], "x", 1) != 1) {
			w->errors++;
			continue;
		}
		io_context_t ctx = 0;
		if (io_setup(16, &ctx) != 0) {
			w->errors++;
			close(p[0]);
			close(p[1]);
			continue;
		}
		struct iocb cb[RACE_WRITES + 2], *cbs[RACE_WRITES + 2];
		for (int i = 0; i < RACE_WRITES; i++) {
			memset(buf[i], 'a' + (round + i) % 26, sizeof buf[i]);
			io_prep_pwrite(&cb[i], w->file, buf[i], sizeof buf[i], (long long)i * 512);
		}
		io_prep_fdsync(&cb[RACE_WRITES], w->file);
		io_prep_poll(&cb[RACE_WRITES + 1], p[0], POLLIN);
		for (int i = 0; i < RACE_WRITES + 2; i++)
			cbs[i] = &cb[i];
		int n = io_submit(ctx, RACE_WRITES + 2, cbs);
		if (n != RACE_WRITES + 2)
			w->errors++;
		struct io_event ev[RACE_WRITES + 2];
		struct timespec ts = { 10, 0 };
		int got = 0;
		while (got < n) {
			int g = io_getevents(ctx, 1, n - got, ev + got, &ts);
			if (g <= 0)
				break;
			got += g;
		}
		if (got < (n > 0 ? n : 0))
			w->errors++;
		for (int i = 0; i < got; i++) {
			long k = (struct iocb *)ev[i].obj - cb;
			long want = k < RACE_WRITES ? 512 : k == RACE_WRITES ? 0 : POLLIN;
			if ((long)ev[i].res != want)
				w->errors++;
		}
		char back[512];
		for (int i = 0; i < RACE_WRITES; i++)
			if (pread(w->file, back, sizeof back, (off_t)i * 512) != 512 || memcmp(back, buf[i], 512) != 0)
				w->errors++;
		if (io_destroy(ctx) != 0)
			w->errors++;
		close(p[0]);
		close(p[1]);
	}
	return NULL;
}

static void race(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	int hi = rl.rlim_cur < RACE_HI ? (int)rl.rlim_cur : RACE_HI;
	race_victim = tmpfile_open("race-victim", O_RDWR | O_TRUNC);
	struct race_worker w[3];
	char name[32];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "race-%d", i);
		w[i].file = tmpfile_open(name, O_RDWR | O_TRUNC);
		w[i].errors = 0;
	}
	pthread_t closer;
	pthread_create(&closer, NULL, race_closer, &hi);
	for (int i = 0; i < 3; i++)
		pthread_create(&w[i].t, NULL, race_work, &w[i]);
	long errors = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(w[i].t, NULL);
		errors += w[i].errors;
	}
	race_stop = 1;
	pthread_join(closer, NULL);
	struct stat st;
	fstat(race_victim, &st);
	printf("race: %d contexts, calls or events that failed: %ld, victim file size %lld\n", 3 * RACE_ROUNDS, errors,
	       (long long)st.st_size);
}

/* In a child process: whether flock(LOCK_EX | LOCK_NB) of `path` succeeds
 * now. */
static int flock_free_elsewhere(const char *path)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(path, O_RDONLY);
		_exit(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void release(void)
{
	int fd = tmpfile_open("release", O_RDWR | O_TRUNC);
	static char block[4096] __attribute__((aligned(4096)));
	fill(block, sizeof block, 3);
	for (int i = 0; i < 4; i++)
		if (pwrite(fd, block, sizeof block, i * 4096) != 4096)
			perror("pwrite");
	fsync(fd);
	close(fd);
	const char *path = tmpfiles[0];
	int probe = open(path, O_RDONLY | O_DIRECT);
	if (probe < 0) {
		printf("release: skipped, O_DIRECT refused in %s: %s\n", tmpdir, strerror(errno));
		return;
	}
	close(probe);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	const char *ways[] = { "close", "close_range", "dup2", "fclose" };
	int devnull = open("/dev/null", O_RDONLY);
	for (int w = 0; w < 4; w++) {
		int free_after = 0, held_before = 0, reads_ok = 0;
		for (int round = 0; round < 20; round++) {
			int a = open(path, O_RDONLY | O_DIRECT);
			if (a < 0 || flock(a, LOCK_EX) != 0) {
				perror("open/flock");
				exit(2);
			}
			for (int k = 0; k < 3; k++) {
				struct iocb cb, *cbs[1] = { &cb };
				struct io_event ev;
				static char buf[4096] __attribute__((aligned(4096)));
				io_prep_pread(&cb, a, buf, sizeof buf, k * 4096);
				if (io_submit(ctx, 1, cbs) == 1 && io_getevents(ctx, 1, 1, &ev, NULL) == 1 && ev.res == 4096 &&
				    memcmp(buf, block, sizeof buf) == 0)
					reads_ok++;
			}
			held_before += !flock_free_elsewhere(path);
			if (w == 0)
				close(a);
			else if (w == 1)
				close_range(a, a, 0);
			else if (w == 2)
				dup2(devnull, a);
			else
				fclose(fdopen(a, "r"));
			free_after += flock_free_elsewhere(path);
			if (w == 2)
				close(a);
		}
		printf("%s: reads right %d of 60; flock held before %d of 20, free right after %d of 20\n", ways[w],
		       reads_ok, held_before, free_after);
	}
	/* Buffered writes and an fdatasync on a descriptor the program then
	 * closes with an inline system call, which no library sees. */
	int free_after = 0, held_before = 0, done_ok = 0;
	for (int round = 0; round < 20; round++) {
		int a = open(path, O_RDWR);
		if (a < 0 || flock(a, LOCK_EX) != 0) {
			perror("open/flock");
			exit(2);
		}
		struct iocb cb[5], *cbs[5];
		struct io_event ev[5];
		for (int k = 0; k < 4; k++)
			io_prep_pwrite(&cb[k], a, block, sizeof block, k * 4096);
		io_prep_fdsync(&cb[4], a);
		for (int k = 0; k < 5; k++)
			cbs[k] = &cb[k];
		int r = io_submit(ctx, 5, cbs), got = 0;
		while (r > 0 && got < r) {
			int n = io_getevents(ctx, 1, r - got, ev + got, NULL);
			if (n <= 0)
				break;
			got += n;
		}
		for (int k = 0; k < got; k++)
			done_ok += ev[k].res == (((struct iocb *)ev[k].obj)->aio_lio_opcode == IO_CMD_FDSYNC ? 0 : 4096);
		held_before += !flock_free_elsewhere(path);
		long rc;
		__asm__ volatile("syscall" : "=a"(rc) : "0"((long)SYS_close), "D"((long)a) : "rcx", "r11", "memory");
		free_after += rc == 0 && flock_free_elsewhere(path);
	}
	printf("raw close after buffered writes and an fdatasync: requests right %d of 100; flock held before %d of 20, "
	       "free right after %d of 20\n",
	       done_ok, held_before, free_after);
	close(devnull);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
}

/* lockrace: see the top. */
static int lr_fd, lr_batch;
static volatile int lr_stop;
static long lr_errors;

static void *lr_io(void *arg)
{
	long id = (long)arg;
	char *b;
	/* A context of its own: its events are its own requests', all
	 * reaped before the buffer goes. */
	io_context_t lr_ctx = 0;
	if (posix_memalign((void **)&b, 4096, 16 * 4096) || io_setup(64, &lr_ctx) != 0)
		exit(2);
	memset(b, 'q', 16 * 4096);
	struct iocb cb[16], *cbs[16];
	struct io_event ev[16];
	while (!lr_stop) {
		for (int i = 0; i < lr_batch; i++) {
			long off = ((id * lr_batch + i) % 64) * 4096;
			if ((i + id) & 1)
				io_prep_pwrite(&cb[i], lr_fd, b + i * 4096, 4096, off);
			else
				io_prep_pread(&cb[i], lr_fd, b + i * 4096, 4096, off);
			cbs[i] = &cb[i];
		}
		if (io_submit(lr_ctx, lr_batch, cbs) != lr_batch) {
			__sync_fetch_and_add(&lr_errors, 1);
			continue;
		}
		for (int got = 0; got < lr_batch;) {
			int r = io_getevents(lr_ctx, 1, lr_batch - got, ev, NULL);
			if (r <= 0) {
				__sync_fetch_and_add(&lr_errors, 1);
				break;
			}
			for (int k = 0; k < r; k++)
				if (ev[k].res != 4096)
					__sync_fetch_and_add(&lr_errors, 1);
			got += r;
		}
	}
	io_destroy(lr_ctx);
	free(b);
	return NULL;
}

static void lockrace_one(const char *what, int direct, int batch)
{
	int fd = tmpfile_open(what, O_RDWR | O_TRUNC | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		printf("%s: skipped, %s refused in %s: %s\n", what, direct ? "O_DIRECT" : "open", tmpdir, strerror(errno));
		return;
	}
	const char *path = tmpfiles[ntmpfiles - 1];
	char *z;
	if (posix_memalign((void **)&z, 4096, 64 * 4096) || (memset(z, 0, 64 * 4096), pwrite(fd, z, 64 * 4096, 0)) != 64 * 4096)
		exit(2);
	free(z);
	int other = open(path, O_RDWR);
	/* The checking process, made before any context. */
	int rq[2], rp[2];
	if (other < 0 || pipe(rq) || pipe(rp))
		exit(2);
	pid_t checker = fork();
	if (checker == 0) {
		close(rq[1]);
		close(rp[0]);
		int cf = open(path, O_RDWR);
		char c;
		while (read(rq[0], &c, 1) == 1) {
			struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
			fcntl(cf, F_GETLK, &q);
			c = q.l_type == F_UNLCK ? '0' : '1';
			if (write(rp[1], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(rq[0]);
	close(rp[1]);
	lr_fd = fd;
	lr_batch = batch;
	lr_stop = 0;
	lr_errors = 0;
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, lr_io, (void *)i);
	long rounds = 0, lost = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int lfd = (rounds & 1) ? other : fd;
		if (fcntl(lfd, F_SETLK, &fl) != 0) {
			perror("F_SETLK");
			exit(2);
		}
		char c = '?';
		if (write(rq[1], &c, 1) != 1 || read(rp[0], &c, 1) != 1)
			exit(2);
		lost += c == '0';
		struct flock u = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
		fcntl(lfd, F_SETLK, &u);
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - t0.tv_sec < 1 || (now.tv_sec - t0.tv_sec == 1 && now.tv_nsec < t0.tv_nsec));
	lr_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	close(rq[1]);
	waitpid(checker, NULL, 0);
	close(rp[0]);
	close(other);
	close(fd);
	printf("%s: lock found free while held %ld time(s)%s, failed requests %ld\n", what, lost,
	       rounds > 100 ? "" : " (too few rounds)", lr_errors);
}

static void lockrace(void)
{
	lockrace_one("O_DIRECT, one at a time", 1, 1);
	lockrace_one("O_DIRECT, batches of 16", 1, 16);
	lockrace_one("buffered, batches of 16", 0, 16);
}

/* reuse: see the top. */
#define REUSE_ROUNDS 3000
static void reuse(void)
{
	int w = tmpfile_open("reuse", O_RDWR | O_TRUNC);
	const char bytes[] = "0123456789abcdef";
	if (w < 0 || pwrite(w, bytes, 16, 0) != 16) {
		perror("reuse setup");
		exit(2);
	}
	close(w);
	const char *path = tmpfiles[0];
	int file = open(path, O_RDONLY), dir = open(tmpdir, O_RDONLY);
	int n = dup(file);
	if (file < 0 || dir < 0 || n < 0 || fcntl(file, F_GETFL) != fcntl(dir, F_GETFL)) {
		printf("reuse: the file and the directory differ in status flags, or did not open\n");
		exit(2);
	}
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	const char *ways[] = { "dup2", "close+open", "close_range+open" };
	/* [way][directory?]: empty reads answered as for that file, 16-byte
	 * reads answered so, anything else. */
	int empty_right[3][2] = { { 0 } }, full_right[3][2] = { { 0 } }, wrong[3][2] = { { 0 } };
	for (int i = 0; i < REUSE_ROUNDS; i++) {
		int d = i % 2, way = (i / 2) % 3;
		if (way == 0) {
			dup2(d ? dir : file, n);
		} else {
			if (way == 1)
				close(n);
			else
				close_range(n, n, 0);
			if (open(d ? tmpdir : path, O_RDONLY) != n) {
				printf("reuse: the number was not handed out again\n");
				exit(2);
			}
		}
		/* An empty read, then one of 16 bytes: on the kernel the
		 * directory's fail in io_submit with EINVAL (no read_iter), the
		 * file's read 0 and its 16 bytes. */
		for (int len = 0; len <= 16; len += 16) {
			char buf[16] = { 0 };
			struct iocb cb, *cbs[1] = { &cb };
			struct io_event ev;
			struct timespec ts = { 5, 0 };
			io_prep_pread(&cb, n, buf, len, 0);
			int r = io_submit(ctx, 1, cbs), right;
			if (d) {
				right = r == -EINVAL;
			} else {
				int g = r == 1 ? io_getevents(ctx, 1, 1, &ev, &ts) : 0;
				right = g == 1 && ev.res == len && memcmp(buf, bytes, len) == 0;
			}
			if (!right)
				wrong[way][d]++;
			else if (len == 0)
				empty_right[way][d]++;
			else
				full_right[way][d]++;
		}
	}
	for (int way = 0; way < 3; way++)
		for (int d = 0; d < 2; d++)
			printf("%s, %s: empty reads right %d, 16-byte reads right %d, wrong %d\n", ways[way],
			       d ? "directory" : "file", empty_right[way][d], full_right[way][d], wrong[way][d]);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	close(n);
	close(file);
	close(dir);
}

/* closerace: see the top. */
static volatile int cr_stop;
static int cr_num, cr_a, cr_b;

static void *cr_swapper(void *arg)
{
	(void)arg;
	unsigned x = 1;
	while (!cr_stop) {
		x = x * 1103515245 + 12345;
		switch ((x >> 16) % 4) {
		case 0:
			dup2(cr_a, cr_num);
			break;
		case 1:
			dup3(cr_b, cr_num, 0);
			break;
		case 2:
			close(cr_num);
			dup2(cr_a, cr_num);
			break;
		default:
			syscall(SYS_close, cr_num);
			dup2(cr_b, cr_num);
			break;
		}
	}
	return NULL;
}

static void closerace(void)
{
	cr_a = tmpfile_open("cr_a", O_RDWR | O_TRUNC);
	cr_b = tmpfile_open("cr_b", O_RDWR | O_TRUNC);
	cr_num = dup(cr_a);
	io_context_t ctx = 0;
	if (cr_a < 0 || cr_b < 0 || cr_num < 0 || io_setup(64, &ctx) != 0) {
		printf("closerace: setup failed\n");
		return;
	}
	pthread_t t;
	pthread_create(&t, NULL, cr_swapper, NULL);
	static char bufs[32][16];
	long accepted = 0, refused = 0, ebadf_events = 0, other = 0;
	for (int round = 0; round < 300; round++) {
		struct iocb cb[32];
		for (int i = 0; i < 32; i++) {
			struct iocb *p = &cb[i];
			long tag = (long)round * 32 + i;
			snprintf(bufs[i], sizeof bufs[i], "T%014ld", tag);
			if (i % 2)
				io_prep_pwrite(p, cr_num, bufs[i], 16, tag * 16);
			else
				io_prep_pread(p, cr_num, bufs[i], 16, 0);
			long r = io_submit(ctx, 1, &p);
			if (r == 1)
				accepted++;
			else if (r == -EBADF)
				refused++;
			else
				other++;
		}
		struct io_event ev[32];
		struct timespec ts = { 10, 0 };
		long want = accepted, got = 0;
		static long reaped;
		while (reaped + got < want) {
			long g = io_getevents(ctx, 1, 32, ev, &ts);
			if (g <= 0)
				break;
			for (long e = 0; e < g; e++)
				if ((long)ev[e].res == -EBADF)
					ebadf_events++;
			got += g;
		}
		reaped += got;
	}
	cr_stop = 1;
	pthread_join(t, NULL);
	/* How many of each depends on when the swapper runs (on the kernel
	 * too: with the swapper preempted between its close and its dup2 for
	 * the whole loop, every request is refused; before it first runs,
	 * every one is accepted), so only the kinds of answer are compared. */
	printf("closerace: io_submit accepted or refused with EBADF every request: %d\n", other == 0);
	printf("closerace: accepted requests that ended with EBADF: %ld\n", ebadf_events);
	if (other || refused == 0)
		fprintf(stderr, "closerace: accepted %ld, refused %ld, other %ld\n", accepted, refused, other);
	io_destroy(ctx);
}

/* full: see the top. */
#define FULL_ROUNDS 20
#define FULL_N 8
#define FULL_SYNCS 300
struct full_submit {
	io_context_t ctx;
	int n;
	struct iocb **cbs;
	int r;
};
static void *full_submitter(void *arg)
{
	struct full_submit *fs = arg;
	fs->r = io_submit(fs->ctx, fs->n, fs->cbs);
	/* Returns (a pthread_exit would need libgcc_s, which a full table
	 * cannot open). */
	return NULL;
}
static void full(void)
{
	static char data[FULL_N][4096] __attribute__((aligned(4096)));
	static char back[FULL_N][4096] __attribute__((aligned(4096)));
	static char other[FULL_N * 4096];
	static struct iocb cb[FULL_SYNCS + FULL_N + 1], *cbs[FULL_SYNCS + FULL_N + 1];
	static struct io_event ev[FULL_SYNCS + FULL_N + 1];
	int d = tmpfile_open("full-d", O_RDWR | O_TRUNC), y = tmpfile_open("full-y", O_RDWR | O_TRUNC);
	int p[2];
	if (d < 0 || y < 0 || pipe(p) != 0) {
		perror("full setup");
		exit(2);
	}
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(512, &ctx)));
	/* The table filled: every number up to the soft limit taken. */
	int first = -1, last = -1;
	for (;;) {
		int f = open("/dev/null", O_RDONLY);
		if (f < 0)
			break;
		if (first < 0)
			first = f;
		last = f;
	}
	printf("table full: %s\n", first >= 0 ? ename(errno) : "nothing opened");
	const char *what[] = { "buffered writes", "cold buffered reads", "write and fdatasync",
			       "300 fdatasyncs then buffered writes", "cold buffered reads and fdatasync from a thread that ended" };
	for (int kind = 0; kind < 5; kind++) {
		int right = 0, wrong_file = 0, other_touched = 0, failed = 0;
		for (int round = 0; round < (kind == 3 ? 5 : FULL_ROUNDS); round++) {
			int f = open(tmpfiles[0], O_RDWR), g = open(tmpfiles[1], O_RDWR);
			/* Two numbers freed for the two files: the table is full again. */
			if (f < 0 || g < 0) {
				close(last--);
				close(last--);
				f = f < 0 ? open(tmpfiles[0], O_RDWR) : f;
				g = g < 0 ? open(tmpfiles[1], O_RDWR) : g;
			}
			if (f < 0 || g < 0) {
				printf("full: the files did not open\n");
				exit(2);
			}
			for (int i = 0; i < FULL_N; i++)
				fill(data[i], 4096, 100 * kind + 10 * round + i);
			memset(other, 0x5a, sizeof other);
			if (ftruncate(d, 0) || ftruncate(y, 0) || pwrite(y, other, sizeof other, 0) != (ssize_t)sizeof other) {
				perror("full: set up the files");
				exit(2);
			}
			if (kind == 1 || kind == 4) {
				for (int i = 0; i < FULL_N; i++)
					if (pwrite(d, data[i], 4096, (off_t)i * 4096) != 4096)
						exit(2);
				fdatasync(d);
				posix_fadvise(d, 0, 0, POSIX_FADV_DONTNEED);
				memset(back, 0, sizeof back);
			}
			/* The requests: syncs first (kind 3), then the transfers,
			 * then a sync (kinds 2 and 4). */
			int reads = kind == 1 || kind == 4, n = 0, writes = reads ? 0 : kind == 2 ? 1 : FULL_N;
			if (kind == 3)
				for (; n < FULL_SYNCS; n++)
					io_prep_fdsync(&cb[n], f);
			for (int i = 0; i < (kind == 2 ? 1 : FULL_N); i++, n++) {
				if (reads)
					io_prep_pread(&cb[n], f, back[i], 4096, (off_t)i * 4096);
				else
					io_prep_pwrite(&cb[n], f, data[i], 4096, (off_t)i * 4096);
			}
			if (kind == 2 || kind == 4)
				io_prep_fdsync(&cb[n++], f);
			for (int i = 0; i < n; i++)
				cbs[i] = &cb[i];
			int r;
			if (kind == 4) {
				struct full_submit fs = { ctx, n, cbs, 0 };
				pthread_t t;
				if (pthread_create(&t, NULL, full_submitter, &fs) != 0) {
					printf("full: no thread\n");
					exit(2);
				}
				pthread_join(t, NULL);
				r = fs.r;
			} else {
				r = io_submit(ctx, n, cbs);
			}
			dup2(kind == 2 ? p[0] : g, f);
			struct timespec ts = { 20, 0 };
			int got = 0;
			while (r > 0 && got < r) {
				int k = io_getevents(ctx, 1, r - got, ev + got, &ts);
				if (k <= 0)
					break;
				got += k;
			}
			int ok = r == n && got == n;
			for (int i = 0; i < got; i++) {
				struct iocb *c = ev[i].obj;
				long want = c->aio_lio_opcode == IO_CMD_FDSYNC ? 0 : 4096;
				ok &= ev[i].res == want && ev[i].res2 == 0;
			}
			/* What the file and the other file hold now (read through
			 * the numbers opened before the table was filled). */
			int good = 1;
			for (int i = 0; i < (reads ? FULL_N : writes); i++) {
				if (!reads && pread(d, back[i], 4096, (off_t)i * 4096) != 4096)
					good = 0;
				good &= memcmp(back[i], data[i], 4096) == 0;
			}
			static char now[FULL_N * 4096];
			int untouched = pread(y, now, sizeof now, 0) == (ssize_t)sizeof now && memcmp(now, other, sizeof now) == 0;
			if (!ok)
				failed++;
			else if (!good)
				wrong_file++;
			else
				right++;
			if (!untouched)
				other_touched++;
			close(f);
			close(g);
		}
		printf("%s: right %d, on another file %d, failed %d; other file written %d\n", what[kind], right,
		       wrong_file, failed, other_touched);
	}
	for (int f = first; f >= 0 && f <= last; f++)
		close(f);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	close(p[0]);
	close(p[1]);
	close(d);
	close(y);
}

/* A system call of three arguments made by a system call instruction of
 * the program's own, as a static helper or another language's runtime
 * makes it: the drop-in's wrappers and its syscall() do not see it.
 * Returns -errno on failure. */
static long inline_syscall3(long nr, long a, long b, long c)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
#else
	long ret = syscall(nr, a, b, c);
	return ret < 0 ? -errno : ret;
#endif
}

/* close_range(2) made so. */
static long asm_close_range(unsigned first, unsigned last, unsigned flags)
{
	long ret = inline_syscall3(SYS_close_range, first, last, flags);
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

/* Processor time the process used, in seconds. */
static double cpu_seconds(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* setfl: see the top. */
#define SETFL_ROUNDS 300

static int inline_close(int fd)
{
	return (int)inline_syscall3(SYS_close, fd, 0, 0);
}

/* fcntl(fd, F_SETFL, fl) made so. */
static int inline_setfl(int fd, int fl)
{
	return (int)inline_syscall3(SYS_fcntl, fd, F_SETFL, fl);
}

/* One read (or write) of 4096 bytes at offset 0 into (from) `buf`: the
 * event's result, or io_submit's answer when it refused (*refused set). */
static long rw_once(io_context_t ctx, int fd, char *buf, int write, int *refused)
{
	struct iocb cb, *cbs[1] = { &cb };
	struct io_event ev;
	struct timespec ts = { 5, 0 };
	if (write)
		io_prep_pwrite(&cb, fd, buf, 4096, 0);
	else
		io_prep_pread(&cb, fd, buf, 4096, 0);
	int r = io_submit(ctx, 1, cbs);
	*refused = r != 1;
	if (r != 1)
		return r < 0 ? r : -1000;
	return io_getevents(ctx, 1, 1, &ev, &ts) == 1 ? (long)ev.res : -1001;
}

static long read_once(io_context_t ctx, int fd, char *buf, int *refused)
{
	return rw_once(ctx, fd, buf, 0, refused);
}

static void setfl(void)
{
	static char data[8192];
	fill(data, sizeof data, 3);
	int fd = tmpfile_open("setfl", O_RDWR | O_TRUNC);
	if (write(fd, data, sizeof data) != (ssize_t)sizeof data || fsync(fd) != 0) {
		perror("setfl: write");
		exit(2);
	}
	int base = fcntl(fd, F_GETFL);
	if (fcntl(fd, F_SETFL, base | O_DIRECT) != 0) {
		printf("setfl: O_DIRECT cannot be set here\n");
		exit(2);
	}
	fcntl(fd, F_SETFL, base);
	char *aligned = NULL;
	if (posix_memalign((void **)&aligned, 4096, 3 * 4096) != 0)
		exit(2);
	char *odd = aligned + 1;
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	const char *ways[] = { "fcntl", "fcntl64", "syscall" };
	/* [way][O_DIRECT?]: misaligned reads answered as the flags ask, and
	 * anything else (with the first wrong answer). */
	int right[3][2] = { { 0 } }, wrong[3][2] = { { 0 } };
	long first_wrong[3][2] = { { 0 } };
	for (int i = 0; i < SETFL_ROUNDS; i++) {
		int way = i % 3;
		for (int direct = 1; direct >= 0; direct--) {
			/* A read just before, so that the number was looked at a
			 * moment ago. */
			int refused;
			read_once(ctx, fd, aligned, &refused);
			int fl = direct ? base | O_DIRECT : base;
			int set = way == 0 ? fcntl(fd, F_SETFL, fl)
				  : way == 1 ? fcntl64(fd, F_SETFL, fl)
					     : (int)syscall(SYS_fcntl, fd, F_SETFL, fl);
			long r = read_once(ctx, fd, odd, &refused);
			int ok = set == 0 && !refused &&
				 (direct ? r == -EINVAL : r == 4096 && memcmp(odd, data, 4096) == 0);
			if (ok) {
				right[way][direct]++;
			} else if (wrong[way][direct]++ == 0) {
				first_wrong[way][direct] = r;
			}
		}
	}
	for (int way = 0; way < 3; way++)
		for (int direct = 1; direct >= 0; direct--)
			printf("O_DIRECT %s by %s: misaligned reads right %d, wrong %d%s%s\n", direct ? "set" : "cleared",
			       ways[way], right[way][direct], wrong[way][direct], wrong[way][direct] ? ", first " : "",
			       wrong[way][direct] ? negret(first_wrong[way][direct]) : "");
	/* Closed by an instruction right after a read: refused in io_submit
	 * (an event with -EBADF would mean the read was accepted). The same
	 * for buffered writes (uaio runs them inside io_submit, and confirms a
	 * number it looked at in an earlier call only when one does not run
	 * there); the data written is the file's own. */
	for (int write = 0; write < 2; write++) {
		int refused_badf = 0, other = 0;
		char first_other[64] = "";
		for (int i = 0; i < SETFL_ROUNDS; i++) {
			int n = dup(fd), refused;
			char *buf = write ? data : aligned;
			rw_once(ctx, n, buf, write, &refused);
			inline_close(n);
			long r = rw_once(ctx, n, buf, write, &refused);
			if (refused && r == -EBADF)
				refused_badf++;
			else if (other++ == 0)
				snprintf(first_other, sizeof first_other, ", first: %s %s",
					 refused ? "io_submit" : "event", negret(r));
		}
		printf("%s a number closed by an inline system call: refused with EBADF %d, other %d%s\n",
		       write ? "writes to" : "reads of", refused_badf, other, first_other);
	}
	/* O_DIRECT set and cleared by an inline system call right after a
	 * write: a misaligned write that follows at once is refused with
	 * EINVAL (in its event) while the number is O_DIRECT, and writes 4096
	 * bytes otherwise; an aligned one writes 4096 bytes either way. */
	int wright[2][2] = { { 0 } }, wwrong[2][2] = { { 0 } };
	long wfirst[2][2] = { { 0 } };
	memcpy(aligned, data, 4096);
	memcpy(odd, data, 4096);
	for (int i = 0; i < SETFL_ROUNDS; i++) {
		int misaligned = i % 2;
		for (int direct = 1; direct >= 0; direct--) {
			int refused;
			rw_once(ctx, fd, aligned, 1, &refused);
			int set = inline_setfl(fd, direct ? base | O_DIRECT : base);
			long r = rw_once(ctx, fd, misaligned ? odd : aligned, 1, &refused);
			int ok = set == 0 && !refused && (direct && misaligned ? r == -EINVAL : r == 4096);
			if (ok) {
				wright[misaligned][direct]++;
			} else if (wwrong[misaligned][direct]++ == 0) {
				wfirst[misaligned][direct] = refused ? -2000 + r : r;
			}
		}
	}
	inline_setfl(fd, base);
	for (int misaligned = 0; misaligned < 2; misaligned++)
		for (int direct = 1; direct >= 0; direct--)
			printf("O_DIRECT %s by an inline system call: %s writes right %d, wrong %d%s%s\n",
			       direct ? "set" : "cleared", misaligned ? "misaligned" : "aligned",
			       wright[misaligned][direct], wwrong[misaligned][direct],
			       wwrong[misaligned][direct] ? ", first " : "",
			       wwrong[misaligned][direct] ? negret(wfirst[misaligned][direct]) : "");
	/* A pipe's read end put on the number by an inline dup2 right after a
	 * write to the file, then a write of part of a page: refused with
	 * EBADF, and the pipe keeps its bytes (uaio's look at the number is
	 * the file's until it asks; a probe it made of the page took a byte
	 * of the pipe). */
	int pipe_badf = 0, pipe_intact = 0;
	for (int i = 0; i < SETFL_ROUNDS; i++) {
		int n = dup(fd), pp[2], refused;
		if (pipe(pp) != 0 || write(pp[1], "PIPEDATA", 8) != 8)
			exit(2);
		rw_once(ctx, n, aligned, 1, &refused);
		inline_syscall3(SYS_dup2, pp[0], n, 0);
		struct iocb cb, *cbs[1] = { &cb };
		io_prep_pwrite(&cb, n, data, 100, 10);
		pipe_badf += io_submit(ctx, 1, cbs) == -EBADF;
		char got[16] = "";
		pipe_intact += read(pp[0], got, sizeof got) == 8 && memcmp(got, "PIPEDATA", 8) == 0;
		close(pp[0]);
		close(pp[1]);
		close(n);
	}
	printf("part-page writes to a pipe's read end put on the number by an inline dup2: refused with EBADF %d, pipe intact %d\n",
	       pipe_badf, pipe_intact);
	/* Writes of 4 MiB (which go to a backend) through a number that an
	 * inline dup2 switches between two files after each: each lands in the
	 * file the number named at io_submit, whole (the thread pool gave some
	 * the duplicate it held of the other file, or failed them with EBADF
	 * after taking a new duplicate for the file the engine had seen). */
	enum { BIG = 4 << 20, NBIG = 12 };
	char *big = malloc((size_t)BIG * NBIG);
	int ba = tmpfile_open("setfl-a", O_RDWR | O_TRUNC), bb = tmpfile_open("setfl-b", O_RDWR | O_TRUNC);
	int bn = dup(ba), accepted = 0, whole = 0, placed = 0, misplaced = 0;
	if (!big || bn < 0)
		exit(2);
	struct iocb bcb[NBIG];
	for (int i = 0; i < NBIG; i++) {
		struct iocb *one = &bcb[i];
		memset(big + (size_t)i * BIG, 'A' + i, BIG);
		io_prep_pwrite(one, bn, big + (size_t)i * BIG, BIG, (long long)i * BIG);
		accepted += io_submit(ctx, 1, &one) == 1;
		inline_syscall3(SYS_dup2, i % 2 ? ba : bb, bn, 0);
	}
	for (int got = 0; got < accepted;) {
		struct io_event ev[NBIG];
		struct timespec ts = { 20, 0 };
		int g = io_getevents(ctx, 1, NBIG, ev, &ts);
		if (g <= 0)
			break;
		for (int i = 0; i < g; i++)
			whole += ev[i].res == BIG;
		got += g;
	}
	for (int i = 0; i < NBIG; i++) {
		char in_a = 0, in_b = 0;
		pread(ba, &in_a, 1, (off_t)i * BIG);
		pread(bb, &in_b, 1, (off_t)i * BIG);
		int want_a = i % 2 == 0;
		placed += (want_a ? in_a : in_b) == 'A' + i;
		misplaced += (want_a ? in_b : in_a) == 'A' + i;
	}
	printf("4 MiB writes through a number an inline dup2 switches after each: accepted %d, whole %d, in the right file %d, in the other %d\n",
	       accepted, whole, placed, misplaced);
	close(bn);
	close(ba);
	close(bb);
	free(big);
	/* Buffered writes and reads of parts of pages that are not in the page
	 * cache (they wait in a backend), from misaligned buffers, then
	 * O_DIRECT set on the number through the C library at once: the
	 * kernel did them in io_submit, as buffered I/O; uaio's backend ran
	 * them on an open file that was O_DIRECT by then (every one failed
	 * with EINVAL, nothing written). */
	enum { PARTS = 64, SPAN = 8 << 20 };
	int uf = tmpfile_open("setfl-uncached", O_RDWR | O_TRUNC);
	char *fill_buf = malloc(SPAN);
	static char ubuf[PARTS][128], uin[PARTS][128];
	if (!fill_buf)
		exit(2);
	memset(fill_buf, 'z', SPAN);
	if (pwrite(uf, fill_buf, SPAN, 0) != SPAN || fsync(uf) != 0)
		exit(2);
	free(fill_buf);
	int uok = 0, urok = 0, uplaced = 0, uread_right = 0;
	for (int reads = 0; reads < 2; reads++) {
		posix_fadvise(uf, 0, 0, POSIX_FADV_DONTNEED);
		struct iocb ucb[PARTS], *ucbs[PARTS];
		for (int i = 0; i < PARTS; i++) {
			off_t at = (off_t)(i % 8) * (1 << 20) + 7 + (i / 8) * 100;
			memset(ubuf[i], 'a' + i % 26, 100);
			if (reads)
				io_prep_pread(&ucb[i], uf, uin[i] + 1, 100, at);
			else
				io_prep_pwrite(&ucb[i], uf, ubuf[i] + 1, 100, at);
			ucbs[i] = &ucb[i];
		}
		int fl = fcntl(uf, F_GETFL);
		int s = io_submit(ctx, PARTS, ucbs);
		fcntl(uf, F_SETFL, fl | O_DIRECT);
		for (int got = 0; got < s;) {
			struct io_event ev[PARTS];
			struct timespec ts = { 20, 0 };
			int g = io_getevents(ctx, 1, PARTS, ev, &ts);
			if (g <= 0)
				break;
			for (int i = 0; i < g; i++)
				*(reads ? &urok : &uok) += ev[i].res == 100;
			got += g;
		}
		fcntl(uf, F_SETFL, fl);
		for (int i = 0; i < PARTS; i++) {
			char in[100];
			off_t at = (off_t)(i % 8) * (1 << 20) + 7 + (i / 8) * 100;
			if (!reads)
				uplaced += pread(uf, in, 100, at) == 100 && memcmp(in, ubuf[i] + 1, 100) == 0;
			else
				uread_right += memcmp(uin[i] + 1, ubuf[i] + 1, 100) == 0;
		}
	}
	printf("buffered part-page writes of uncached pages, O_DIRECT set right after io_submit: %d of %d written, %d in place\n",
	       uok, PARTS, uplaced);
	printf("buffered part-page reads of uncached pages, O_DIRECT set right after io_submit: %d of %d read, %d right\n",
	       urok, PARTS, uread_right);
	close(uf);
	char back[8192];
	printf("file after the writes: %s\n",
	       pread(fd, back, sizeof back, 0) == (ssize_t)sizeof back && memcmp(back, data, sizeof back) == 0
		       ? "as written"
		       : "different");
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	close(fd);
	free(aligned);
}

/* append-after: see the top. */
static void append_after(void)
{
	char *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, 16 * 4096) != 0)
		exit(2);
	for (int i = 0; i < 16; i++)
		memset(buf + i * 4096, 'a' + i, 4096);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(32, &ctx)));
	for (int set = 0; set < 2; set++) {
		int as_submitted = 0, other = 0, failed = 0;
		for (int round = 0; round < 20; round++) {
			int fd = tmpfile_open("append-after", O_RDWR | O_TRUNC | O_DIRECT | (set ? 0 : O_APPEND));
			if (ftruncate(fd, 65536) != 0)
				exit(2);
			struct iocb cbs[16], *cps[16];
			for (int i = 0; i < 16; i++) {
				io_prep_pwrite(&cbs[i], fd, buf + i * 4096, 4096, (long long)i * 4096);
				cps[i] = &cbs[i];
			}
			int r = io_submit(ctx, 16, cps);
			int fl = fcntl(fd, F_GETFL);
			fcntl(fd, F_SETFL, set ? fl | O_APPEND : fl & ~O_APPEND);
			struct io_event ev[16];
			struct timespec ts = { 10, 0 };
			int got = 0;
			while (r == 16 && got < 16) {
				int g = io_getevents(ctx, 1, 16, ev + got, &ts);
				if (g <= 0)
					break;
				got += g;
			}
			for (int i = 0; i < got; i++)
				failed += ev[i].res != 4096;
			failed += got != 16;
			/* O_APPEND at submission: 16 blocks after the 64 KiB of
			 * zeros, in some order; without: blocks a..p at 0..60 KiB. */
			struct stat st;
			fstat(fd, &st);
			/* Read back through a buffered descriptor of the file. */
			char self[64];
			snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
			int rd = open(self, O_RDONLY);
			int right = 0;
			if (!set && st.st_size == 131072) {
				char first[1];
				right = pread(rd, first, 1, 0) == 1 && first[0] == 0;
			} else if (set && st.st_size == 65536) {
				right = 1;
				for (int i = 0; i < 16; i++) {
					char c[1];
					right &= pread(rd, c, 1, (off_t)i * 4096) == 1 && c[0] == 'a' + i;
				}
			}
			close(rd);
			right ? as_submitted++ : other++;
			close(fd);
		}
		printf("O_APPEND %s right after io_submit: writes placed as at io_submit %d, otherwise %d, failed %d\n",
		       set ? "set" : "cleared", as_submitted, other, failed);
	}
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	free(buf);
}

/* freopen: see the top. */
#define FREOPEN_ROUNDS 1000

static void freopen_mode(void)
{
	int a = tmpfile_open("freopen-a", O_RDWR | O_TRUNC), b = tmpfile_open("freopen-b", O_RDWR | O_TRUNC);
	const char *pa = tmpfiles[0], *pb = tmpfiles[1];
	static char zeros[FREOPEN_ROUNDS];
	if (write(a, zeros, sizeof zeros) != (ssize_t)sizeof zeros || write(b, zeros, sizeof zeros) != (ssize_t)sizeof zeros)
		exit(2);
	close(a);
	close(b);
	FILE *f = fopen(pa, "r+");
	if (!f)
		exit(2);
	int n = fileno(f);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	const char *what[] = { "write", "fsync", "read" };
	int right[3] = { 0 }, wrong[3] = { 0 }, moved = 0;
	char first_wrong[3][48] = { "", "", "" };
	for (int i = 0; i < FREOPEN_ROUNDS; i++) {
		f = freopen(i % 2 ? pa : pb, "r+", f);
		if (!f || fileno(f) != n) {
			moved++;
			break;
		}
		/* The byte at i is written in the file named now: 'b' in B for
		 * even rounds, 'a' in A for odd ones. */
		char byte = i % 2 ? 'a' : 'b', back[1] = { 0 };
		for (int k = 0; k < 3; k++) {
			struct iocb cb, *cbs[1] = { &cb };
			struct io_event ev;
			struct timespec ts = { 5, 0 };
			if (k == 0)
				io_prep_pwrite(&cb, n, &byte, 1, i);
			else if (k == 1)
				io_prep_fsync(&cb, n);
			else
				io_prep_pread(&cb, n, back, 1, i);
			int r = io_submit(ctx, 1, cbs);
			long res = r == 1 ? (io_getevents(ctx, 1, 1, &ev, &ts) == 1 ? (long)ev.res : -1001) : r;
			int ok = k == 1 ? res == 0 : res == 1 && (k == 0 || back[0] == byte);
			if (ok) {
				right[k]++;
			} else if (wrong[k]++ == 0) {
				snprintf(first_wrong[k], sizeof first_wrong[k], ", first %s%s", r == 1 ? "event " : "io_submit ",
					 negret(res));
			}
		}
	}
	for (int k = 0; k < 3; k++)
		printf("%s after freopen: right %d, wrong %d%s\n", what[k], right[k], wrong[k], first_wrong[k]);
	printf("freopen kept the number: %s\n", moved ? "no" : "yes");
	fclose(f);
	/* Each file holds its own rounds' bytes and zeros elsewhere. */
	for (int which = 0; which < 2; which++) {
		char got[FREOPEN_ROUNDS];
		int fd = open(which ? pb : pa, O_RDONLY), bad = 0;
		if (fd < 0 || read(fd, got, sizeof got) != (ssize_t)sizeof got)
			exit(2);
		for (int i = 0; i < FREOPEN_ROUNDS; i++) {
			char want = (i % 2 == 0) == (which == 1) ? (which ? 'b' : 'a') : 0;
			bad += got[i] != want;
		}
		printf("file %s: bytes not as written %d\n", which ? "B" : "A", bad);
		close(fd);
	}
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "close_range";
	/* The modes with a function of their own, each in a temporary
	 * directory (which race leaves in place, as it always did). */
	static const struct {
		const char *name;
		void (*run)(void);
		int keep_tmpdir;
	} own[] = {
		{ "closerace", closerace, 0 }, { "reuse", reuse, 0 },	  { "race", race, 1 },
		{ "lockrace", lockrace, 0 },   { "full", full, 0 },	  { "release", release, 0 },
		{ "setfl", setfl, 0 },	       { "freopen", freopen_mode, 0 },	{ "append-after", append_after, 0 },
	};
	for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
		if (strcmp(mode, own[i].name) == 0) {
			make_tmpdir();
			own[i].run();
			if (!own[i].keep_tmpdir)
				rm_tmpdir();
			return 0;
		}
	}
	make_tmpdir();
	scan_open(NULL); /* inherited */
	int fd = tmpfile_open("fdconform", O_RDWR | O_TRUNC);
	int p[2];
	if (fd < 0 || pipe(p) != 0) {
		perror("setup");
		return 2;
	}
	mark(fd);
	mark(p[0]);
	mark(p[1]);
	devnull = open("/dev/null", O_RDWR);
	mark(devnull);

	io_context_t ctx = 0;
	CASE("io_setup");
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));

	CASE("before");
	static char data[4096], back[4096];
	fill(data, sizeof data, 7);
	struct iocb w, poll, r;
	io_prep_pwrite(&w, fd, data, 512, 0);
	one(ctx, &w, "write");
	io_prep_poll(&poll, p[0], POLLIN);
	poll.data = (void *)7;
	struct iocb *cbs[1] = { &poll };
	printf("poll in flight: submit %s\n", negret(io_submit(ctx, 1, cbs)));

	CASE(mode);
	long rc = 0;
	if (strcmp(mode, "close_range") == 0) {
		/* Only the program's own numbers are reopened afterwards. */
		rc = close_range(3, ~0U, 0);
	} else if (strcmp(mode, "sys-close") == 0) {
		rc = syscall(SYS_close_range, 3, ~0U, 0);
	} else if (strcmp(mode, "asm-close") == 0) {
		rc = asm_close_range(3, ~0U, 0);
	} else if (strcmp(mode, "closefrom") == 0) {
		closefrom(3);
	} else if (strcmp(mode, "close-each") == 0) {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		int max = rl.rlim_cur > MAXFD ? MAXFD : (int)rl.rlim_cur;
		int unexpected = 0;
		for (int i = 3; i < max; i++) {
			int k = is_known(i);
			int c = close(i);
			if (!k && !(c == -1 && errno == EBADF))
				unexpected++;
		}
		printf("closes of numbers never opened that did not fail with EBADF: %d\n", unexpected);
	} else if (strcmp(mode, "dup2") == 0) {
		scan_open(onto);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("%s: %s\n", mode, rc == 0 ? "0" : ename(errno));
	if (strcmp(mode, "asm-close") == 0) {
		/* Nothing runs for a second: the process stays idle (a thread
		 * polling a closed number would use the whole second). */
		double before = cpu_seconds();
		sleep(1);
		printf("idle second: processor time %s\n", cpu_seconds() - before < 0.5 ? "under 0.5 s" : "0.5 s or more");
	}
	int closed = strcmp(mode, "dup2") != 0;
	if (closed) {
		/* The program's file and pipe are gone with the rest: opened
		 * again. The POLL in flight holds the old pipe's read end, as
		 * the kernel's request holds its file. */
		fd = tmpfile_open("fdconform-after", O_RDWR | O_TRUNC);
		if (pipe(p) != 0) {
			perror("pipe");
			return 2;
		}
	}

	CASE("after");
	if (!closed) {
		printf("pipe written: %zd\n", write(p[1], "x", 1));
		struct io_event ev;
		struct timespec ts = { 5, 0 };
		int g = io_getevents(ctx, 1, 1, &ev, &ts);
		printf("poll in flight: getevents %s res %s data %ld\n", negret(g), g == 1 ? negret(ev.res) : "-",
		       g == 1 ? (long)ev.data : -1L);
	} else {
		/* Its pipe's write end is closed: the read end, which the
		 * request holds, is at end of file (POLLHUP). */
		struct io_event ev;
		struct timespec ts = { 5, 0 };
		int g = io_getevents(ctx, 1, 1, &ev, &ts);
		printf("poll in flight, pipe closed: getevents %s res %s data %ld\n", negret(g),
		       g == 1 ? negret(ev.res) : "-", g == 1 ? (long)ev.data : -1L);
	}
	io_prep_pwrite(&w, fd, data, sizeof data, 0);
	one(ctx, &w, "write");
	struct iocb s;
	io_prep_fsync(&s, fd);
	one(ctx, &s, "fsync");
	io_prep_pread(&r, fd, back, sizeof back, 0);
	one(ctx, &r, "read");
	printf("read matches: %d\n", memcmp(back, data, sizeof back) == 0);
	io_prep_poll(&poll, p[0], POLLIN);
	printf("new pipe written: %zd\n", write(p[1], "y", 1));
	one(ctx, &poll, "poll");
	printf("io_destroy %s\n", negret(io_destroy(ctx)));

	CASE("second context");
	ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	memset(back, 0, sizeof back);
	io_prep_pread(&r, fd, back, sizeof back, 0);
	one(ctx, &r, "read");
	printf("read matches: %d\n", memcmp(back, data, sizeof back) == 0);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	print_file("file", fd);
	return 0;
}
