/* mvcc_check.h -- what the tests above the store (mvcc, lease, watch) share: an assertion on
 * an mvcc call and a fresh subspace per test, on the store harness's database. */
#ifndef TESTS_MVCC_MVCC_CHECK_H
#define TESTS_MVCC_MVCC_CHECK_H

#include <check.h>
#include <stdio.h>

#include "mvcc/mvcc.h"
#include "tests/kv/store_harness.h"

/* Fails the test with file:line and the mvcc error's text when expr is not 0. */
#define MVCC_OK_(expr)                                                                         \
    do {                                                                                       \
        int mvcc_rc_ = (expr);                                                                 \
        ck_assert_msg(mvcc_rc_ == 0, "%s:%d: %s failed: %s", __FILE__, __LINE__, #expr,        \
                      mvcc_strerror(mvcc_rc_));                                                \
    } while (0)

/* Writes a subspace name unique in the process (name-N), so no state leaks between
 * tests. */
static inline void fresh_prefix(const char *name, char *buf, size_t cap)
{
    static int seq;
    snprintf(buf, cap, "%s-%d", name, seq++);
}

/* Opens an mvcc instance on a subspace; a second one on the same subspace is what a second
 * etcd-fdb process on the same store would have. */
static inline struct mvcc *mvcc_open_on(const char *prefix)
{
    struct mvcc_config c = {H.api, H.db, prefix, 128};
    struct mvcc *m = NULL;
    MVCC_OK_(mvcc_open(&c, &m));
    return m;
}

#endif
