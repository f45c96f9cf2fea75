/* test_mvcc.c -- etcd's revision semantics on the store, with the store's fault injection:
 * every write request makes exactly one new revision, revisions strictly increase, no
 * acknowledged write is lost, none is applied twice, reads make no revision, history and
 * compaction behave as etcd's. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/embedded.h"
#include "kv/retry.h"
#include "mvcc/keys.h"
#include "mvcc/mvcc.h"
#include "tests/kv/store_harness.h"
#include "tests/mvcc/mvcc_check.h"

static struct mvcc *M;
static char PREFIX[32]; /* the test's subspace */

static void setup(void)
{
    fresh_prefix("mvcc-test", PREFIX, sizeof(PREFIX));
    M = mvcc_open_on(PREFIX);
}

static void teardown(void)
{
    mvcc_close(M);
}

static ProtobufCBinaryData B(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Put; returns the mvcc error; *rev gets the response revision. */
static int put(const char *key, const char *value, int64_t *rev)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = B(key);
    req.value = B(value);
    Etcdserverpb__PutResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    int err = mvcc_put(M, &req, &resp, &a, &se);
    if (!err && rev)
        *rev = resp.header->revision;
    arena_free(&a);
    return err;
}

struct got {
    int found;
    int64_t create, mod, version, header;
    char value[64];
};

/* Reads key at revision at (0: newest) into *g; returns mvcc_range's result. */
static int range_at(const char *key, int64_t at, struct got *g)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = B(key);
    req.revision = at;
    Etcdserverpb__RangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    memset(g, 0, sizeof(*g));
    int rc = mvcc_range(M, &req, &resp, &a, &se);
    if (rc) {
        arena_free(&a);
        return rc;
    }
    g->header = resp.header->revision;
    if (resp.n_kvs) {
        Mvccpb__KeyValue *kv = resp.kvs[0];
        g->found = 1;
        g->create = kv->create_revision;
        g->mod = kv->mod_revision;
        g->version = kv->version;
        size_t n = kv->value.len < 63 ? kv->value.len : 63;
        memcpy(g->value, kv->value.data, n);
        g->value[n] = 0;
    }
    arena_free(&a);
    return 0;
}

static struct got get_at(const char *key, int64_t at)
{
    struct got g;
    MVCC_OK_(range_at(key, at, &g));
    return g;
}

static int64_t del(const char *key, const char *end, int64_t *deleted)
{
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    req.key = B(key);
    if (end)
        req.range_end = B(end);
    Etcdserverpb__DeleteRangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_delete_range(M, &req, &resp, &a, &se));
    *deleted = resp.deleted;
    int64_t rev = resp.header->revision;
    arena_free(&a);
    return rev;
}

START_TEST(test_revisions_versions_and_history)
{
    int64_t r1, r2, r3, r4, deleted;
    ck_assert_int_eq(put("k", "a", &r1), 0);
    ck_assert_int_eq(put("k", "b", &r2), 0);
    ck_assert_int_gt(r2, r1);
    struct got g = get_at("k", 0);
    ck_assert(g.found && g.create == r1 && g.mod == r2 && g.version == 2);
    ck_assert_str_eq(g.value, "b");
    ck_assert_int_eq(g.header, r2); /* a read reports the newest revision */
    ck_assert_int_eq(get_at("k", 0).header, r2); /* reads make no revision */
    r3 = del("k", NULL, &deleted);
    ck_assert_int_eq(deleted, 1);
    ck_assert_int_gt(r3, r2);
    ck_assert(!get_at("k", 0).found);
    ck_assert_int_eq(del("k", NULL, &deleted), r3); /* deleting nothing makes no revision */
    ck_assert_int_eq(deleted, 0);
    ck_assert_int_eq(put("k", "c", &r4), 0);
    g = get_at("k", 0);
    ck_assert(g.create == r4 && g.version == 1); /* version resets after a delete */
    /* history */
    g = get_at("k", r1);
    ck_assert(g.found && g.mod == r1 && g.version == 1);
    ck_assert_str_eq(g.value, "a");
    ck_assert(!get_at("k", r3).found);
    ck_assert(!get_at("k", r1 - 1).found);
    /* future and compacted revisions */
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = B("k");
    req.revision = r4 + 1;
    Etcdserverpb__RangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    ck_assert_int_eq(mvcc_range(M, &req, &resp, &a, &se), MVCC_ERR_FUTURE_REV);
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = r3;
    c.physical = 1;
    Etcdserverpb__CompactionResponse cr;
    MVCC_OK_(mvcc_compact(M, &c, &cr, &a, &se));
    req.revision = r2;
    ck_assert_int_eq(mvcc_range(M, &req, &resp, &a, &se), MVCC_ERR_COMPACTED);
    ck_assert_int_eq(mvcc_compact(M, &c, &cr, &a, &se), MVCC_ERR_COMPACTED);
    req.revision = r3; /* the compaction revision itself stays readable */
    MVCC_OK_(mvcc_range(M, &req, &resp, &a, &se));
    ck_assert_int_eq(resp.n_kvs, 0);
    arena_free(&a);
    ck_assert_str_eq(get_at("k", 0).value, "c");
}
END_TEST

