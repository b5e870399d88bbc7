/* Link-time stand-in for a libaio.so.1t64 (soname libaio.so.1t64, libaio's
 * version nodes from stub.map): client.c links against it so that its
 * DT_NEEDED names libaio.so.1t64, as on Debian 13. Never run: every
 * function fails with -ENOSYS.
 *
 * Build: gcc -shared -fPIC -o libaio.so.1t64 stub.c -Wl,-soname,libaio.so.1t64 -Wl,--version-script=stub.map */
#include <errno.h>

int io_setup(void) { return -ENOSYS; }
int io_destroy(void) { return -ENOSYS; }
int io_submit(void) { return -ENOSYS; }
int io_getevents(void) { return -ENOSYS; }
