/* The names libaio.so.1 exports in two versions (the old ABI at LIBAIO_0.1,
 * the default at LIBAIO_0.4), bound with .symver to uaio's implementations in
 * the static library. */
#include <stddef.h>

struct iocb;
struct io_event;
struct timespec;
typedef unsigned long io_context_t;

extern int uaio_io_cancel(io_context_t ctx, struct iocb *iocb, struct io_event *evt);
extern int uaio_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
                             struct timespec *timeout);
extern int uaio_io_queue_wait(io_context_t ctx, struct timespec *timeout);
extern int uaio_compat_io_cancel_0_1(io_context_t ctx, struct iocb *iocb);
extern int uaio_compat_io_getevents_0_1(io_context_t ctx, long nr, struct io_event *events,
                                        const struct timespec *timeout);
extern int uaio_compat_io_queue_wait_0_1(io_context_t ctx, const struct timespec *timeout);

__asm__(".symver uaio_shim_io_cancel_0_4, io_cancel@@LIBAIO_0.4");
__asm__(".symver uaio_shim_io_getevents_0_4, io_getevents@@LIBAIO_0.4");
__asm__(".symver uaio_shim_io_queue_wait_0_4, io_queue_wait@@LIBAIO_0.4");
__asm__(".symver uaio_shim_io_cancel_0_1, io_cancel@LIBAIO_0.1");
__asm__(".symver uaio_shim_io_getevents_0_1, io_getevents@LIBAIO_0.1");
__asm__(".symver uaio_shim_io_queue_wait_0_1, io_queue_wait@LIBAIO_0.1");

int uaio_shim_io_cancel_0_1(io_context_t ctx, struct iocb *iocb)
{
	return uaio_compat_io_cancel_0_1(ctx, iocb);
}

int uaio_shim_io_getevents_0_1(io_context_t ctx, long nr, struct io_event *events,
                               const struct timespec *timeout)
{
	return uaio_compat_io_getevents_0_1(ctx, nr, events, timeout);
}

int uaio_shim_io_queue_wait_0_1(io_context_t ctx, const struct timespec *timeout)
{
	return uaio_compat_io_queue_wait_0_1(ctx, timeout);
}

int uaio_shim_io_cancel_0_4(io_context_t ctx, struct iocb *iocb, struct io_event *evt)
{
	return uaio_io_cancel(ctx, iocb, evt);
}

int uaio_shim_io_getevents_0_4(io_context_t ctx, long min_nr, long nr, struct io_event *events,
                               struct timespec *timeout)
{
	return uaio_io_getevents(ctx, min_nr, nr, events, timeout);
}

int uaio_shim_io_queue_wait_0_4(io_context_t ctx, struct timespec *timeout)
{
	return uaio_io_queue_wait(ctx, timeout);
}
