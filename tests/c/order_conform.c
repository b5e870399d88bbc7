/* A buffered write and a read of the same bytes in one io_submit: kernel
 * AIO does the write (into the page cache) inside io_submit before it
 * looks at the read, so the read returns what was written. Every mode
 * prints the same lines on kernel AIO and on uaio.
 *
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
 *
 * Build: gcc -O2 -Wall -o order_conform order_conform.c -laio */
#include "conform_common.h"

#include <libaio.h>
#include <linux/fs.h>
#include <sys/resource.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "dsync";
	int dsync = strcmp(mode, "dsync") == 0;
	if (!dsync && strcmp(mode, "short-fds") != 0) {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	make_tmpdir();
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
		struct timespec ts = { 5, 0 };
		int got = 0;
		while (got < 2) {
			int g = io_getevents(ctx, 1, 2 - got, ev + got, &ts);
			if (g <= 0)
				break;
			got += g;
		}
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