START_TEST(test_txn_makes_one_revision)
{
    int64_t r0;
    ck_assert_int_eq(put("t/a", "1", &r0), 0);
    /* if t/a == "1" then put t/b, put t/c, delete t/a, range t/ */
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.key = B("t/a");
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    cmp.value = B("1");
    Etcdserverpb__Compare *cmps[] = {&cmp};
    Etcdserverpb__PutRequest pb = ETCDSERVERPB__PUT_REQUEST__INIT, pc = ETCDSERVERPB__PUT_REQUEST__INIT;
    pb.key = B("t/b");
    pb.value = B("2");
    pc.key = B("t/c");
    pc.value = B("3");
    Etcdserverpb__DeleteRangeRequest da = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    da.key = B("t/a");
    Etcdserverpb__RangeRequest rg = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rg.key = B("t/");
    rg.range_end = B("t0");
    /* a count of the range, and the range as of r0 (before the txn's writes) */
    Etcdserverpb__RangeRequest cnt = rg, before = rg;
    cnt.count_only = 1;
    before.revision = r0;
    Etcdserverpb__RequestOp o1 = ETCDSERVERPB__REQUEST_OP__INIT, o2 = ETCDSERVERPB__REQUEST_OP__INIT,
                            o3 = ETCDSERVERPB__REQUEST_OP__INIT, o4 = ETCDSERVERPB__REQUEST_OP__INIT,
                            o5 = ETCDSERVERPB__REQUEST_OP__INIT, o6 = ETCDSERVERPB__REQUEST_OP__INIT;
    o1.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    o1.request_put = &pb;
    o2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    o2.request_put = &pc;
    o3.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    o3.request_delete_range = &da;
    o4.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    o4.request_range = &rg;
    o5.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    o5.request_range = &cnt;
    o6.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    o6.request_range = &before;
    Etcdserverpb__RequestOp *ops[] = {&o1, &o2, &o3, &o4, &o5, &o6};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 6;
    txn.success = ops;
    Etcdserverpb__TxnResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_txn(M, &txn, &resp, &a, &se));
    ck_assert(resp.succeeded);
    int64_t rev = resp.header->revision;
    ck_assert_int_gt(rev, r0);
    /* the range inside the txn sees the txn's own writes, at the txn's revision */
    Etcdserverpb__RangeResponse *in = resp.responses[3]->response_range;
    ck_assert_int_eq(in->n_kvs, 2);
    ck_assert_int_eq(in->kvs[0]->mod_revision, rev);
    ck_assert_int_eq(in->kvs[0]->create_revision, rev);
    ck_assert_int_eq(in->header->revision, rev);
    /* a count_only range counts them too (t/b, t/c; t/a deleted) */
    Etcdserverpb__RangeResponse *counted = resp.responses[4]->response_range;
    ck_assert_int_eq(counted->count, 2);
    ck_assert_int_eq(counted->n_kvs, 0);
    /* a range at a revision reads the store as of it: t/a only */
    Etcdserverpb__RangeResponse *old = resp.responses[5]->response_range;
    ck_assert_int_eq(old->count, 1);
    ck_assert_int_eq(old->n_kvs, 1);
    ck_assert_int_eq(old->kvs[0]->key.len, 3);
    ck_assert(memcmp(old->kvs[0]->key.data, "t/a", 3) == 0);
    ck_assert_int_eq(old->kvs[0]->mod_revision, r0);
    arena_free(&a);
    /* all changes share the one revision */
    ck_assert_int_eq(get_at("t/b", 0).mod, rev);
    ck_assert_int_eq(get_at("t/c", 0).mod, rev);
    ck_assert(!get_at("t/a", 0).found);
    ck_assert(get_at("t/a", rev - 1).found);
    struct mvcc_events ev;
    MVCC_OK_(mvcc_read_events(M, r0, 100, 0, &ev, &a, &se));
    ck_assert_int_eq(ev.n, 3);
    for (size_t i = 0; i < ev.n; i++)
        ck_assert_int_eq(ev.events[i]->kv->mod_revision, rev);
    arena_free(&a);
    /* duplicate key and too many operations are refused before anything is written */
    Etcdserverpb__RequestOp *dup[] = {&o1, &o1};
    txn.n_success = 2;
    txn.success = dup;
    ck_assert_int_eq(mvcc_txn(M, &txn, &resp, &a, &se), MVCC_ERR_DUPLICATE_KEY);
    arena_free(&a);
}
END_TEST

