/* aio_probe: runs a command and watches kernel AIO use while it runs.
 *
 *   aio_probe REPORT -- CMD [ARGS...]
 *
 * Samples /proc/sys/fs/aio-nr every millisecond (the host-wide count of
 * kernel AIO events reserved by io_setup) and, at each sample, looks for
 * kernel AIO rings ("[aio]" mappings) in the command's process group (the
 * command and everything it forks). When aio-nr is above its starting
 * value and the command holds no ring, the other processes on the host are
 * searched for one, so a rise caused by someone else (another test suite
 * using kernel AIO at the same time) can be told apart from a rise nobody
 * visible explains. Writes one line to REPORT:
 *
 *   baseline=B max=M samples=S rise=R ours=O lane=L foreign=F unexplained=U exiting=X
 *
 * rise: samples with aio-nr > B; ours: samples in which the command's
 * process group held a kernel AIO ring; lane: samples in which it held
 * only uaio's direct lanes (the thread pool's kernel context for O_DIRECT:
 * one ring in a process that has, or was once seen with, a "uaio-reaper"
 * thread; the lane explains a rise, also while that process exits); foreign/unexplained: rise samples
 * without a ring of ours or a lane, with/without a ring seen in another
 * process; exiting: samples whose only ring, with no uaio-reaper beside
 * it, was gone a millisecond later. That is a process caught as it ends:
 * exit kills its threads (the reaper among them) before it lets go of its
 * memory, so such a sighting says nothing of whose ring it was, and it is
 * counted neither as ours nor as unexplained. So is a sample that finds a
 * process of the group whose first thread is a zombie while others remain,
 * or whose first thread is exiting (PF_EXITING): its rings no longer show,
 * and its reaper may be gone before its lane.
 * Exits with the command's status (128+signal if it was killed). */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long read_aio_nr(void)
{
	char b[64];
	int fd = open("/proc/sys/fs/aio-nr", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = 0;
	return atol(b);
}

/* How many kernel AIO rings /proc/PID/maps shows. */
static int aio_rings(const char *pid)
{
	static char *buf;
	static size_t cap;
	char p[64];
	snprintf(p, sizeof p, "/proc/%s/maps", pid);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return 0;
	size_t len = 0;
	for (;;) {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 1 << 20;
			buf = realloc(buf, cap);
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	buf[len] = 0;
	int k = 0;
	for (char *q = buf; (q = strstr(q, "[aio]")); q += 5)
		k++;
	return k;
}

/* Processes seen with a "uaio-reaper" thread: each may hold one ring, its
 * lane (also while it exits, when the thread may be gone before the ring). */
static long lanes[4096];
static int nlanes;

static int lane_known(long pid)
{
	for (int i = 0; i < nlanes; i++)
		if (lanes[i] == pid)
			return 1;
	return 0;
}

/* Looks for a uaio-reaper thread in PID (or remembers one seen before)
 * and remembers it. */
static int has_lane(const char *pid)
{
	long id = atol(pid);
	if (lane_known(id))
		return 1;
	char p[300];
	snprintf(p, sizeof p, "/proc/%s/task", pid);
	DIR *d = opendir(p);
	if (!d)
		return 0;
	struct dirent *e;
	int found = 0;
	while (!found && (e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char c[600], b[32];
		snprintf(c, sizeof c, "/proc/%s/task/%s/comm", pid, e->d_name);
		int fd = open(c, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, b, sizeof b - 1);
		close(fd);
		if (n > 0) {
			b[n] = 0;
			found = strcmp(b, "uaio-reaper\n") == 0;
		}
	}
	closedir(d);
	if (found && nlanes < (int)(sizeof lanes / sizeof lanes[0]))
		lanes[nlanes++] = id;
	return found;
}

/* The process group of PID; *ending: its first thread is a zombie while
 * other threads remain (the process is on its way out: its memory, and so
 * its rings, no longer show through /proc/PID/maps, and the thread that
 * held a lane's reaper may be gone before the lane's aio-nr is released). */
static long pgrp_of(const char *pid, int *ending)
{
	char p[64], b[512];
	snprintf(p, sizeof p, "/proc/%s/stat", pid);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = 0;
	char *s = strrchr(b, ')'); /* comm may hold spaces */
	if (!s)
		return -1;
	char state;
	long ppid, pgrp, threads = 0;
	unsigned long flags = 0;
	if (sscanf(s + 1, " %c %ld %ld %*d %*d %*d %lu", &state, &ppid, &pgrp, &flags) < 3)
		return -1;
	/* num_threads, the 20th field (the 18th after the command name). */
	char *f = s + 1;
	for (int i = 0; i < 17 && f; i++)
		f = strchr(f + 1, ' ');
	if (f)
		threads = atol(f + 1);
	/* PF_EXITING (0x4) in the flags, the 9th field: the process is ending;
	 * from the moment its memory is let go its maps show nothing, while
	 * aio-nr still counts its contexts until the kernel has freed them
	 * (a process that lives a few milliseconds, with a lane, was caught so
	 * in CI: "unexplained"). */
	*ending = (state == 'Z' && threads > 1) || (flags & 0x4);
	return pgrp;
}

/* Scans /proc: *ours = a ring in process group g other than a lane; *lane =
 * a lane there; *foreign = a ring elsewhere (only looked for when
 * want_foreign). */
static void scan(long g, int want_foreign, int *ours, int *lane, int *foreign, int *exiting)
{
	*ours = 0;
	*lane = 0;
	*foreign = 0;
	*exiting = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	pid_t self = getpid();
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]) || atol(e->d_name) == self)
			continue;
		int ending = 0;
		long pg = pgrp_of(e->d_name, &ending);
		if (pg == g && ending) {
			*exiting = 1;
		} else if (pg == g) {
			/* A process known to have had a lane may be exiting: its
			 * maps are gone before the kernel releases the lane's
			 * aio-nr, so it still explains a rise. */
			/* The reaper is looked for before and after the maps
			 * are read: the lane's ring lives only within the
			 * reaper's life, so a ring that is the lane's has its
			 * reaper in one of the two looks, even when the lane is
			 * made or destroyed while this one looks. */
			int before = has_lane(e->d_name);
			int k = aio_rings(e->d_name);
			int l = before || (k > 0 && has_lane(e->d_name));
			if (k > l && !l) {
				/* Looked at again a moment later: still there
				 * without a reaper, it is the program's own. */
				struct timespec t = { 0, 1000000L };
				nanosleep(&t, NULL);
				k = aio_rings(e->d_name);
				l = k > 0 && has_lane(e->d_name);
				if (k == 0)
					*exiting = 1;
			}
			if (k > l)
				*ours = 1;
			if (l)
				*lane = 1;
		} else if (want_foreign && !*foreign && aio_rings(e->d_name) > 0) {
			*foreign = 1;
		}
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: aio_probe REPORT -- CMD [ARGS...]\n");
		return 2;
	}
	long base = read_aio_nr();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		setpgid(0, 0);
		execvp(argv[3], argv + 3);
		perror(argv[3]);
		_exit(127);
	}
	setpgid(pid, pid);
	long max = base;
	long samples = 0, rise = 0, ours = 0, lane = 0, foreign = 0, unexplained = 0, exiting = 0;
	int status = 0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		long v = read_aio_nr();
		int o = 0, l = 0, f = 0, x = 0;
		scan(pid, v > base, &o, &l, &f, &x);
		samples++;
		if (v > max)
			max = v;
		if (o)
			ours++;
		else if (l)
			lane++;
		else if (x)
			exiting++;
		if (v > base) {
			rise++;
			if (!o && !l && !x) {
				if (f)
					foreign++;
				else
					unexplained++;
			}
		}
		if (w == pid)
			break;
		struct timespec t = { 0, 1000000L };
		nanosleep(&t, NULL);
	}
	FILE *r = fopen(argv[1], "w");
	if (r) {
		fprintf(r, "baseline=%ld max=%ld samples=%ld rise=%ld ours=%ld lane=%ld foreign=%ld unexplained=%ld exiting=%ld\n",
			base, max, samples, rise, ours, lane, foreign, unexplained, exiting);
		fclose(r);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
