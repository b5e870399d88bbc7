/* pthread_cancel of a thread inside an AIO call. The kernel's io_submit,
 * io_getevents, io_pgetevents and io_destroy are no cancellation points: a
 * cancel sent while a thread is inside one takes effect at the thread's
 * next cancellation point, after the call returned. Every mode must print
 * the same lines on kernel AIO and on uaio.
 *
 *   cancel_conform submit     4 threads submit batches of 8 (a POLL on an
 *                             empty pipe and 7 small writes) in a loop,
 *                             with pthread_testcancel between batches;
 *                             each is cancelled after 0-2 ms: none may be
 *                             cancelled inside io_submit, and every
 *                             request io_submit accepted gives one event
 *   cancel_conform getevents  a thread blocks in io_getevents (no time
 *                             limit) for a POLL on an empty pipe, is
 *                             cancelled, then the pipe is written: the
 *                             call returns the event first
 *   cancel_conform pgetevents the same in io_pgetevents with an empty
 *                             signal mask
 *   cancel_conform destroy    a thread blocks in io_destroy waiting for
 *                             O_DIRECT writes and an fsync and is
 *                             cancelled: io_destroy returns 0 first, and
 *                             the writes are on the file
 *
 * Build: gcc -O2 -Wall -pthread -o cancel_conform cancel_conform.c -laio */
#include "conform_common.h"

#include <libaio.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#define NTH 4
#define BATCH 8
#define ROUNDS 400

static io_context_t ctx;
static int pipefd[2];
static int fd;

struct submitter {
	pthread_t t;
	long submitted;
	atomic_int inside;
	struct iocb cb[BATCH * ROUNDS];
	char buf[64];
};

static void *submit_loop(void *a)
{
	struct submitter *s = a;
	for (int round = 0; round < ROUNDS; round++) {
		struct iocb *cbs[BATCH];
		for (int i = 0; i < BATCH; i++) {
			struct iocb *c = &s->cb[round * BATCH + i];
			if (i == 0)
				io_prep_poll(c, pipefd[0], POLLIN);
			else
				io_prep_pwrite(c, fd, s->buf, sizeof s->buf, (long long)(i * 64));
			cbs[i] = c;
		}
		atomic_store(&s->inside, 1);
		int r = io_submit(ctx, BATCH, cbs);
		atomic_store(&s->inside, 0);
		if (r > 0)
			s->submitted += r;
		if (r != BATCH)
			break;
		pthread_testcancel();
	}
	return NULL;
}

static int mode_submit(void)
{
	fd = tmpfile_open("cancel", O_RDWR | O_TRUNC);
	if (io_setup(NTH * BATCH * ROUNDS + 8, &ctx) != 0)
		return 2;
	static struct submitter s[NTH];
	for (int i = 0; i < NTH; i++)
		pthread_create(&s[i].t, NULL, submit_loop, &s[i]);
	int inside = 0;
	long submitted = 0;
	for (int i = 0; i < NTH; i++) {
		sleep_ms(i % 3);
		pthread_cancel(s[i].t);
	}
	for (int i = 0; i < NTH; i++) {
		void *ret;
		pthread_join(s[i].t, &ret);
		inside += atomic_load(&s[i].inside);
		submitted += s[i].submitted;
	}
	if (write(pipefd[1], "x", 1) != 1)
		return 2;
	long got = 0;
	struct io_event ev[256];
	struct timespec ts = { 1, 0 };
	for (;;) {
		int r = io_getevents(ctx, 1, 256, ev, &ts);
		if (r <= 0)
			break;
		got += r;
	}
	printf("threads cancelled inside io_submit: %d\n", inside);
	printf("every accepted request gave one event: %s\n", got == submitted ? "yes" : "no");
	printf("io_destroy = %s\n", negret(io_destroy(ctx)));
	return 0;
}

static atomic_long wait_result = -999;

