/* A buffered write and a read of the same bytes in one io_submit: kernel
 * AIO does each (the write into the page cache, the read from it) inside
 * io_submit, in the call's order, so a read after the write returns what
 * was written and a read before it what was there. Every mode prints the
 * same lines on kernel AIO and on uaio.
 *
 *   order_conform polls      six POLLs of one pipe (in one io_submit, then
 *                            in six), the pipe written: their events come
 *                            newest first, as the kernel wakes the waiters
 *                            of a file (before, the thread pool gave them
 *                            oldest first; from a black-box attack)
 *   order_conform dsync      50 rounds of a 4 KiB write with RWF_DSYNC,
 *                            then a read of the same 4 KiB (before, uaio
 *                            sent the write to its backend and tried the
 *                            read at once: 50 of 50 read old data)
 *   order_conform short-fds  50 rounds of a 4 KiB write that extends the
 *                            file, then a read of it, after the soft
 *                            RLIMIT_NOFILE was lowered to 1024 (below the
 *                            numbers uaio keeps its own descriptors at,
 *                            when the limit was higher at io_setup): uaio
 *                            cannot hold the file for the read to wait
 *                            in line (before: 50 of 50 read nothing)
 *   order_conform read-first 50 rounds of one io_submit of 4: a read of
 *                            4 KiB, a write of the same 4 KiB, and the
 *                            same pair on the next 4 KiB (before, uaio
 *                            sent the reads of a batch of 4 to its
 *                            backend and did the writes at once: 50 of
 *                            50 reads returned the write after them)
 *   order_conform read-first-shm  read-first in a directory of /dev/shm
 *                            (tmpfs, which refuses RWF_NOWAIT reads;
 *                            before, 100 of 100 reads there returned the
 *                            write after them)
 *   order_conform read-first-cold  one read and one write per call, the
 *                            file's pages dropped from the page cache
 *                            before each call (the read waits for the
 *                            disk): the write is in the file when
 *                            io_submit returns (a pread right after sees
 *                            it; before, with the write kept behind the
 *                            read, 50 of 50 missed it), and the read
 *                            returns the old or the new bytes, whole
 *                            (uaio's read, done after io_submit returns,
 *                            may return the new ones: README, "Known
 *                            residual differences"); on tmpfs
 *                            the pages stay in memory
 *   order_conform read-eof   50 rounds on a 100-byte file: a read of 100
 *                            bytes at 50 (crossing the end) and one at 300
 *                            (past it), each placed before a write at 200
 *                            or 500 that extends the file past it, in one
 *                            io_submit of 2 or 4, or the read and the write
 *                            in two calls: the kernel's read returns 50
 *                            and 0 bytes, what the file held before the
 *                            write (before, uaio's returned 100 and 100
 *                            in one call on both backends, and in two
 *                            calls on the thread pool)
 *   order_conform nowait-behind  20 rounds of one io_submit of a read of
 *                            a 100-byte file whose pages were dropped,
 *                            a 10-byte RWF_NOWAIT write over it, and a
 *                            read of the file: the write's result (ext4
 *                            refuses RWF_NOWAIT buffered writes with
 *                            EOPNOTSUPP; before, uaio's io_uring backend
 *                            answered EAGAIN)
 *   order_conform sync-visible  50 rounds of one 4 KiB buffered write with
 *                            RWF_DSYNC (even rounds) or RWF_SYNC (odd
 *                            ones) per io_submit, then, before reaping,
 *                            a pread of those bytes and a pwrite of other
 *                            data over them: the kernel's write is in the
 *                            file when io_submit returns, so the pread
 *                            sees it and the pwrite's data is what the
 *                            file keeps (before, uaio did the whole write
 *                            in its backend: 50 of 50 preads missed it,
 *                            and some pwrites were lost under it); an
 *                            io_cancel of the write answers EINVAL, as
 *                            for any request no longer pending
 *   order_conform read-in-submit  64 reads of 16 KiB of a file dropped
 *                            from the page cache before each io_submit,
 *                            one per io_submit, then
 *                            the same in io_submits of 8, each buffer
 *                            compared with the file's bytes right after
 *                            io_submit returns, before its event is
 *                            reaped (as sysbench's fileio test does with
 *                            --validate=on in async mode): the kernel reads
 *                            them inside io_submit; uaio does with
 *                            UAIO_READS_IN_SUBMIT=1, which the mode sets
 *                            (by default it returns first: 0 of 64 filled)
 *   order_conform write-reuse  64 buffered writes of 16 KiB at offsets
 *                            that split pages of a file dropped from the
 *                            page cache (one per io_submit, then in
 *                            io_submits of 8), each buffer filled with
 *                            other bytes right after io_submit returns,
 *                            before the event (as sysbench's fileio test
 *                            refills its buffer for the next write): the
 *                            kernel copied the bytes inside io_submit, so
 *                            the file holds what each buffer held then
 *                            (before, uaio's backend wrote the refilled
 *                            bytes)
 *
 * Build: gcc -O2 -Wall -o order_conform order_conform.c -laio */
