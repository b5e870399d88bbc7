/* Shared helpers for the C conformance programs in tests/c.
 *
 * Every observation is printed as one line; nothing printed depends on
 * addresses, timing or scheduling, so the output of a run on kernel AIO and
 * the output of a run on uaio can be compared with diff. */
#ifndef UAIO_CONFORM_COMMON_H
#define UAIO_CONFORM_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int case_no __attribute__((unused));

#define CASE(name) printf("== %d %s\n", ++case_no, (name))

static __attribute__((unused)) const char *ename(int e)
{
	static char buf[32];
	const char *n = e ? strerrorname_np(e) : "0";
	if (n)
		return n;
	snprintf(buf, sizeof buf, "E#%d", e);
	return buf;
}

/* A return value that is either >= 0 or a negative errno value. */
static __attribute__((unused)) const char *negret(long r)
{
	static char buf[4][48];
	static int k;
	char *b = buf[k++ & 3];
	if (r < 0 && r > -4096)
		snprintf(b, 48, "-%s", ename((int)-r));
	else
		snprintf(b, 48, "%ld", r);
	return b;
}

static __attribute__((unused)) uint64_t fnv(const void *p, size_t n)
{
	const unsigned char *c = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= c[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Checksum and size of a whole file, read with pread(2). */
static __attribute__((unused)) void print_file(const char *tag, int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		printf("%s: fstat %s\n", tag, ename(errno));
		return;
	}
	char *b = malloc(st.st_size ? st.st_size : 1);
	ssize_t n = pread(fd, b, st.st_size, 0);
	printf("%s: size=%lld read=%zd fnv=%016llx\n", tag, (long long)st.st_size, n,
	       (unsigned long long)fnv(b, n > 0 ? (size_t)n : 0));
	free(b);
}

static __attribute__((unused)) void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8));
}

static __attribute__((unused)) double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static __attribute__((unused)) void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* A private temporary directory; rm_tmpdir() removes it and the files made
 * with tmpfile_open(). */
/* Empties a pipe without blocking, leaving its flags as they were. */
static __attribute__((unused)) void drain_pipe(int fd)
{
	char b[4096];
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (read(fd, b, sizeof b) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

static char tmpdir[256];

static __attribute__((unused)) void make_tmpdir(void)
{
	const char *base = getenv("CONFORM_TMP");
	if (!base || !*base)
		base = "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/uaio-c-conform.XXXXXX", base);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(2);
	}
}

static char tmpfiles[32][512];
static int ntmpfiles;

static __attribute__((unused)) int tmpfile_open(const char *name, int flags)
{
	char *p = tmpfiles[ntmpfiles < 32 ? ntmpfiles++ : 31];
	snprintf(p, 512, "%s/%s", tmpdir, name);
	int fd = open(p, flags | O_CREAT, 0600);
	if (fd < 0) {
		perror(p);
		exit(2);
	}
	return fd;
}

static __attribute__((unused)) void rm_tmpdir(void)
{
	if (!tmpdir[0])
		return;
	for (int i = 0; i < ntmpfiles; i++)
		unlink(tmpfiles[i]);
	if (rmdir(tmpdir) != 0)
		fprintf(stderr, "cleanup of %s: %s\n", tmpdir, strerror(errno));
}

#endif