START_TEST(test_large_values_are_split)
{
    size_t n = 300000; /* more than three store values */
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + (i * 7) % 26);
    big[n] = 0;
    int64_t r1, r2;
    ck_assert_int_eq(put("big", big, &r1), 0);
    ck_assert_int_eq(put("big", "small", &r2), 0);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = B("big");
    req.revision = r1;
    Etcdserverpb__RangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_range(M, &req, &resp, &a, &se));
    ck_assert_int_eq(resp.n_kvs, 1);
    ck_assert_uint_eq(resp.kvs[0]->value.len, n);
    ck_assert(memcmp(resp.kvs[0]->value.data, big, n) == 0);
    arena_free(&a);
    ck_assert_str_eq(get_at("big", 0).value, "small");
    free(big);
}
END_TEST

/* Writers under fault injection: every acknowledged write is there exactly once. */
struct writer {
    int id;
    int acked, unknown, failed;
    int64_t revs[200];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < 200; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "f/%d/%03d", w->id, i);
        snprintf(value, sizeof(value), "v%d", i);
        int64_t rev = 0;
        int err = put(key, value, &rev);
        if (!err) {
            w->revs[w->acked++] = rev;
        } else if (err == MVCC_ERR_TIMEOUT) {
            w->unknown++;
        } else {
            w->failed++;
        }
    }
    return NULL;
}

/* Runs 4 writers under faults, then checks the change log: nothing doubled, nothing
 * acknowledged lost. Returns how many writes ended "timed out" (outcome unknown). */
