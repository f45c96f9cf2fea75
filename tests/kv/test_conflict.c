/* test_conflict.c -- tests of kv/conflict: directed cases, then random point and range writes
 * at non-decreasing versions compared with a brute-force model over a small key universe,
 * and pruning, after which every answer for a read version >= the horizon must be unchanged.
 *
 * Why a finite universe is exact: every write and check range has both ends in the universe
 * U, so if a key x in [cb, ce) lies in a written [b, e), the universe key max(b, cb) lies in
 * both ranges too; checking the keys of U alone gives the same answer.
 *
 * Seeds are fixed and printed; CONFLICT_SEED=<n> runs one seed instead. */
#include "kv/conflict.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K(s) (const uint8_t *)(s), (int)(sizeof(s) - 1)

/* conflict_check over a string-literal range */
#define CHECK(c, b, e, rv) conflict_check((c), K(b), K(e), (rv))
#define WRITE(c, b, e, v) conflict_add_write((c), K(b), K(e), (v))

/* ---- Directed tests ---- */

START_TEST(test_empty)
{
    struct conflict *c = conflict_create();
    ck_assert_int_eq(conflict_size(c), 1);
    ck_assert(!CHECK(c, "", "\xff\xff", 0));
    ck_assert(!CHECK(c, "a", "b", 0));
    conflict_prune(c, 100);
    ck_assert_int_eq(conflict_size(c), 1);
    conflict_destroy(c);
    conflict_destroy(NULL);
}
END_TEST

START_TEST(test_point_write)
{
    struct conflict *c = conflict_create();
    WRITE(c, "k", "k\x00", 5); /* the single key "k" */
    ck_assert(CHECK(c, "k", "k\x00", 4));
    ck_assert(CHECK(c, "k", "k\x00", 0));
    ck_assert(!CHECK(c, "k", "k\x00", 5)); /* read at the write's version: no conflict */
    ck_assert(!CHECK(c, "k", "k\x00", 6));
    ck_assert(!CHECK(c, "j", "k", 0));     /* end is exclusive */
    ck_assert(!CHECK(c, "k\x00", "l", 0)); /* just after */
    ck_assert(CHECK(c, "j", "k\x00", 4));  /* overlapping */
    ck_assert(CHECK(c, "", "\xff", 4));    /* containing */
    ck_assert(!CHECK(c, "k", "k", 0));     /* empty range */
    ck_assert(!CHECK(c, "l", "a", 0));     /* inverted range */
    conflict_destroy(c);
}
END_TEST

START_TEST(test_range_write)
{
    struct conflict *c = conflict_create();
    WRITE(c, "b", "d", 10);
    ck_assert(!CHECK(c, "a", "b", 9));
    ck_assert(CHECK(c, "a", "b\x00", 9));
    ck_assert(CHECK(c, "c", "c\x00", 9));
    ck_assert(CHECK(c, "c\xff\xff", "z", 9));
    ck_assert(!CHECK(c, "d", "z", 0));
    /* a later write over part of it */
    WRITE(c, "c", "e", 20);
    ck_assert(CHECK(c, "b", "c", 9));
    ck_assert(!CHECK(c, "b", "c", 10));
    ck_assert(CHECK(c, "b", "c\x00", 10));
    ck_assert(CHECK(c, "d", "e", 19));
    ck_assert(!CHECK(c, "e", "f", 0));
    /* a later write covering both, from the empty key */
    WRITE(c, "", "z", 30);
    ck_assert(CHECK(c, "", "\x00", 29));
    ck_assert(!CHECK(c, "a", "y", 30));
    ck_assert(!CHECK(c, "z", "\xff", 0));
    /* an empty or inverted write records nothing */
    WRITE(c, "zz", "zz", 40);
    WRITE(c, "zz", "z", 40);
    ck_assert(!CHECK(c, "z", "\xff\xff", 30));
    conflict_destroy(c);
}
END_TEST

START_TEST(test_equal_versions_and_prune)
{
    struct conflict *c = conflict_create();
    WRITE(c, "a", "b", 7);
    WRITE(c, "c", "d", 7); /* versions need only not decrease */
    WRITE(c, "e", "f", 8);
    WRITE(c, "g", "h", 9);
    ck_assert(CHECK(c, "c", "d", 6));
    conflict_prune(c, 7);
    ck_assert(!CHECK(c, "a", "d", 7));
    ck_assert(CHECK(c, "a", "f", 7));
    ck_assert(CHECK(c, "g", "g\x00", 8));
    ck_assert(!CHECK(c, "g", "g\x00", 9));
    conflict_prune(c, 9);
    ck_assert(!CHECK(c, "", "\xff", 9));
    ck_assert_int_eq(conflict_size(c), 1); /* everything pruned collapses to one segment */
    /* still usable after pruning */
    WRITE(c, "m", "n", 12);
    ck_assert(CHECK(c, "l", "m\x00", 11));
    ck_assert(!CHECK(c, "l", "m", 9));
    conflict_destroy(c);
}
END_TEST

/* ---- The randomized model ---- */

