/* This process's CPU time (user+sys, every thread) in microseconds: what every floor
 * here reports per run, read once around its measured loop. */
#include <time.h>

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