static int run_faulty_writers(int idempotency)
{
    int64_t start;
    ck_assert_int_eq(put("f-start", "x", &start), 0);
    embedded_set_idempotency(H.db, idempotency);
    embedded_set_faults(H.db, 1234, 150);
    struct writer w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].id = i;
        pthread_create(&t[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    embedded_set_faults(H.db, 0, 0);
    embedded_set_idempotency(H.db, 1);
    int acked = 0, unknown = 0;
    for (int i = 0; i < 4; i++) {
        acked += w[i].acked;
        unknown += w[i].unknown;
        ck_assert_int_eq(w[i].failed, 0); /* only "unknown" may fail a write */
        for (int j = 1; j < w[i].acked; j++)
            ck_assert_int_gt(w[i].revs[j], w[i].revs[j - 1]); /* increasing */
    }
    ck_assert_int_gt(acked, 300);
    /* The change log after start: each key written at most once (never doubled), every
     * acknowledged one present at its revision, all revisions distinct per write. */
    struct arena a = {0};
    struct mvcc_events ev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_read_events(M, start, 100000, 0, &ev, &a, &se));
    ck_assert_int_ge((int)ev.n, acked);
    ck_assert_int_le((int)ev.n, 800);
    for (size_t i = 0; i < ev.n; i++) {
        ck_assert_int_eq(ev.events[i]->kv->version, 1); /* a second apply would be version 2 */
        if (i)
            ck_assert_int_gt(ev.events[i]->kv->mod_revision, ev.events[i - 1]->kv->mod_revision);
    }
    arena_free(&a);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < w[i].acked; j++) {
            /* acknowledged writes are the ones with a revision in the log */
            int found = 0;
            MVCC_OK_(mvcc_read_events(M, w[i].revs[j] - 1, 1, 0, &ev, &a, &se));
            found = ev.n == 1 && ev.events[0]->kv->mod_revision == w[i].revs[j];
            arena_free(&a);
            ck_assert_msg(found, "acknowledged write %d/%d at %lld is missing", i, j,
                          (long long)w[i].revs[j]);
        }
    return unknown;
}

START_TEST(test_faults_no_lost_or_doubled_writes)
{
    SKIP_IF_NOT_EMBEDDED();
    /* With automatic idempotency (FoundationDB 7.3, the embedded engine): never unknown. */
    ck_assert_int_eq(run_faulty_writers(1), 0);
}
END_TEST

START_TEST(test_faults_without_idempotency_report_unknown_never_double)
{
    SKIP_IF_NOT_EMBEDDED();
    /* Like a 7.1 cluster: some writes end "request timed out", none is applied twice. */
    ck_assert_int_gt(run_faulty_writers(0), 0);
}
END_TEST

/* Rows of one space of the test's subspace, read from the store itself. */
static int raw_rows(enum keys_space space)
{
    struct keys k;
    keys_init(&k, PREFIX);
    struct tuple_buf b, e;
    tuple_buf_init(&b);
    tuple_buf_init(&e);
    keys_space_range(&k, space, &b, &e);
    FDBTransaction *tr;
    ck_assert_int_eq(H.api->database_create_transaction(H.db, &tr), 0);
    FDBFuture *f = H.api->transaction_get_range(tr, b.data, (int)b.len, 0, 1, e.data, (int)e.len,
                                                0, 1, 0, 0, FDB_STREAMING_MODE_WANT_ALL, 1, 1, 0);
    ck_assert_int_eq(kv_wait(H.api, f), 0);
    const FDBKeyValue *kvs;
    int count, more;
    ck_assert_int_eq(H.api->future_get_keyvalue_array(f, &kvs, &count, &more), 0);
    ck_assert(!more);
    H.api->future_destroy(f);
    H.api->transaction_destroy(tr);
    tuple_buf_free(&b);
    tuple_buf_free(&e);
    keys_free(&k);
    return count;
}

static void compact(int64_t rev)
{
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    req.revision = rev;
    Etcdserverpb__CompactionResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_compact(M, &req, &resp, &a, &se));
    arena_free(&a);
}

/* Puts bulk/<i> for i in [0, n), 100 keys per Txn: n events in n / 100 revisions. */
static void put_bulk(int n)
{
    enum { PER_TXN = 100 };
    static char names[PER_TXN][16];
    Etcdserverpb__PutRequest puts[PER_TXN];
    Etcdserverpb__RequestOp ops[PER_TXN], *op_ptrs[PER_TXN];
    for (int done = 0; done < n; done += PER_TXN) {
        int k = n - done < PER_TXN ? n - done : PER_TXN;
        for (int i = 0; i < k; i++) {
            snprintf(names[i], sizeof(names[i]), "bulk/%05d", done + i);
            etcdserverpb__put_request__init(&puts[i]);
            puts[i].key = B(names[i]);
            puts[i].value = B("b");
            etcdserverpb__request_op__init(&ops[i]);
            ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            ops[i].request_put = &puts[i];
            op_ptrs[i] = &ops[i];
        }
        Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
        txn.success = op_ptrs;
        txn.n_success = (size_t)k;
        Etcdserverpb__TxnResponse resp;
        struct arena a = {0};
        fdb_error_t se = 0;
        MVCC_OK_(mvcc_txn(M, &txn, &resp, &a, &se));
        arena_free(&a);
    }
}