/* Deterministic xorshift64* so every run tests the same values. */
struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545f4914f6cdd1dULL;
}

static int rng_below(struct rng *r, int n)
{
    return (int)(rng_next(r) % (uint64_t)n);
}

static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* An independent key order: unsigned bytes, a prefix first. */
static int ref_cmp(const uint8_t *a, int an, const uint8_t *b, int bn)
{
    for (int i = 0; i < an && i < bn; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static const uint8_t alphabet[] = {0x00, 0x01, 'a', 0xff};
#define ALPHABET_SIZE 4
#define KEY_MAX 4

struct key {
    uint8_t b[KEY_MAX];
    int len;
};

/* The universe: every key of up to 3 bytes over the alphabet, plus ff ff ff ff above them
 * all; sorted. A point write covers [k, k 00) for a key k of at most 2 bytes. */
struct model {
    struct key *keys;
    int nkeys;
    int64_t *version; /* by index: the last write covering the key, 0 if none */
    uint64_t seed;
    int step;
};

static int key_cmp(const struct key *a, const struct key *b)
{
    return ref_cmp(a->b, a->len, b->b, b->len);
}

static int key_qsort_cmp(const void *a, const void *b)
{
    return key_cmp(a, b);
}

static void model_init(struct model *m, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->seed = seed;
    int n = 1 + 4 + 16 + 64 + 1;
    m->keys = calloc((size_t)n, sizeof(*m->keys));
    m->version = calloc((size_t)n, sizeof(*m->version));
    ck_assert(m->keys && m->version);
    for (int len = 0; len <= 3; len++) {
        int count = 1;
        for (int i = 0; i < len; i++)
            count *= ALPHABET_SIZE;
        for (int x = 0; x < count; x++) {
            struct key *k = &m->keys[m->nkeys++];
            k->len = len;
            for (int i = 0, y = x; i < len; i++, y /= ALPHABET_SIZE)
                k->b[i] = alphabet[y % ALPHABET_SIZE];
        }
    }
    m->keys[m->nkeys++] = (struct key){{0xff, 0xff, 0xff, 0xff}, 4};
    ck_assert_int_eq(m->nkeys, n);
    qsort(m->keys, (size_t)n, sizeof(*m->keys), key_qsort_cmp);
}

static void model_free(struct model *m)
{
    free(m->keys);
    free(m->version);
}

static void model_write(struct model *m, const struct key *b, const struct key *e, int64_t v)
{
    for (int i = 0; i < m->nkeys; i++)
        if (key_cmp(&m->keys[i], b) >= 0 && key_cmp(&m->keys[i], e) < 0)
            m->version[i] = v;
}

static int model_check(const struct model *m, const struct key *b, const struct key *e,
                       int64_t read_version)
{
    for (int i = 0; i < m->nkeys; i++)
        if (key_cmp(&m->keys[i], b) >= 0 && key_cmp(&m->keys[i], e) < 0 &&
            m->version[i] > read_version)
            return 1;
    return 0;
}

static const char *key_str(const struct key *k, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < k->len && at + 3 < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%02x", k->b[i]);
    if (k->len == 0)
        snprintf(buf, size, "''");
    return buf;
}

/* A random range with both ends in the universe: a point, a short range, any range, or
 * (rarely) an empty or inverted one. */
static void random_range(const struct model *m, struct rng *r, struct key *b, struct key *e)
{
    int shape = rng_below(r, 20);
    if (shape < 6) { /* point [k, k 00) */
        int i;
        do
            i = rng_below(r, m->nkeys);
        while (m->keys[i].len > 2);
        *b = *e = m->keys[i];
        e->b[e->len++] = 0x00;
        return;
    }
    int i = rng_below(r, m->nkeys), j;
    if (shape < 12)
        j = i + 1 + rng_below(r, 12);
    else if (shape < 19)
        j = rng_below(r, m->nkeys + 1);
    else
        j = i - rng_below(r, 3); /* empty or inverted */
    if (j > m->nkeys - 1)
        j = m->nkeys - 1;
    if (j < 0)
        j = 0;
    if (shape >= 12 && shape < 19 && j < i) {
        int t = i;
        i = j;
        j = t;
    }
    *b = m->keys[i];
    *e = m->keys[j];
}

struct query {
    struct key b, e;
    int64_t read_version;
    int answer;
};

static void expect_check(const struct model *m, const struct conflict *c, const struct key *b,
                         const struct key *e, int64_t rv, const char *when)
{
    int got = conflict_check(c, b->b, b->len, e->b, e->len, rv);
    int want = model_check(m, b, e, rv);
    char bs[16], es[16];
    ck_assert_msg(got == want,
                  "seed 0x%016" PRIx64 " step %d%s: check [%s, %s) at read version %" PRId64
                  ": %d, expected %d",
                  m->seed, m->step, when, key_str(b, bs, sizeof bs), key_str(e, es, sizeof es), rv,
                  got, want);
}

static void run_model(uint64_t seed, int steps)
{
    struct model m;
    model_init(&m, seed);
    struct rng r = {seed};
    struct conflict *c = conflict_create();
    int64_t version = 0, horizon = 0;
    int writes = 0, hits = 0, checks = 0, prunes = 0;
    enum { NQUERIES = 400 };
    struct query *queries = calloc(NQUERIES, sizeof(*queries));
    ck_assert_ptr_nonnull(queries);
    printf("test_conflict: model seed 0x%016" PRIx64 ", %d steps\n", seed, steps);
    fflush(stdout);
    for (m.step = 0; m.step < steps; m.step++) {
        int dice = rng_below(&r, 100);
        struct key b, e;
        if (dice < 45) {
            version += rng_below(&r, 3); /* non-decreasing, often equal */
            if (version == 0)
                version = 1;
            random_range(&m, &r, &b, &e);
            conflict_add_write(c, b.b, b.len, e.b, e.len, version);
            model_write(&m, &b, &e, version);
            writes++;
        } else if (dice < 97) {
            random_range(&m, &r, &b, &e);
            /* half near the newest version, where answers flip */
            int64_t rv = rng_below(&r, 2) ? rng_range(&r, horizon, version + 1)
                                          : version + 1 - rng_below(&r, 6);
            if (rv < horizon)
                rv = horizon;
            expect_check(&m, c, &b, &e, rv, "");
            hits += model_check(&m, &b, &e, rv);
            checks++;
        } else {
            /* prune: record answers first, then compare them, the model, and the whole
             * step function at read versions at or above the new horizon */
            int64_t new_horizon = rng_range(&r, horizon, version);
            for (int q = 0; q < NQUERIES; q++) {
                random_range(&m, &r, &queries[q].b, &queries[q].e);
                queries[q].read_version = rng_range(&r, new_horizon, version + 1);
                queries[q].answer =
                    conflict_check(c, queries[q].b.b, queries[q].b.len, queries[q].e.b,
                                   queries[q].e.len, queries[q].read_version);
            }
            int size_before = conflict_size(c);
            conflict_prune(c, new_horizon);
            horizon = new_horizon;
            prunes++;
            ck_assert_msg(conflict_size(c) <= size_before,
                          "seed 0x%016" PRIx64
                          " step %d: prune grew the map from %d to %d boundaries",
                          seed, m.step, size_before, conflict_size(c));
            for (int q = 0; q < NQUERIES; q++) {
                char bs[16], es[16];
                int got = conflict_check(c, queries[q].b.b, queries[q].b.len, queries[q].e.b,
                                         queries[q].e.len, queries[q].read_version);
                ck_assert_msg(got == queries[q].answer,
                              "seed 0x%016" PRIx64 " step %d: after prune(%" PRId64
                              "), check [%s, %s) at %" PRId64 " changed from %d to %d",
                              seed, m.step, horizon, key_str(&queries[q].b, bs, sizeof bs),
                              key_str(&queries[q].e, es, sizeof es), queries[q].read_version,
                              queries[q].answer, got);
                expect_check(&m, c, &queries[q].b, &queries[q].e, queries[q].read_version,
                             " (after prune)");
            }
            /* every single universe key, at the horizon and just above it */
            for (int i = 0; i + 1 < m.nkeys; i++) {
                expect_check(&m, c, &m.keys[i], &m.keys[i + 1], horizon, " (after prune)");
                expect_check(&m, c, &m.keys[i], &m.keys[i + 1], horizon + 1, " (after prune)");
            }
        }
        /* a boundary per write end at most, plus the empty key */
        ck_assert_int_le(conflict_size(c), 2 * writes + 1);
    }
    /* pruning everything leaves one segment and no conflicts */
    conflict_prune(c, version);
    ck_assert_int_eq(conflict_size(c), 1);
    struct key lo = m.keys[0], hi = m.keys[m.nkeys - 1];
    ck_assert(!conflict_check(c, lo.b, lo.len, hi.b, hi.len, version));
    printf("test_conflict: seed 0x%016" PRIx64 ": %d writes up to version %" PRId64
           ", %d checks (%d conflicts), %d prunes\n",
           seed, writes, version, checks, hits, prunes);
    /* both answers must have been exercised */
    ck_assert_int_gt(hits, checks / 10);
    ck_assert_int_lt(hits, checks - checks / 10);
    free(queries);
    conflict_destroy(c);
    model_free(&m);
}

START_TEST(test_model_random)
{
    static const uint64_t seeds[] = {0x636f6e666c696374ULL, 0x0123456789abcdefULL, 7,
                                     0xfedcba9876543210ULL};
    const char *env = getenv("CONFLICT_SEED");
    run_model(env ? strtoull(env, NULL, 0) : seeds[_i], 20000);
}
END_TEST

static Suite *conflict_suite(void)
{
    Suite *s = suite_create("conflict");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_point_write);
    tcase_add_test(tc, test_range_write);
    tcase_add_test(tc, test_equal_versions_and_prune);
    tcase_add_loop_test(tc, test_model_random, 0, getenv("CONFLICT_SEED") ? 1 : 4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conflict_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
