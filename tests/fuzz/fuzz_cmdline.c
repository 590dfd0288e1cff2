/* The boot command line (cmdline.h): any bytes as a command line. Invariants: 0 or -1;
 * on 0 the options are valid (baud divides 115200, port nonzero); on -1 a NUL-terminated
 * message within errlen and the plain defaults in *out. */
#include "fuzz.h"
#include "cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *cmd = malloc(size + 1);
    memcpy(cmd, data, size);
    cmd[size] = '\0';
    size_t errlen = size ? data[0] % 80 : 0;
    char *err = errlen ? malloc(errlen) : NULL;
    if (err)
        memset(err, 'x', errlen);
    struct xmhf_bootopts o;
    int r = xmhf_parse_cmdline(cmd, 0x3f8, &o, err, errlen);
    CHECK(r == 0 || r == -1);
    if (r == 0) {
        CHECK(o.baud && 115200 % o.baud == 0);
        CHECK(o.serial_port != 0);
        CHECK(o.selftest == 0 || o.selftest == XMHF_SELFTEST_PAGEFAULT);
    } else {
        CHECK(o.baud == 115200 && o.serial_port == 0x3f8 && o.boot_drive == 0x80 && !o.selftest);
        if (err)
            CHECK(memchr(err, '\0', errlen) != NULL);
    }
    free(err);
    free(cmd);
    return 0;
}
