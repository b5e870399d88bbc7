/* A program linked against libaio.so.1t64, the name Debian 13 and Ubuntu
 * 24.04 give libaio after the 64-bit time_t transition. It writes a block
 * through io_submit, reads it back, and reports which AIO served it:
 *
 *   ring: kernel      the context's ring is a kernel AIO ring ("[aio]" in
 *                     /proc/self/maps), or
 *   ring: user        it is ordinary memory (uaio's ring);
 *   io_setup from: PATH     the file of the library io_setup is bound to;
 *   dlopen: same|other|none whether dlopen("libaio.so.1t64") gives the
 *                     library io_setup was bound to (as python-libaio
 *                     opens it).
 *
 * Exit status 0 when the data came back intact.
 *
 * Build: gcc -O2 -Wall -o client client.c -L DIR -l:libaio.so.1t64 -ldl
 * where DIR holds a libaio.so.1t64 whose soname is libaio.so.1t64 (see
 * stub.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether the mapping that holds addr is named "[aio]". */
static int kernel_ring(unsigned long addr)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi) {
			found = strstr(line, "[aio]") != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

int main(void)
{
	static char out[4096] __attribute__((aligned(4096))), in[4096] __attribute__((aligned(4096)));
	char path[] = "/tmp/uaio-t64-XXXXXX";
	io_context_t ctx = 0;
	struct iocb cb, *cbs[1] = { &cb };
	struct io_event ev;
	void *h, *sym;
	Dl_info info;
	int fd, r;

	fd = mkstemp(path);
	if (fd < 0)
		return perror("mkstemp"), 2;
	unlink(path);
	for (r = 0; r < (int)sizeof out; r++)
		out[r] = (char)(r * 7 + 1);
	r = io_setup(8, &ctx);
	if (r) {
		printf("io_setup: %s\n", strerror(-r));
		return 1;
	}
	io_prep_pwrite(&cb, fd, out, sizeof out, 0);
	if ((r = io_submit(ctx, 1, cbs)) != 1 || (r = io_getevents(ctx, 1, 1, &ev, NULL)) != 1 || ev.res != sizeof out) {
		printf("write: %d, res %ld\n", r, (long)ev.res);
		return 1;
	}
	io_prep_pread(&cb, fd, in, sizeof in, 0);
	if ((r = io_submit(ctx, 1, cbs)) != 1 || (r = io_getevents(ctx, 1, 1, &ev, NULL)) != 1 || ev.res != sizeof in) {
		printf("read: %d, res %ld\n", r, (long)ev.res);
		return 1;
	}
	printf("data: %s\n", memcmp(in, out, sizeof in) ? "differs" : "intact");
	printf("ring: %s\n", kernel_ring((unsigned long)ctx) ? "kernel" : "user");
	printf("io_setup from: %s\n", dladdr((void *)io_setup, &info) && info.dli_fname ? info.dli_fname : "?");
	h = dlopen("libaio.so.1t64", RTLD_NOW);
	sym = h ? dlsym(h, "io_setup") : NULL;
	printf("dlopen: %s\n", !sym ? "none" : sym == (void *)io_setup ? "same" : "other");
	io_destroy(ctx);
	return memcmp(in, out, sizeof in) != 0;
}
