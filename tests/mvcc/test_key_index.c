/* test_key_index.c -- the in-memory key index against a model: the set of live keys after
 * every revision, as bit masks over 64 keys. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc/key_index.h"

enum { KEYS = 64, REVS = 20000 };

/* live[r]: bit k set when key k is live after revision r. */
static uint64_t live[REVS + 1];
static char names[KEYS][8];
static Mvccpb__KeyValue kvs[REVS + 1];
static Mvccpb__Event events[REVS + 1];
static Mvccpb__Event *event_ptrs[REVS + 1];

static ProtobufCBinaryData name(int k)
{
    return (ProtobufCBinaryData){strlen(names[k]), (uint8_t *)names[k]};
}

/* Revisions from+1..to: each puts or deletes one random key (a delete only of a live key:
 * etcd logs no event for deleting nothing). */
static void make_history(unsigned *seed, int from, int to)
{
    for (int r = from + 1; r <= to; r++) {
        int k = rand_r(seed) % KEYS;
        int del = (live[r - 1] >> k & 1) && rand_r(seed) % 2;
        live[r] = del ? live[r - 1] & ~(1ull << k) : live[r - 1] | (1ull << k);
        mvccpb__key_value__init(&kvs[r]);
        kvs[r].key = name(k);
        kvs[r].mod_revision = r;
        mvccpb__event__init(&events[r]);
        events[r].type = del ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
        events[r].kv = &kvs[r];
        event_ptrs[r] = &events[r];
    }
}

/* Keys a..b-1 live at revision r, as a loader chunk read at r sees them. */
static void load_chunk(struct key_index *ix, int a, int b, int r, int last)
{
    ProtobufCBinaryData keys[KEYS];
    size_t n = 0;
    for (int k = a; k < b; k++)
        if (live[r] >> k & 1)
            keys[n++] = name(k);
    key_index_load(ix, keys, n, r, last);
}

static int64_t model_count(int r, int a, int b)
{
    int64_t n = 0;
    for (int k = a; k < b; k++)
        n += live[r] >> k & 1;
    return n;
}

/* Checks random ranges at random revisions in [lo, hi] against the model; b == KEYS is
 * the open end "\0". */
static void check_counts(struct key_index *ix, unsigned *seed, int lo, int hi)
{
    static const uint8_t zero = 0;
    for (int i = 0; i < 200; i++) {
        int r = lo + rand_r(seed) % (hi - lo + 1);
        int a = rand_r(seed) % KEYS, b = rand_r(seed) % (KEYS + 1);
        ProtobufCBinaryData key = name(a);
        ProtobufCBinaryData end = b == KEYS ? (ProtobufCBinaryData){1, (uint8_t *)&zero} : name(b);
        int64_t n = -1, want = b > a ? model_count(r, a, b) : 0;
        ck_assert_int_eq(key_index_count(ix, &key, &end, r, 0, &n), 0);
        ck_assert_int_eq(n, want);
    }
}

START_TEST(test_loads_while_the_tail_applies_changes_then_counts_every_revision)
{
    for (unsigned seed = 1; seed <= 20; seed++) {
        unsigned s = seed;
        memset(live, 0, sizeof(live));
        make_history(&s, 0, 2000);
        struct key_index *ix = key_index_create();
        key_index_reset(ix, 100); /* the tail follows after revision 100 */
        /* Four loader chunks at nondecreasing revisions >= 100, interleaved with tail
         * batches: a chunk may be read before changes the tail has already applied. */
        int tail = 100, chunk = 0, chunk_rev = 100;
        while (chunk < 4 || tail < chunk_rev) {
            int64_t n;
            ProtobufCBinaryData k0 = name(0), k9 = name(KEYS - 1);
            ck_assert_int_eq(key_index_count(ix, &k0, &k9, tail, 0, &n), -1); /* loading */
            if (chunk < 4 && rand_r(&s) % 2) {
                chunk_rev += rand_r(&s) % 40;
                load_chunk(ix, chunk * 16, chunk * 16 + 16, chunk_rev, chunk == 3);
                chunk++;
            } else {
                int to = tail + 1 + rand_r(&s) % 30;
                key_index_apply(ix, &event_ptrs[tail + 1], (size_t)(to - tail), to);
                tail = to;
            }
        }
        int ready_rev = tail; /* the ring starts here */
        check_counts(ix, &s, tail, tail);
        /* READY: more changes, counted at the newest revision and at older ones (the ring). */
        for (int step = 0; step < 20 && tail < 2000; step++) {
            int to = tail + 1 + rand_r(&s) % 50;
            if (to > 2000)
                to = 2000;
            key_index_apply(ix, &event_ptrs[tail + 1], (size_t)(to - tail), to);
            tail = to;
            check_counts(ix, &s, ready_rev, tail);
        }
        /* A revision the tail has not reached: the index cannot tell. */
        int64_t n;
        ProtobufCBinaryData k0 = name(0), k9 = name(KEYS - 1);
        ck_assert_int_eq(key_index_count(ix, &k0, &k9, tail + 1, 0, &n), -1);
        key_index_destroy(ix);
    }
}
END_TEST

START_TEST(test_forgets_old_changes_and_says_so)
{
    unsigned s = 7;
    memset(live, 0, sizeof(live));
    make_history(&s, 0, REVS);
    struct key_index *ix = key_index_create();
    key_index_reset(ix, 0);
    load_chunk(ix, 0, KEYS, 0, 1);
    for (int r = 0; r < REVS; r += 1000)
        key_index_apply(ix, &event_ptrs[r + 1], 1000, r + 1000);
    /* About half of 20,000 changes alter the live count: more than the ring keeps. */
    int64_t n;
    ProtobufCBinaryData k0 = name(0), k9 = name(KEYS - 1);
    ck_assert_int_eq(key_index_count(ix, &k0, &k9, 1000, 0, &n), -1);
    check_counts(ix, &s, REVS - 2000, REVS);
    /* A reset (the tail lost events) forgets everything until loaded again. */
    key_index_reset(ix, REVS);
    ck_assert_int_eq(key_index_count(ix, &k0, &k9, REVS, 0, &n), -1);
    load_chunk(ix, 0, KEYS, REVS, 1);
    check_counts(ix, &s, REVS, REVS);
    key_index_destroy(ix);
}
END_TEST

int main(void)
{
    for (int k = 0; k < KEYS; k++)
        snprintf(names[k], sizeof(names[k]), "key%02d", k);
    Suite *s = suite_create("key_index");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_loads_while_the_tail_applies_changes_then_counts_every_revision);
    tcase_add_test(tc, test_forgets_old_changes_and_says_so);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
