/* test_lease.c -- lease expiry and leadership: one leader expires, a stale leader is fenced,
 * a new leader extends TTLs, expiry deletes a lease's keys in one revision, and with two
 * managers racing under fault injection no lease is revoked twice. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv/embedded.h"
#include "lease/lease.h"
#include "mvcc/mvcc.h"
#include "tests/kv/store_harness.h"
#include "tests/mvcc/mvcc_check.h"

static struct mvcc *M;


/* Each test gets its own subspace, so leases and leadership do not leak between tests. */
static void open_mvcc(void)
{
    char prefix[32];
    fresh_prefix("lease-test", prefix, sizeof(prefix));
    M = mvcc_open_on(prefix);
}

static void close_mvcc(void)
{
    mvcc_close(M);
    M = NULL;
}

static int64_t put(const char *key, int64_t lease)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.value.data = (uint8_t *)"v";
    req.value.len = 1;
    req.lease = lease;
    Etcdserverpb__PutResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_put(M, &req, &resp, &a, &se));
    int64_t rev = resp.header->revision;
    arena_free(&a);
    return rev;
}

static int exists(const char *key)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    Etcdserverpb__RangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_range(M, &req, &resp, &a, &se));
    int n = (int)resp.count;
    arena_free(&a);
    return n;
}

static int lease_found(int64_t id)
{
    struct mvcc_lease l;
    int found;
    int64_t rev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_lease_get(M, id, &l, &found, &rev, &se));
    return found;
}

/* DELETE events after `after`, with the revision of each. */
static size_t deletes_after(int64_t after, int64_t *revs, char (*keys)[32], size_t cap)
{
    struct arena a = {0};
    struct mvcc_events ev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_read_events(M, after, 100000, 0, &ev, &a, &se));
    size_t n = 0;
    for (size_t i = 0; i < ev.n && n < cap; i++)
        if (ev.events[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
            revs[n] = ev.events[i]->kv->mod_revision;
            size_t kl = ev.events[i]->kv->key.len < 31 ? ev.events[i]->kv->key.len : 31;
            memcpy(keys[n], ev.events[i]->kv->key.data, kl);
            keys[n][kl] = 0;
            n++;
        }
    arena_free(&a);
    return n;
}

/* A lease manager stepped by the test (no thread of its own). */
static struct lease_mgr *manual_mgr(void)
{
    struct lease_mgr *mgr;
    ck_assert_int_eq(lease_mgr_create_manual(M, &mgr), 0);
    return mgr;
}

START_TEST(test_expiry_deletes_keys_in_one_revision)
{
    open_mvcc();
    struct lease_mgr *a = manual_mgr();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_lease_grant(M, 100, 2, t0, &rev, &se));
    MVCC_OK_(mvcc_lease_grant(M, 200, 60, t0, &rev, &se));
    int64_t before = put("a1", 100);
    put("a2", 100);
    put("a3", 100);
    put("b1", 200);
    put("plain", 0);
    ck_assert_int_eq(lease_mgr_step(a, t0), 0); /* becomes leader, nothing due */
    ck_assert(lease_mgr_is_leader(a));
    ck_assert_int_eq(lease_mgr_step(a, t0 + 1500), 0);
    ck_assert_int_eq(exists("a1"), 1);
    ck_assert_int_eq(lease_mgr_step(a, t0 + 2500), 1); /* lease 100 expired */
    ck_assert_int_eq(exists("a1") + exists("a2") + exists("a3"), 0);
    ck_assert_int_eq(exists("b1") + exists("plain"), 2);
    ck_assert(!lease_found(100));
    ck_assert(lease_found(200));
    int64_t revs[16];
    char keys[16][32];
    size_t n = deletes_after(before, revs, keys, 16);
    ck_assert_int_eq(n, 3);
    ck_assert(revs[0] == revs[1] && revs[1] == revs[2]); /* one revision */
    lease_mgr_destroy(a);
    close_mvcc();
}
END_TEST

/* More leases due at once than one scan of the expiry index takes (1,024): the revokers
 * refill their queue from where the last scan ended, and a lease due later stays. */
START_TEST(test_expiry_of_more_leases_than_one_scan)
{
    open_mvcc();
    struct lease_mgr *a = manual_mgr();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    enum { N = 2500 };
    for (int64_t id = 1; id <= N; id++)
        MVCC_OK_(mvcc_lease_grant(M, id, 2 + id % 3, t0, &rev, &se)); /* due at +2..+4 s */
    MVCC_OK_(mvcc_lease_grant(M, N + 1, 60, t0, &rev, &se));
    put("late", N + 1);
    put("due", N);
    ck_assert_int_eq(lease_mgr_step(a, t0), 0); /* becomes leader, nothing due */
    ck_assert_int_eq(lease_mgr_step(a, t0 + 5000), N);
    for (int64_t id = 1; id <= N; id += 97)
        ck_assert(!lease_found(id));
    ck_assert(!lease_found(N));
    ck_assert_int_eq(exists("due"), 0);
    ck_assert(lease_found(N + 1));
    ck_assert_int_eq(exists("late"), 1);
    ck_assert_int_eq(lease_mgr_step(a, t0 + 5100), 0); /* nothing left */
    lease_mgr_destroy(a);
    close_mvcc();
}
END_TEST