static void *getevents_thread(void *a)
{
	struct io_event ev;
	sigset_t none;
	sigemptyset(&none);
	long r = a ? io_pgetevents(ctx, 1, 1, &ev, NULL, &none) : io_getevents(ctx, 1, 1, &ev, NULL);
	atomic_store(&wait_result, r);
	pthread_testcancel();
	return NULL;
}

static int mode_getevents(int pget)
{
	if (io_setup(8, &ctx) != 0)
		return 2;
	struct iocb cb, *cbs[1] = { &cb };
	io_prep_poll(&cb, pipefd[0], POLLIN);
	printf("io_submit(POLL) = %s\n", negret(io_submit(ctx, 1, cbs)));
	pthread_t t;
	pthread_create(&t, NULL, getevents_thread, pget ? &t : NULL);
	sleep_ms(100);
	printf("pthread_cancel = %d\n", pthread_cancel(t));
	sleep_ms(100);
	printf("the wait returned before its event: %s\n", atomic_load(&wait_result) == -999 ? "no" : "yes");
	if (write(pipefd[1], "x", 1) != 1)
		return 2;
	void *ret;
	pthread_join(t, &ret);
	printf("thread %s, its wait returned %s\n", ret == PTHREAD_CANCELED ? "cancelled" : "not cancelled",
	       negret(atomic_load(&wait_result)));
	printf("io_destroy = %s\n", negret(io_destroy(ctx)));
	return 0;
}

static atomic_long destroy_result = -999;

static void *destroy_thread(void *a)
{
	(void)a;
	atomic_store(&destroy_result, io_destroy(ctx));
	pthread_testcancel();
	return NULL;
}

#define DSIZE (4 << 20)
#define NDIRECT 8

static int mode_destroy(void)
{
	fd = tmpfile_open("cancel-destroy", O_RDWR | O_TRUNC);
	char *buf;
	if (posix_memalign((void **)&buf, 4096, DSIZE) != 0)
		return 2;
	memset(buf, 'd', DSIZE);
	printf("F_SETFL O_DIRECT = %d\n", fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT));
	if (io_setup(NDIRECT + 2, &ctx) != 0)
		return 2;
	struct iocb cb[NDIRECT + 1], *cbs[NDIRECT + 1];
	for (int i = 0; i < NDIRECT; i++) {
		io_prep_pwrite(&cb[i], fd, buf, DSIZE, (long long)i * DSIZE);
		cbs[i] = &cb[i];
	}
	io_prep_fsync(&cb[NDIRECT], fd);
	cbs[NDIRECT] = &cb[NDIRECT];
	printf("io_submit(%d O_DIRECT writes of 4 MiB + fsync) = %s\n", NDIRECT,
	       negret(io_submit(ctx, NDIRECT + 1, cbs)));
	pthread_t t;
	pthread_create(&t, NULL, destroy_thread, NULL);
	sleep_ms(1);
	pthread_cancel(t);
	void *ret;
	pthread_join(t, &ret);
	printf("thread %s, io_destroy returned %s\n", ret == PTHREAD_CANCELED ? "cancelled" : "not cancelled",
	       negret(atomic_load(&destroy_result)));
	printf("io_destroy again = %s\n", negret(io_destroy(ctx)));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
	char *got = malloc(DSIZE);
	int on_file = 0;
	for (int i = 0; i < NDIRECT; i++)
		on_file += pread(fd, got, DSIZE, (off_t)i * DSIZE) == DSIZE && !memcmp(got, buf, DSIZE);
	printf("writes on the file: %d of %d\n", on_file, NDIRECT);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "submit";
	printf("mode %s\n", mode);
	make_tmpdir();
	if (pipe(pipefd) != 0)
		return 2;
	int r = 2;
	if (!strcmp(mode, "submit"))
		r = mode_submit();
	else if (!strcmp(mode, "getevents"))
		r = mode_getevents(0);
	else if (!strcmp(mode, "pgetevents"))
		r = mode_getevents(1);
	else if (!strcmp(mode, "destroy"))
		r = mode_destroy();
	rm_tmpdir();
	return r;
}
