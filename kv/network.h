/* network.h -- the embedded engine's network thread, process-wide like FoundationDB's.
 *
 * It is where asynchronous futures complete and their callbacks run. The thread is the
 * one that calls network_run(); every other thread hands it work with network_post(). */
#ifndef KV_NETWORK_H
#define KV_NETWORK_H

#include <stdint.h>

#include "kv/fdb_api.h"

typedef void (*network_task_fn)(void *arg);

fdb_error_t network_select_api_version(int version);
int network_api_version(void); /* 0 until selected */
fdb_error_t network_setup(void);
/* Runs tasks until network_stop(); returns 0. Blocks the calling thread. */
fdb_error_t network_run(void);
fdb_error_t network_stop(void);

/* Runs fn(arg) on the network thread no earlier than delay_us microseconds from now.
 * Thread-safe. Tasks run in due-time order, ties in posting order. */
void network_post(network_task_fn fn, void *arg, uint64_t delay_us);

/* Whether the calling thread is the network thread. */
int network_is_current_thread(void);

/* Monotonic microseconds. */
uint64_t network_now_us(void);

#endif
