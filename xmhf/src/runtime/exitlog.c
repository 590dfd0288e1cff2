/* Exit counts on the console, for the benchmark only (`make EXITLOG=N`, tools/bench.sh):
 * a guest such as Linux cannot ask for them by hypercall, so every N exits a CPU prints
 * its counters, and the last line before the guest's end is its boot's figure (to
 * within N). Built without EXITLOG, exit_log() is empty and costs nothing. */
#include "xmhf.h"

#ifdef XMHF_EXIT_LOG
static int append(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintk(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

void exit_log_print(struct pcpu *c)
{
    char line[640];
    int n = 0;
    line[0] = 0;
    for (unsigned i = 0; i < EXIT_STAT_SLOTS && n < (int)sizeof(line) - 24; i++) {
        if (c->exits[i])
            n += append(line + n, sizeof(line) - (size_t)n, " %u:%llu", i,
                        (unsigned long long)c->exits[i]);
    }
    printk("xmhf: exits cpu %u: %llu total, by slot:%s\n", c->idx,
           (unsigned long long)c->exits_total, line);
}
#endif
