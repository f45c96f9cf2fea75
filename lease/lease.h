/* lease.h -- lease expiry: exactly one process of those sharing a store expires leases.
 *
 * Leadership is a record in the store (P (0, "lease-leader"): ballot, owner, valid-until);
 * the leader renews it every 0.5 s and holds it for 5 s. Every expiry transaction reads
 * the record (a fence): a process that lost leadership can never delete keys, because its
 * read either sees another owner or conflicts with the takeover. A new leader first gives
 * every lease its full TTL again, as etcd does on a leader change, so no lease expires
 * because leadership moved or the server restarted. */
#ifndef LEASE_LEASE_H
#define LEASE_LEASE_H

#include <stdint.h>

#include "mvcc/mvcc.h"

#define LEASE_MIN_TTL 2          /* seconds: etcd's minimum with default raft timing */
#define LEASE_MAX_TTL 9000000000 /* etcd's MaxLeaseTTL */

struct lease_mgr;

/* Starts the leadership and expiry thread. */
int lease_mgr_create(struct mvcc *m, struct lease_mgr **out) __attribute__((warn_unused_result));
void lease_mgr_destroy(struct lease_mgr *mgr);

/* Whether this process currently holds lease leadership (for tests and status). */
int lease_mgr_is_leader(struct lease_mgr *mgr);

/* One round of the loop: take or renew leadership, then expire what is due. Returns the
 * number of leases revoked. Tests call it directly; the thread renews leadership every
 * 500 ms and, while it leads, looks for due leases every 100 ms. */
int lease_mgr_step(struct lease_mgr *mgr, int64_t now_ms);

/* A manager without its own thread, for tests that drive lease_mgr_step(). */
int lease_mgr_create_manual(struct mvcc *m, struct lease_mgr **out)
    __attribute__((warn_unused_result));

int64_t lease_now_ms(void);

#endif