START_TEST(test_revoke_deletes_every_key_of_a_long_list)
{
    /* More keys than the first read of a lease's key list returns (1,000), one value split
     * into chunks, a key moved to another lease and a key detached before the revoke. */
    enum { N = 2500 };
    open_mvcc();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_lease_grant(M, 300, 60, t0, &rev, &se));
    MVCC_OK_(mvcc_lease_grant(M, 400, 60, t0, &rev, &se));
    char key[32];
    int64_t before = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "m/%05d", i);
        int64_t r = put(key, 300);
        if (i == 0)
            before = r - 1;
    }
    static uint8_t big[200000];
    memset(big, 'x', sizeof(big));
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)"m/big";
    req.key.len = 5;
    req.value.data = big;
    req.value.len = sizeof(big);
    req.lease = 300;
    Etcdserverpb__PutResponse resp;
    struct arena a = {0};
    MVCC_OK_(mvcc_put(M, &req, &resp, &a, &se));
    arena_free(&a);
    put("m/00007", 400); /* moved */
    put("m/00008", 0);   /* detached */
    int revoked = 0;
    MVCC_OK_(mvcc_lease_revoke(M, 300, 0, NULL, &rev, &revoked, &se));
    ck_assert_int_eq(revoked, 1);
    ck_assert(!lease_found(300));
    ck_assert_int_eq(exists("m/00000") + exists("m/02499") + exists("m/01000") +
                         exists("m/big"), 0);
    ck_assert_int_eq(exists("m/00007") + exists("m/00008"), 2);
    static int64_t revs[N + 8];
    static char keys[N + 8][32];
    size_t n = deletes_after(before, revs, keys, N + 8);
    ck_assert_uint_eq(n, N - 2 + 1); /* every attached key once, the big one included */
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(revs[i], rev); /* one revision: the revoke's */
    close_mvcc();
}
END_TEST

START_TEST(test_keepalive_postpones_expiry)
{
    open_mvcc();
    struct lease_mgr *a = manual_mgr();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    ck_assert_int_eq(lease_mgr_step(a, t0), 0); /* leader from the start */
    MVCC_OK_(mvcc_lease_grant(M, 7, 3, t0, &rev, &se));
    put("k", 7);
    struct mvcc_lease l;
    int found;
    MVCC_OK_(mvcc_lease_renew(M, 7, t0 + 2000, &l, &found, &rev, &se));
    ck_assert(found);
    ck_assert_int_eq(l.expires_at_ms, t0 + 5000);
    /* a renewal within 0.5 s of the last writes nothing */
    MVCC_OK_(mvcc_lease_renew(M, 7, t0 + 2100, &l, &found, &rev, &se));
    ck_assert_int_eq(l.expires_at_ms, t0 + 5000);
    /* one keepalive soon after the grant, then none: TTL after that keepalive, as etcd */
    MVCC_OK_(mvcc_lease_grant(M, 8, 3, t0, &rev, &se));
    put("k8", 8);
    MVCC_OK_(mvcc_lease_renew(M, 8, t0 + 700, &l, &found, &rev, &se));
    ck_assert_int_eq(l.expires_at_ms, t0 + 3700);
    ck_assert_int_eq(lease_mgr_step(a, t0 + 3600), 0);
    ck_assert_int_eq(exists("k8"), 1);
    ck_assert_int_eq(lease_mgr_step(a, t0 + 4000), 1); /* lease 8 */
    ck_assert_int_eq(exists("k8"), 0);
    ck_assert_int_eq(exists("k"), 1);
    ck_assert_int_eq(lease_mgr_step(a, t0 + 5001), 1);
    ck_assert_int_eq(exists("k"), 0);
    MVCC_OK_(mvcc_lease_renew(M, 7, t0 + 6000, &l, &found, &rev, &se));
    ck_assert(!found); /* etcd answers TTL 0 */
    lease_mgr_destroy(a);
    close_mvcc();
}
END_TEST