#include "conform_common.h"

#include <libaio.h>
#include <poll.h>
#include <linux/fs.h>
#include <sys/resource.h>

/* Reaps `want` events of `ctx` (5 s at most each wait); returns how many. */
static int reap(io_context_t ctx, struct io_event *ev, int want)
{
	struct timespec ts = { 5, 0 };
	int got = 0;
	while (got < want) {
		int g = io_getevents(ctx, 1, want - got, ev + got, &ts);
		if (g <= 0)
			break;
		got += g;
	}
	return got;
}

/* Reads placed before writes of the same bytes in one io_submit: each
 * read returns the bytes the file held before the call. */
static int read_first(int cold)
{
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	int fd = tmpfile_open("order", O_RDWR | O_TRUNC);
	int pairs = cold ? 1 : 2, stale = 0, failed = 0, torn = 0, missed = 0;
	for (int round = 0; round < 50; round++) {
		static char old[2][4096], w[2][4096], r[2][4096];
		struct iocb cb[4], *cbs[4];
		for (int i = 0; i < pairs; i++) {
			memset(old[i], 'A' + (round + i) % 26, 4096);
			memset(w[i], 'a' + (round + i) % 26, 4096);
			memset(r[i], 0, 4096);
			if (pwrite(fd, old[i], 4096, (off_t)i * 4096) != 4096)
				failed++;
			io_prep_pread(&cb[2 * i], fd, r[i], 4096, (long long)i * 4096);
			io_prep_pwrite(&cb[2 * i + 1], fd, w[i], 4096, (long long)i * 4096);
			cbs[2 * i] = &cb[2 * i];
			cbs[2 * i + 1] = &cb[2 * i + 1];
		}
		if (cold && (fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0))
			failed++;
		if (io_submit(ctx, 2 * pairs, cbs) != 2 * pairs) {
			failed++;
			continue;
		}
		static char now[4096];
		if (cold && (pread(fd, now, sizeof now, 0) != sizeof now || memcmp(now, w[0], sizeof now) != 0))
			missed++;
		struct io_event ev[4];
		int got = reap(ctx, ev, 2 * pairs);
		if (got < 2 * pairs)
			failed++;
		for (int i = 0; i < got; i++) {
			if ((long)ev[i].res != 4096)
				failed++;
			for (int k = 0; k < pairs; k++)
				if (ev[i].obj == &cb[2 * k] && memcmp(r[k], old[k], 4096) != 0) {
					stale++;
					torn += memcmp(r[k], w[k], 4096) != 0;
				}
		}
	}
	if (cold)
		printf("read-first-cold: preads right after io_submit that missed the write: %d of 50, reads that "
		       "returned neither the old nor the new bytes: %d, failed calls or events: %d\n",
		       missed, torn, failed);
	else
		printf("read-first: reads that returned a later write: %d of %d, failed calls or events: %d\n", stale,
		       50 * pairs, failed);
	print_file("file", fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* A RWF_NOWAIT write placed after a read of its bytes that waits for the
 * disk: the file system's own answer. */
static int nowait_behind(void)
{
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	int fd = tmpfile_open("order", O_RDWR | O_TRUNC);
	int refused = 0, again = 0, written = 0;
	for (int round = 0; round < 20; round++) {
		static char old[100], w[10], r[2][100];
		memset(old, 'A' + round % 26, sizeof old);
		memset(w, 'a' + round % 26, sizeof w);
		if (pwrite(fd, old, sizeof old, 0) != sizeof old || fdatasync(fd) != 0 ||
		    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
			printf("round %d: setup failed\n", round);
		struct iocb cb[3], *cbs[3] = { &cb[0], &cb[1], &cb[2] };
		io_prep_pread(&cb[0], fd, r[0], 10, 0);
		io_prep_pwrite(&cb[1], fd, w, sizeof w, 0);
		cb[1].aio_rw_flags = RWF_NOWAIT;
		io_prep_pread(&cb[2], fd, r[1], 100, 0);
		int n = io_submit(ctx, 3, cbs);
		if (n <= 0) {
			printf("round %d: io_submit %s\n", round, negret(n));
			continue;
		}
		struct io_event ev[3];
		int got = reap(ctx, ev, n);
		long res[3] = { 1, 1, 1 };
		for (int i = 0; i < got; i++)
			for (int k = 0; k < 3; k++)
				if (ev[i].obj == &cb[k])
					res[k] = (long)ev[i].res;
		if (res[0] != 10 || res[2] != 100)
			printf("round %d: reads %s and %s\n", round, negret(res[0]), negret(res[2]));
		if (res[1] == -EOPNOTSUPP)
			refused++;
		else if (res[1] == -EAGAIN)
			again++;
		else if (res[1] == 10)
			written++;
		else
			printf("round %d: write %s\n", round, negret(res[1]));
	}
	printf("nowait-behind: writes refused (EOPNOTSUPP) %d, EAGAIN %d, written %d\n", refused, again, written);
	print_file("file", fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* Reads that reach past the end of the file, placed before writes that
 * extend it: each returns what the file held before the call. */
static int read_eof(void)
{
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	int fd = tmpfile_open("order", O_RDWR | O_TRUNC);
	int longer = 0, failed = 0;
	for (int round = 0; round < 50; round++) {
		static char old[100], w[10], r[2][100];
		memset(old, 'A' + round % 26, sizeof old);
		memset(w, 'a' + round % 26, sizeof w);
		memset(r, 0, sizeof r);
		if (ftruncate(fd, 0) != 0 || pwrite(fd, old, sizeof old, 0) != sizeof old)
			failed++;
		struct iocb cb[4], *cbs[4] = { &cb[0], &cb[1], &cb[2], &cb[3] };
		io_prep_pread(&cb[0], fd, r[0], 100, 50);
		io_prep_pwrite(&cb[1], fd, w, sizeof w, 200);
		io_prep_pread(&cb[2], fd, r[1], 100, 300);
		io_prep_pwrite(&cb[3], fd, w, sizeof w, 500);
		int n = 0;
		switch (round % 3) {
		case 0: /* read and write in one call */
			n = io_submit(ctx, 2, cbs) == 2 ? 2 : 0;
			break;
		case 1: /* two pairs in one call */
			n = io_submit(ctx, 4, cbs) == 4 ? 4 : 0;
			break;
		case 2: /* the read, then the write, in two calls */
			n = io_submit(ctx, 1, cbs) == 1 && io_submit(ctx, 1, cbs + 1) == 1 ? 2 : 0;
			break;
		}
		if (n == 0) {
			failed++;
			continue;
		}
		struct io_event ev[4];
		int got = reap(ctx, ev, n);
		if (got < n)
			failed++;
		for (int i = 0; i < got; i++) {
			long res = (long)ev[i].res;
			if (ev[i].obj == &cb[0] && res != 50)
				longer += res > 50;
			else if (ev[i].obj == &cb[2] && res != 0)
				longer += res > 0;
			else if ((ev[i].obj == &cb[1] || ev[i].obj == &cb[3]) && res != 10)
				failed++;
		}
	}
	printf("read-eof: reads longer than the file before the write: %d, failed calls or events: %d\n", longer,
	       failed);
	print_file("file", fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* On a block device (a loop device over a file of the temporary
 * directory; skipped, saying why, where none can be made): a read of
 * uncached bytes, a buffered write of them and a read of them again, in one
 * io_submit. The kernel does them in that order inside the call: the first
 * read returns the old bytes, the second the new ones. */
static int bdev_rw(void)
{
	make_tmpdir();
	atexit(rm_tmpdir);
	char img[512], cmd[700], dev[128] = "";
	snprintf(img, sizeof img, "%s/bdev.img", tmpdir);
	int f = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || ftruncate(f, 16 << 20) != 0) {
		printf("bdev: skipped: cannot make the image\n");
		return 0;
	}
	close(f);
	snprintf(cmd, sizeof cmd, "losetup -f --show %s 2>/dev/null", img);
	FILE *p = popen(cmd, "r");
	if (!p || !fgets(dev, sizeof dev, p)) {
		if (p)
			pclose(p);
		unlink(img);
		printf("bdev: skipped: no loop device can be made here (losetup)\n");
		return 0;
	}
	pclose(p);
	dev[strcspn(dev, "\n")] = 0;
	int fd = open(dev, O_RDWR), direct = open(dev, O_RDWR | O_DIRECT);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(8, &ctx)));
	enum { LEN = 65536 };
	char *old, *new, *r0, *r2;
	if (posix_memalign((void **)&old, 4096, LEN) || posix_memalign((void **)&new, 4096, LEN) ||
	    posix_memalign((void **)&r0, 4096, LEN) || posix_memalign((void **)&r2, 4096, LEN))
		return 2;
	/* The write buffered, then direct (through another descriptor of the
	 * device), the reads buffered; the pages cached or not. */
	for (int how = 0; how < 4; how++) {
		int wfd = how & 1 ? direct : fd, cached = how & 2;
		int first_new = 0, second_old = 0, failed = fd < 0 || direct < 0;
		for (int round = 0; round < 20 && !failed; round++) {
			memset(old, 'a' + round % 26, LEN);
			memset(new, 'A' + round % 26, LEN);
			if (pwrite(fd, old, LEN, 0) != LEN || fsync(fd) != 0)
				failed++;
			if (cached ? pread(fd, r0, LEN, 0) != LEN : posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
				failed++;
			struct iocb cb[3], *cbs[3] = { &cb[0], &cb[1], &cb[2] };
			io_prep_pread(&cb[0], fd, r0, LEN, 0);
			io_prep_pwrite(&cb[1], wfd, new, LEN, 0);
			io_prep_pread(&cb[2], fd, r2, LEN, 0);
			struct io_event ev[3];
			if (io_submit(ctx, 3, cbs) != 3 || reap(ctx, ev, 3) != 3) {
				failed++;
				continue;
			}
			for (int i = 0; i < 3; i++)
				failed += (long)ev[i].res != LEN;
			first_new += memcmp(r0, old, LEN) != 0;
			second_old += memcmp(r2, new, LEN) != 0;
		}
		printf("bdev, %s write, %s: first reads not the old bytes: %d, second reads not the new bytes: %d, "
		       "failed: %d\n",
		       how & 1 ? "direct" : "buffered", cached ? "cached" : "uncached", first_new, second_old, failed);
	}
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	if (fd >= 0)
		close(fd);
	if (direct >= 0)
		close(direct);
	snprintf(cmd, sizeof cmd, "losetup -d %s", dev);
	if (system(cmd) != 0)
		fprintf(stderr, "losetup -d %s failed\n", dev);
	unlink(img);
	return 0;
}

/* Synchronous buffered writes are in the file when io_submit returns. */
static int sync_visible(void)
{
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	int fd = tmpfile_open("order", O_RDWR | O_TRUNC);
	int missed = 0, lost = 0, failed = 0, cancelled = 0;
	for (int round = 0; round < 50; round++) {
		static char w[4096], after[4096], r[4096];
		memset(w, 'a' + round % 26, sizeof w);
		memset(after, 'A' + round % 26, sizeof after);
		long long off = (long long)(round % 4) * 4096;
		struct iocb cb, *cbs[1] = { &cb };
		io_prep_pwrite(&cb, fd, w, sizeof w, off);
		cb.aio_rw_flags = round % 2 ? RWF_SYNC : RWF_DSYNC;
		if (io_submit(ctx, 1, cbs) != 1) {
			failed++;
			continue;
		}
		if (pread(fd, r, sizeof r, off) != sizeof r || memcmp(r, w, sizeof r) != 0)
			missed++;
		struct io_event cev;
		if (io_cancel(ctx, &cb, &cev) != -EINVAL)
			cancelled++;
		if (pwrite(fd, after, sizeof after, off) != sizeof after)
			failed++;
		struct io_event ev[1];
		if (reap(ctx, ev, 1) != 1 || (long)ev[0].res != 4096)
			failed++;
		if (pread(fd, r, sizeof r, off) != sizeof r || memcmp(r, after, sizeof r) != 0)
			lost++;
	}
	printf("sync-visible: preads that missed the write: %d of 50, pwrites lost under it: %d, io_cancel not "
	       "EINVAL: %d, failed calls or events: %d\n",
	       missed, lost, cancelled, failed);
	print_file("file", fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* polls: see the top. */
static int polls(void)
{
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	for (int way = 0; way < 2; way++) {
		int p[2];
		if (pipe(p) != 0)
			return 2;
		struct iocb cbs[6], *cps[6];
		for (int i = 0; i < 6; i++) {
			io_prep_poll(&cbs[i], p[0], POLLIN);
			cbs[i].data = (void *)(long)i;
			cps[i] = &cbs[i];
		}
		/* In one call, or one call each. */
		if (way == 0) {
			printf("one io_submit: %s\n", negret(io_submit(ctx, 6, cps)));
		} else {
			int ok = 0;
			for (int i = 0; i < 6; i++)
				ok += io_submit(ctx, 1, &cps[i]) == 1;
			printf("six io_submits: %d accepted\n", ok);
		}
		usleep(50000);
		if (write(p[1], "x", 1) != 1)
			return 2;
		struct io_event ev[6];
		struct timespec ts = { 5, 0 };
		int got = 0;
		while (got < 6) {
			int r = io_getevents(ctx, 1, 6, ev + got, &ts);
			if (r <= 0)
				break;
			got += r;
		}
		printf("events in order:");
		for (int i = 0; i < got; i++)
			printf(" %ld (res %s)", (long)ev[i].data, negret(ev[i].res));
		printf("\n");
		close(p[0]);
		close(p[1]);
	}
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* read-in-submit: see the list of modes above. */
static int read_in_submit(void)
{
	enum { BLK = 16384, NBLK = 64, BATCH = 8 };
	setenv("UAIO_READS_IN_SUBMIT", "1", 1);
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	static char data[NBLK * BLK], bufs[BATCH][BLK];
	for (int i = 0; i < NBLK * BLK; i++)
		data[i] = (char)('A' + (i / BLK + i / 977) % 26);
	int fd = tmpfile_open("reads", O_RDWR | O_TRUNC);
	if (pwrite(fd, data, sizeof data, 0) != (ssize_t)sizeof data || fsync(fd) != 0)
		return 2;
	int filled[2] = { 0, 0 }, whole = 0;
	for (int k = 0; k < 2; k++) {
		int batch = k ? BATCH : 1;
		for (int b = 0; b < NBLK; b += batch) {
			struct iocb cb[BATCH], *cbs[BATCH];
			/* Not even read ahead by the call before. */
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			struct io_event ev[BATCH];
			memset(bufs, 0, sizeof bufs);
			for (int i = 0; i < batch; i++) {
				io_prep_pread(&cb[i], fd, bufs[i], BLK, (long long)(b + i) * BLK);
				cbs[i] = &cb[i];
			}
			int s = io_submit(ctx, batch, cbs);
			if (s != batch) {
				printf("io_submit %s\n", negret(s));
				return 1;
			}
			for (int i = 0; i < batch; i++)
				filled[k] += !memcmp(bufs[i], data + (b + i) * BLK, BLK);
			int got = reap(ctx, ev, batch);
			for (int i = 0; i < got; i++)
				whole += ev[i].res == BLK;
		}
	}
	printf("uncached reads, buffer filled when io_submit returned: one per call %d of %d, %d per call %d of %d\n",
	       filled[0], NBLK, BATCH, filled[1], NBLK);
	printf("reads ended whole %d of %d\n", whole, 2 * NBLK);
	close(fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

/* write-reuse: see the list of modes above. */
static int write_reuse(void)
{
	enum { BLK = 16384, NBLK = 64, BATCH = 8, SKEW = 100 };
	make_tmpdir();
	atexit(rm_tmpdir);
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	static char old[NBLK * BLK + SKEW], want[NBLK * BLK], bufs[BATCH][BLK], got[NBLK * BLK];
	memset(old, '.', sizeof old);
	int kept[2] = { 0, 0 }, whole = 0;
	for (int k = 0; k < 2; k++) {
		int batch = k ? BATCH : 1;
		int fd = tmpfile_open("reuse", O_RDWR | O_TRUNC);
		if (pwrite(fd, old, sizeof old, 0) != (ssize_t)sizeof old || fsync(fd) != 0)
			return 2;
		for (int b = 0; b < NBLK; b += batch) {
			struct iocb cb[BATCH], *cbs[BATCH];
			struct io_event ev[BATCH];
			/* Partial pages not cached: they must be read first. */
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			for (int i = 0; i < batch; i++) {
				memset(bufs[i], 'a' + (b + i) % 26, BLK);
				memcpy(want + (b + i) * BLK, bufs[i], BLK);
				io_prep_pwrite(&cb[i], fd, bufs[i], BLK, (long long)(b + i) * BLK + SKEW);
				cbs[i] = &cb[i];
			}
			int s = io_submit(ctx, batch, cbs);
			if (s != batch) {
				printf("io_submit %s\n", negret(s));
				return 1;
			}
			memset(bufs, 'X', sizeof bufs);
			int n = reap(ctx, ev, batch);
			for (int i = 0; i < n; i++)
				whole += ev[i].res == BLK;
		}
		if (pread(fd, got, sizeof got, SKEW) != (ssize_t)sizeof got)
			return 2;
		for (int b = 0; b < NBLK; b++)
			kept[k] += !memcmp(got + b * BLK, want + b * BLK, BLK);
		close(fd);
	}
	printf("buffered writes whose bytes reached the file as at io_submit: one per call %d of %d, %d per call %d of %d\n",
	       kept[0], NBLK, BATCH, kept[1], NBLK);
	printf("writes ended whole %d of %d\n", whole, 2 * NBLK);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "dsync";
	if (strcmp(mode, "write-reuse") == 0)
		return write_reuse();
	if (strcmp(mode, "read-in-submit") == 0)
		return read_in_submit();
	if (strcmp(mode, "polls") == 0)
		return polls();
	int dsync = strcmp(mode, "dsync") == 0;
	if (strcmp(mode, "nowait-behind") == 0)
		return nowait_behind();
	if (strcmp(mode, "bdev-rw") == 0)
		return bdev_rw();
	if (strcmp(mode, "read-eof") == 0)
		return read_eof();
	if (strcmp(mode, "sync-visible") == 0)
		return sync_visible();
	if (strcmp(mode, "read-first-shm") == 0) {
		/* The same on tmpfs, which refuses RWF_NOWAIT reads (before, the
		 * reads of a batch of 4 there returned the write after them). */
		struct stat st;
		if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode)) {
			printf("read-first-shm: skipped, no /dev/shm\n");
			return 0;
		}
		setenv("CONFORM_TMP", "/dev/shm", 1);
		return read_first(0);
	}
	if (strncmp(mode, "read-first", 10) == 0)
		return read_first(strcmp(mode, "read-first-cold") == 0);
	if (!dsync && strcmp(mode, "short-fds") != 0) {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	make_tmpdir();
	atexit(rm_tmpdir);
	if (!dsync) {
		/* A high limit at io_setup, so that uaio's floor is above 1024. */
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	io_context_t ctx = 0;
	printf("io_setup %s\n", negret(io_setup(64, &ctx)));
	int fd = tmpfile_open("order", O_RDWR | O_TRUNC);
	if (!dsync) {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur > 1024)
			rl.rlim_cur = 1024;
		printf("setrlimit %d\n", setrlimit(RLIMIT_NOFILE, &rl));
	}
	int stale = 0, failed = 0;
	for (int round = 0; round < 50; round++) {
		static char w[4096], r[4096];
		memset(w, 'a' + round % 26, sizeof w);
		memset(r, 0, sizeof r);
		long long off = dsync ? 0 : (long long)round * 4096;
		struct iocb cb[2], *cbs[2] = { &cb[0], &cb[1] };
		io_prep_pwrite(&cb[0], fd, w, sizeof w, off);
		if (dsync)
			cb[0].aio_rw_flags = RWF_DSYNC;
		io_prep_pread(&cb[1], fd, r, sizeof r, off);
		if (io_submit(ctx, 2, cbs) != 2) {
			failed++;
			continue;
		}
		struct io_event ev[2];
		int got = reap(ctx, ev, 2);
		if (got < 2)
			failed++;
		for (int i = 0; i < got; i++) {
			if ((long)ev[i].res != 4096)
				failed++;
			else if (ev[i].obj == &cb[1] && memcmp(r, w, sizeof r) != 0)
				stale++;
		}
	}
	printf("%s: reads that missed the write before them: %d of 50, failed calls or events: %d\n", mode, stale,
	       failed);
	print_file("file", fd);
	printf("io_destroy %s\n", negret(io_destroy(ctx)));
	return 0;
}