START_TEST(test_compaction_removes_history_after_the_grace)
{
    /* Compaction is logical at once and physical only up to the revision committed 10 s
     * before (docs/ARCHITECTURE.md, "Compaction"): first nothing is removed, then, 10 s
     * later, every history record hidden by a newer one below the bound and the change log
     * below it. */
    int64_t rd, r[6];
    struct got g;
    enum { BULK = 5000 }; /* more events than one transaction of the log clear takes */
    MVCC_OK_(put("d", "x", &rd));
    put_bulk(BULK);
    for (int i = 1; i <= 4; i++)
        MVCC_OK_(put("c", i == 1 ? "1" : i == 2 ? "2" : i == 3 ? "3" : "4", &r[i]));
    ck_assert_int_eq(raw_rows(KEYS_HISTORY), 5 + BULK);
    ck_assert_int_eq(raw_rows(KEYS_LOG), 5 + BULK);
    compact(r[3]);
    ck_assert_int_eq(range_at("c", r[2], &g), MVCC_ERR_COMPACTED); /* logical: at once */
    ck_assert_str_eq(get_at("c", r[3]).value, "3");
    ck_assert_int_eq(raw_rows(KEYS_HISTORY), 5 + BULK); /* physical: not yet */
    ck_assert_int_eq(raw_rows(KEYS_LOG), 5 + BULK);
    struct arena a = {0};
    struct mvcc_events ev;
    fdb_error_t se = 0;
    /* a watch tail behind the compaction still reads every event; a catch-up cannot */
    MVCC_OK_(mvcc_read_events_tail(M, r[1] - 1, 100, 0, &ev, &a, &se));
    ck_assert_uint_eq(ev.n, 4);
    arena_free(&a);
    ck_assert_int_eq(mvcc_read_events(M, rd, 100, 0, &ev, &a, &se), MVCC_ERR_COMPACTED);
    arena_free(&a);

    struct timespec grace = {10, 500 * 1000 * 1000};
    nanosleep(&grace, NULL);
    MVCC_OK_(put("c", "5", &r[5]));
    compact(r[4]);
    ck_assert_int_eq(range_at("c", r[3], &g), MVCC_ERR_COMPACTED);
    ck_assert_str_eq(get_at("c", r[4]).value, "4");
    ck_assert_str_eq(get_at("d", r[4]).value, "x");
    ck_assert_str_eq(get_at("c", 0).value, "5");
    /* c's records 1 and 2 are gone; 3, the newest below the bound, stays with 4 and 5 (a
     * read at the bound sees 4); d's and the bulk keys' only records stay */
    ck_assert_int_eq(raw_rows(KEYS_HISTORY), 4 + BULK);
    ck_assert_int_eq(raw_rows(KEYS_LOG), 2); /* the events at r4 and r5: all the rest, in
                                                several transactions of the log clear */
    ck_assert_int_eq(mvcc_read_events_tail(M, rd, 100, 0, &ev, &a, &se), MVCC_ERR_COMPACTED);
    arena_free(&a);
    MVCC_OK_(mvcc_read_events_tail(M, r[4] - 1, 100, 0, &ev, &a, &se));
    ck_assert_uint_eq(ev.n, 2);
    arena_free(&a);
}
END_TEST

int main(void)
{
    harness_start();
    Suite *s = suite_create("mvcc");
    TCase *tc = tcase_create("revisions");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_revisions_versions_and_history);
    tcase_add_test(tc, test_txn_makes_one_revision);
    tcase_add_test(tc, test_large_values_are_split);
    tcase_add_test(tc, test_compaction_removes_history_after_the_grace);
    tcase_add_test(tc, test_faults_no_lost_or_doubled_writes);
    tcase_add_test(tc, test_faults_without_idempotency_report_unknown_never_double);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    harness_stop();
    return failed ? 1 : 0;
}