START_TEST(test_only_the_leader_expires_and_takeover_extends)
{
    open_mvcc();
    struct lease_mgr *a = manual_mgr(), *b = manual_mgr();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_lease_grant(M, 1, 10, t0, &rev, &se));
    put("x", 1);
    lease_mgr_step(a, t0);
    lease_mgr_step(b, t0 + 100);
    ck_assert(lease_mgr_is_leader(a));
    ck_assert(!lease_mgr_is_leader(b));
    /* a stops (a crash); b takes over once a's hold (5 s) runs out and gives every lease its
     * full TTL again: the lease that was due at t0 + 10 s now lives to t0 + 16 s. */
    lease_mgr_step(b, t0 + 6000);
    ck_assert(lease_mgr_is_leader(b));
    ck_assert_int_eq(lease_mgr_step(b, t0 + 11000), 0);
    ck_assert_int_eq(exists("x"), 1);
    /* a comes back believing it leads: its step finds b's record and does nothing */
    ck_assert(lease_mgr_is_leader(a));
    ck_assert_int_eq(lease_mgr_step(a, t0 + 15000), 0);
    ck_assert(!lease_mgr_is_leader(a));
    ck_assert_int_eq(exists("x"), 1);
    ck_assert_int_eq(lease_mgr_step(b, t0 + 16500), 1);
    ck_assert_int_eq(exists("x"), 0);
    lease_mgr_destroy(a);
    lease_mgr_destroy(b);
    close_mvcc();
}
END_TEST

START_TEST(test_stale_fence_cannot_revoke)
{
    open_mvcc();
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_lease_grant(M, 5, 2, t0, &rev, &se));
    put("f", 5);
    struct lease_mgr *b = manual_mgr();
    lease_mgr_step(b, t0); /* b holds the record now */
    uint8_t *key;
    size_t key_len;
    mvcc_meta_key(M, "lease-leader", &key, &key_len);
    uint8_t stale[32] = {0, 0, 0, 0, 0, 0, 0, 1};
    struct mvcc_fence fence = {key, key_len, stale, 32};
    int revoked = 0;
    ck_assert_int_eq(mvcc_lease_revoke(M, 5, t0 + 5000, &fence, &rev, &revoked, &se),
                     MVCC_ERR_FENCED);
    ck_assert(!revoked);
    ck_assert_int_eq(exists("f"), 1);
    free(key);
    lease_mgr_destroy(b);
    close_mvcc();
}
END_TEST

struct racer {
    struct lease_mgr *mgr;
    int64_t until_ms;
    int revoked;
};

static void *race_main(void *arg)
{
    struct racer *r = arg;
    while (lease_now_ms() < r->until_ms) {
        r->revoked += lease_mgr_step(r->mgr, lease_now_ms());
        usleep(20 * 1000);
    }
    return NULL;
}

START_TEST(test_two_managers_under_faults_revoke_once)
{
    SKIP_IF_NOT_EMBEDDED();
    open_mvcc();
    enum { LEASES = 30 };
    int64_t t0 = lease_now_ms(), rev;
    fdb_error_t se = 0;
    int64_t before = put("start", 0);
    for (int i = 0; i < LEASES; i++) {
        MVCC_OK_(mvcc_lease_grant(M, 1000 + i, 2, t0, &rev, &se));
        char k[32];
        snprintf(k, sizeof(k), "r/%d/a", i);
        put(k, 1000 + i);
        snprintf(k, sizeof(k), "r/%d/b", i);
        put(k, 1000 + i);
    }
    struct racer r[2];
    pthread_t t[2];
    embedded_set_faults(H.db, 99, 100);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(lease_mgr_create_manual(M, &r[i].mgr), 0);
        r[i].until_ms = lease_now_ms() + 6000;
        r[i].revoked = 0;
        pthread_create(&t[i], NULL, race_main, &r[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    embedded_set_faults(H.db, 0, 0);
    /* 6 s of racing is 3 TTLs: the leader expired them all despite the faults */
    int total = r[0].revoked + r[1].revoked;
    ck_assert(lease_mgr_is_leader(r[0].mgr) != lease_mgr_is_leader(r[1].mgr));
    for (int i = 0; i < LEASES; i++)
        ck_assert_msg(!lease_found(1000 + i), "lease %d survived", 1000 + i);
    static int64_t revs[4 * LEASES];
    static char keys[4 * LEASES][32];
    size_t n = deletes_after(before, revs, keys, 4 * LEASES);
    ck_assert_int_eq(n, 2 * LEASES); /* every key deleted exactly once */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            ck_assert_msg(strcmp(keys[i], keys[j]) != 0, "%s deleted twice", keys[i]);
    ck_assert_int_le(total, LEASES);
    for (int i = 0; i < 2; i++)
        lease_mgr_destroy(r[i].mgr);
    close_mvcc();
}
END_TEST

int main(void)
{
    harness_start();
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("expiry");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_expiry_deletes_keys_in_one_revision);
    tcase_add_test(tc, test_revoke_deletes_every_key_of_a_long_list);
    tcase_add_test(tc, test_expiry_of_more_leases_than_one_scan);
    tcase_add_test(tc, test_keepalive_postpones_expiry);
    tcase_add_test(tc, test_only_the_leader_expires_and_takeover_extends);
    tcase_add_test(tc, test_stale_fence_cannot_revoke);
    tcase_add_test(tc, test_two_managers_under_faults_revoke_once);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    harness_stop();
    return failed ? 1 : 0;
}
