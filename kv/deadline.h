/* deadline.h -- the absolute time some milliseconds from now, for pthread_cond_timedwait. */
#ifndef KV_DEADLINE_H
#define KV_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* Now on `clock` (the clock the condition variable waits on) plus ms >= 0 milliseconds. */
static inline struct timespec kv_deadline_ms(clockid_t clock, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
