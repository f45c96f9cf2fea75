/* test_writemap.c -- tests of kv/writemap: directed cases, then a model-based randomized test
 * that applies thousands of writes over a small key alphabet (so keys collide) to the
 * writemap and to a brute-force model, comparing point lookups, cleared-range membership,
 * chain resolution and every kind of seek and iteration after each step.
 *
 * Seeds are fixed and printed; WRITEMAP_SEED=<n> runs one seed instead, WRITEMAP_TRACE=1
 * prints every operation (to replay a failure). */
#include "kv/writemap.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/fdb_api.h"
#include "kv/mutation.h"

#define MIN_V2 18
#define AND_V2 19

/* ---- Helpers ---- */

/* An independent key order: unsigned bytes, a prefix first. */
static int ref_cmp(const uint8_t *a, int an, const uint8_t *b, int bn)
{
    for (int i = 0; i < an && i < bn; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static void hex(const uint8_t *p, int n, char *out, size_t out_size)
{
    size_t at = 0;
    out[0] = '\0';
    if (!p) {
        snprintf(out, out_size, "(null)");
        return;
    }
    for (int i = 0; i < n && at + 8 < out_size; i++)
        at += (size_t)snprintf(out + at, out_size - at, "%02x", p[i]);
    if (n == 0)
        snprintf(out, out_size, "''");
}

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

#define K(s) (const uint8_t *)(s), (int)(sizeof(s) - 1)

/* Asserts that e is the entry for key s. */
#define EXPECT_KEY(e, s)                                                                           \
    do {                                                                                           \
        const struct writemap_entry *expect_e_ = (e);                                              \
        ck_assert_msg(expect_e_ != NULL, "%s:%d: expected key \"%s\", got NULL", __FILE__,         \
                      __LINE__, s);                                                                \
        ck_assert_msg(ref_cmp(expect_e_->key, expect_e_->key_len, K(s)) == 0,                      \
                      "%s:%d: expected key \"%s\", got \"%.*s\"", __FILE__, __LINE__, s,           \
                      expect_e_->key_len, (const char *)expect_e_->key);                           \
    } while (0)

/* Asserts that e is KNOWN and holds value s. */
#define EXPECT_VALUE(e, s)                                                                         \
    do {                                                                                           \
        const struct writemap_entry *expect_e_ = (e);                                              \
        ck_assert_msg(expect_e_ && expect_e_->state == WRITEMAP_KNOWN && expect_e_->present &&     \
                          ref_cmp(expect_e_->value, expect_e_->value_len, K(s)) == 0,              \
                      "%s:%d: expected known value \"%s\"", __FILE__, __LINE__, s);                \
    } while (0)

/* ---- Directed tests ---- */

START_TEST(test_set_clear_find)
{
    struct writemap *wm = writemap_create();
    ck_assert(writemap_is_empty(wm));
    ck_assert_ptr_null(writemap_find(wm, K("a")));
    ck_assert_ptr_null(writemap_seek_ge(wm, K(""), 1));
    ck_assert_ptr_null(writemap_seek_le(wm, K("\xff\xff"), 1));
    writemap_set(wm, K("b"), K("1"));
    writemap_set(wm, K("a"), K(""));
    writemap_set(wm, K(""), K("empty key"));
    ck_assert(!writemap_is_empty(wm));
    EXPECT_VALUE(writemap_find(wm, K("b")), "1");
    EXPECT_VALUE(writemap_find(wm, K("a")), "");
    EXPECT_VALUE(writemap_find(wm, K("")), "empty key");
    ck_assert_ptr_null(writemap_find(wm, K("a\x00")));
    writemap_set(wm, K("b"), K("22")); /* overwrite */
    EXPECT_VALUE(writemap_find(wm, K("b")), "22");
    writemap_clear(wm, K("b"));
    struct writemap_entry *e = writemap_find(wm, K("b"));
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->state, WRITEMAP_KNOWN);
    ck_assert_int_eq(e->present, 0);
    ck_assert(!writemap_in_cleared_range(wm, K("b"))); /* a point clear is an entry */
    writemap_clear(wm, K("c"));                        /* clearing an unwritten key */
    e = writemap_find(wm, K("c"));
    ck_assert(e && e->state == WRITEMAP_KNOWN && !e->present);
    writemap_reset(wm);
    ck_assert(writemap_is_empty(wm));
    ck_assert_ptr_null(writemap_find(wm, K("a")));
    writemap_destroy(wm);
    writemap_destroy(NULL);
}
END_TEST

START_TEST(test_atomic_chain_and_known)
{
    struct writemap *wm = writemap_create();
    /* unknown base: kept as a chain */
    writemap_atomic(wm, K("k"), FDB_MUTATION_TYPE_ADD, K("\x01\x00"));
    writemap_atomic(wm, K("k"), FDB_MUTATION_TYPE_ADD, K("\xff\x00"));
    struct writemap_entry *e = writemap_find(wm, K("k"));
    ck_assert(e && e->state == WRITEMAP_CHAIN);
    uint8_t *out;
    int out_len, out_present;
    writemap_resolve_chain(e, 1, K("\x01\x01"), &out, &out_len, &out_present);
    ck_assert(out_present && out_len == 2 && memcmp(out, "\x01\x02", 2) == 0);
    free(out);
    writemap_resolve_chain(e, 0, NULL, 0, &out, &out_len, &out_present);
    ck_assert(out_present && out_len == 2 && memcmp(out, "\x00\x01", 2) == 0);
    free(out);
    /* a chain ending in COMPARE_AND_CLEAR can resolve to absent */
    writemap_atomic(wm, K("k"), FDB_MUTATION_TYPE_COMPARE_AND_CLEAR, K("\x01\x02"));
    e = writemap_find(wm, K("k"));
    writemap_resolve_chain(e, 1, K("\x01\x01"), &out, &out_len, &out_present);
    ck_assert_int_eq(out_present, 0);
    free(out);
    /* known base: applied at once */
    writemap_set(wm, K("n"), K("\x05"));
    writemap_atomic(wm, K("n"), FDB_MUTATION_TYPE_ADD, K("\x03"));
    EXPECT_VALUE(writemap_find(wm, K("n")), "\x08");
    /* after a point clear the base is known absent too */
    writemap_clear(wm, K("z"));
    writemap_atomic(wm, K("z"), FDB_MUTATION_TYPE_ADD, K("\x01"));
    EXPECT_VALUE(writemap_find(wm, K("z")), "\x01");
    /* a set ends a chain */
    writemap_set(wm, K("k"), K("v"));
    EXPECT_VALUE(writemap_find(wm, K("k")), "v");
    /* inside a cleared range the base is known absent */
    writemap_clear_range(wm, K("p"), K("q"));
    writemap_atomic(wm, K("pp"), FDB_MUTATION_TYPE_BIT_OR, K("\x0f"));
    EXPECT_VALUE(writemap_find(wm, K("pp")), "\x0f");
    writemap_atomic(wm, K("pq"), FDB_MUTATION_TYPE_COMPARE_AND_CLEAR, K("x"));
    e = writemap_find(wm, K("pq"));
    ck_assert(e && e->state == WRITEMAP_KNOWN && !e->present);
    /* ... but not at its end */
    writemap_atomic(wm, K("q"), FDB_MUTATION_TYPE_BIT_OR, K("\x0f"));
    ck_assert_int_eq(writemap_find(wm, K("q"))->state, WRITEMAP_CHAIN);
    writemap_destroy(wm);
}
END_TEST

START_TEST(test_unreadable)
{
    struct writemap *wm = writemap_create();
    writemap_set_unreadable(wm, K("u"));
    ck_assert_int_eq(writemap_find(wm, K("u"))->state, WRITEMAP_UNREADABLE);
    writemap_atomic(wm, K("u"), FDB_MUTATION_TYPE_ADD, K("\x01"));
    ck_assert_int_eq(writemap_find(wm, K("u"))->state, WRITEMAP_UNREADABLE);
    writemap_set(wm, K("u"), K("x"));
    EXPECT_VALUE(writemap_find(wm, K("u")), "x");
    writemap_atomic(wm, K("w"), FDB_MUTATION_TYPE_ADD, K("\x01"));
    writemap_set_unreadable(wm, K("w")); /* replaces a chain */
    ck_assert_int_eq(writemap_find(wm, K("w"))->state, WRITEMAP_UNREADABLE);
    writemap_clear(wm, K("w"));
    struct writemap_entry *e = writemap_find(wm, K("w"));
    ck_assert(e->state == WRITEMAP_KNOWN && !e->present);
    writemap_set_unreadable(wm, K("w"));
    writemap_clear_range(wm, K("v"), K("x"));
    ck_assert_ptr_null(writemap_find(wm, K("w")));
    writemap_destroy(wm);
}
END_TEST

START_TEST(test_clear_range_intervals)
{
    struct writemap *wm = writemap_create();
    writemap_clear_range(wm, K("b"), K("b")); /* empty: nothing */
    writemap_clear_range(wm, K("c"), K("b")); /* inverted: nothing */
    ck_assert(writemap_is_empty(wm));
    writemap_set(wm, K("a"), K("1"));
    writemap_set(wm, K("b"), K("2"));
    writemap_set(wm, K("b\x00"), K("3"));
    writemap_set(wm, K("c"), K("4"));
    writemap_clear_range(wm, K("b"), K("c")); /* begin inclusive, end exclusive */
    ck_assert_ptr_nonnull(writemap_find(wm, K("a")));
    ck_assert_ptr_null(writemap_find(wm, K("b")));
    ck_assert_ptr_null(writemap_find(wm, K("b\x00")));
    ck_assert_ptr_nonnull(writemap_find(wm, K("c")));
    ck_assert(!writemap_in_cleared_range(wm, K("a\xff")));
    ck_assert(writemap_in_cleared_range(wm, K("b")));
    ck_assert(writemap_in_cleared_range(wm, K("b\xff\xff")));
    ck_assert(!writemap_in_cleared_range(wm, K("c")));
    /* adjacent intervals join: [b,c) + [c,d) covers c */
    writemap_clear_range(wm, K("c"), K("d"));
    ck_assert_ptr_null(writemap_find(wm, K("c")));
    ck_assert(writemap_in_cleared_range(wm, K("c")));
    ck_assert(!writemap_in_cleared_range(wm, K("d")));
    /* a disjoint one, then one spanning both and more */
    writemap_clear_range(wm, K("f"), K("g"));
    ck_assert(!writemap_in_cleared_range(wm, K("e")));
    writemap_clear_range(wm, K("a\x00"), K("h"));
    ck_assert(!writemap_in_cleared_range(wm, K("a")));
    for (const char *k = "bcdefg"; *k; k++)
        ck_assert_msg(writemap_in_cleared_range(wm, (const uint8_t *)k, 1), "%c not cleared", *k);
    ck_assert(writemap_in_cleared_range(wm, K("a\x00")));
    ck_assert(!writemap_in_cleared_range(wm, K("h")));
    /* a write inside a cleared range is an entry and takes precedence */
    writemap_set(wm, K("e"), K("5"));
    EXPECT_VALUE(writemap_find(wm, K("e")), "5");
    ck_assert(writemap_in_cleared_range(wm, K("e")));
    /* the empty key can begin a range */
    writemap_clear_range(wm, K(""), K("\x00"));
    ck_assert(writemap_in_cleared_range(wm, K("")));
    ck_assert(!writemap_in_cleared_range(wm, K("\x00")));
    writemap_reset(wm);
    ck_assert(!writemap_in_cleared_range(wm, K("e")));
    writemap_destroy(wm);
}
END_TEST

START_TEST(test_seek_bounds)
{
    struct writemap *wm = writemap_create();
    writemap_set(wm, K("b"), K("1"));
    writemap_set(wm, K("d"), K("2"));
    writemap_set(wm, K("d\x00"), K("3"));
    EXPECT_KEY(writemap_seek_ge(wm, K("b"), 1), "b");
    EXPECT_KEY(writemap_seek_ge(wm, K("b"), 0), "d");
    EXPECT_KEY(writemap_seek_ge(wm, K("a"), 0), "b");
    EXPECT_KEY(writemap_seek_ge(wm, K("c"), 1), "d");
    EXPECT_KEY(writemap_seek_ge(wm, K("d"), 0), "d\x00");
    ck_assert_ptr_null(writemap_seek_ge(wm, K("d\x00"), 0));
    ck_assert_ptr_null(writemap_seek_ge(wm, K("d\x01"), 1));
    EXPECT_KEY(writemap_seek_le(wm, K("d"), 1), "d");
    EXPECT_KEY(writemap_seek_le(wm, K("d"), 0), "b");
    EXPECT_KEY(writemap_seek_le(wm, K("d\x00"), 0), "d");
    EXPECT_KEY(writemap_seek_le(wm, K("c"), 1), "b");
    EXPECT_KEY(writemap_seek_le(wm, K("\xff"), 0), "d\x00");
    ck_assert_ptr_null(writemap_seek_le(wm, K("b"), 0));
    ck_assert_ptr_null(writemap_seek_le(wm, K("a"), 1));
    struct writemap_entry *e = writemap_seek_ge(wm, K(""), 1);
    EXPECT_KEY(e, "b");
    ck_assert_ptr_null(writemap_prev(e));
    EXPECT_KEY(e = writemap_next(e), "d");
    EXPECT_KEY(e = writemap_next(e), "d\x00");
    ck_assert_ptr_null(writemap_next(e));
    EXPECT_KEY(writemap_prev(e), "d");
    writemap_destroy(wm);
}
END_TEST

START_TEST(test_compare_keys)
{
    struct rng r = {0x636f6d70617265ULL};
    static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
    for (int i = 0; i < 100000; i++) {
        uint8_t a[4] = {0}, b[4] = {0};
        int an = rng_below(&r, 5), bn = rng_below(&r, 5);
        for (int k = 0; k < an; k++)
            a[k] = bytes[rng_below(&r, 6)];
        for (int k = 0; k < bn; k++)
            b[k] = rng_below(&r, 2) && k < an ? a[k] : bytes[rng_below(&r, 6)];
        int want = ref_cmp(a, an, b, bn), got = writemap_compare_keys(a, an, b, bn);
        ck_assert_msg((got > 0) - (got < 0) == want, "compare of lengths %d, %d: %d, want %d", an,
                      bn, got, want);
    }
}
END_TEST

/* ---- The model ---- */

static const uint8_t alphabet[] = {0x00, 0x01, 'a', 0xff};
#define ALPHABET_SIZE 4
#define WRITE_KEY_MAX 3 /* keys written have at most 3 bytes ... */
#define PROBE_KEY_MAX 4 /* ... range ends and probes at most 4 */
#define KEY_MAX 8

struct key {
    uint8_t b[KEY_MAX];
    int len;
};

struct model_op {
    int type;
    uint8_t *param;
    int param_len;
};

/* What the writemap should hold for one key. */
struct model_entry {
    int exists;
    enum writemap_state state;
    int present;
    uint8_t *value; /* KNOWN and present */
    int value_len;
    struct model_op *ops; /* CHAIN */
    int op_count;
};

struct range {
    struct key begin, end;
};

struct model {
    struct key *keys; /* every probe key, sorted; write keys are those of length <= 3 */
    int nkeys;
    struct model_entry *entries; /* by index in keys */
    int *cleared;                /* by index: inside some cleared range */
    struct range *ranges;        /* every clear_range since the reset, as given */
    int nranges, ranges_cap;
    int written;                /* any write or valid clear_range since the reset */
    long seen[4], seen_cleared; /* coverage: entries compared per state, keys found cleared */
    /* for messages */
    uint64_t seed;
    int step;
    int trace;
};

static int key_cmp(const struct key *a, const struct key *b)
{
    return ref_cmp(a->b, a->len, b->b, b->len);
}

static int key_qsort_cmp(const void *a, const void *b)
{
    return key_cmp(a, b);
}

static const char *key_str(const uint8_t *p, int n, char *buf, size_t size)
{
    hex(p, n, buf, size);
    return buf;
}

/* Fails the test, naming the seed and step that reproduce it. */
#define MODEL_CHECK(m, cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char model_msg_[1024];                                                                 \
            snprintf(model_msg_, sizeof model_msg_, __VA_ARGS__);                                  \
            ck_abort_msg("%s:%d: seed 0x%016" PRIx64 " step %d: %s", __FILE__, __LINE__,           \
                         (m)->seed, (m)->step, model_msg_);                                        \
        }                                                                                          \
    } while (0)

static void model_init(struct model *m)
{
    memset(m, 0, sizeof(*m));
    int n = 0, pow = 1;
    for (int len = 0; len <= PROBE_KEY_MAX; len++, pow *= ALPHABET_SIZE)
        n += pow;
    m->keys = calloc((size_t)n, sizeof(*m->keys));
    m->entries = calloc((size_t)n, sizeof(*m->entries));
    m->cleared = calloc((size_t)n, sizeof(*m->cleared));
    ck_assert(m->keys && m->entries && m->cleared);
    m->nkeys = 0;
    for (int len = 0; len <= PROBE_KEY_MAX; len++) {
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
    ck_assert_int_eq(m->nkeys, n);
    qsort(m->keys, (size_t)n, sizeof(*m->keys), key_qsort_cmp);
}

static void entry_forget(struct model_entry *e)
{
    free(e->value);
    for (int i = 0; i < e->op_count; i++)
        free(e->ops[i].param);
    free(e->ops);
    memset(e, 0, sizeof(*e));
}

static void model_reset(struct model *m)
{
    for (int i = 0; i < m->nkeys; i++) {
        entry_forget(&m->entries[i]);
        m->cleared[i] = 0;
    }
    m->nranges = 0;
    m->written = 0;
}

static void model_free(struct model *m)
{
    model_reset(m);
    free(m->keys);
    free(m->entries);
    free(m->cleared);
    free(m->ranges);
}

static uint8_t *copy(const uint8_t *p, int n)
{
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_ptr_nonnull(d);
    if (n > 0)
        memcpy(d, p, (size_t)n);
    return d;
}

static void model_set(struct model *m, int i, const uint8_t *value, int value_len)
{
    struct model_entry *e = &m->entries[i];
    entry_forget(e);
    *e = (struct model_entry){.exists = 1,
                              .state = WRITEMAP_KNOWN,
                              .present = 1,
                              .value = copy(value, value_len),
                              .value_len = value_len};
    m->written = 1;
}

static void model_clear(struct model *m, int i)
{
    struct model_entry *e = &m->entries[i];
    entry_forget(e);
    *e = (struct model_entry){.exists = 1, .state = WRITEMAP_KNOWN, .present = 0};
    m->written = 1;
}

static void model_unreadable(struct model *m, int i)
{
    struct model_entry *e = &m->entries[i];
    entry_forget(e);
    *e = (struct model_entry){.exists = 1, .state = WRITEMAP_UNREADABLE};
    m->written = 1;
}

/* An atomic op: applied at once to a known base (an entry, or absent inside a cleared
 * range), appended to a chain over an unknown base, ignored on an unreadable entry. */
static void model_atomic(struct model *m, int i, int op, const uint8_t *param, int param_len)
{
    struct model_entry *e = &m->entries[i];
    m->written = 1;
    if (e->exists && e->state == WRITEMAP_UNREADABLE)
        return;
    if ((e->exists && e->state == WRITEMAP_KNOWN) || (!e->exists && m->cleared[i])) {
        int present = e->exists && e->present;
        uint8_t *out;
        int out_len, out_present;
        mutation_apply(op, present, present ? e->value : NULL, present ? e->value_len : 0, param,
                       param_len, &out, &out_len, &out_present);
        entry_forget(e);
        *e = (struct model_entry){.exists = 1, .state = WRITEMAP_KNOWN, .present = out_present};
        if (out_present) {
            e->value = out;
            e->value_len = out_len;
        } else {
            free(out);
        }
        return;
    }
    if (!e->exists)
        *e = (struct model_entry){.exists = 1, .state = WRITEMAP_CHAIN};
    e->ops = realloc(e->ops, (size_t)(e->op_count + 1) * sizeof(*e->ops));
    ck_assert_ptr_nonnull(e->ops);
    e->ops[e->op_count++] = (struct model_op){op, copy(param, param_len), param_len};
}

static void model_clear_range(struct model *m, const struct key *b, const struct key *end)
{
    if (key_cmp(b, end) >= 0)
        return;
    m->written = 1;
    for (int i = 0; i < m->nkeys; i++) {
        if (key_cmp(&m->keys[i], b) >= 0 && key_cmp(&m->keys[i], end) < 0) {
            entry_forget(&m->entries[i]);
            m->cleared[i] = 1;
        }
    }
    if (m->nranges == m->ranges_cap) {
        m->ranges_cap = m->ranges_cap ? 2 * m->ranges_cap : 64;
        m->ranges = realloc(m->ranges, (size_t)m->ranges_cap * sizeof(*m->ranges));
        ck_assert_ptr_nonnull(m->ranges);
    }
    m->ranges[m->nranges++] = (struct range){*b, *end};
}

/* Membership by brute force over every range given, for keys outside the probe set. */
static int model_in_ranges(const struct model *m, const struct key *k)
{
    for (int i = 0; i < m->nranges; i++)
        if (key_cmp(&m->ranges[i].begin, k) <= 0 && key_cmp(k, &m->ranges[i].end) < 0)
            return 1;
    return 0;
}

static void model_resolve(const struct model_entry *e, int present, const uint8_t *base,
                          int base_len, uint8_t **out, int *out_len, int *out_present)
{
    uint8_t *cur = copy(base, present ? base_len : 0);
    int cur_len = present ? base_len : 0;
    for (int i = 0; i < e->op_count; i++) {
        uint8_t *next;
        int next_len;
        mutation_apply(e->ops[i].type, present, cur, cur_len, e->ops[i].param, e->ops[i].param_len,
                       &next, &next_len, &present);
        free(cur);
        cur = next;
        cur_len = next_len;
    }
    *out = cur;
    *out_len = cur_len;
    *out_present = present;
}

/* The index of the first key with an entry that is >= k (> k when !inclusive), or -1. */
static int model_seek_ge(const struct model *m, const struct key *k, int inclusive)
{
    for (int i = 0; i < m->nkeys; i++) {
        int c = key_cmp(&m->keys[i], k);
        if (m->entries[i].exists && (c > 0 || (inclusive && c == 0)))
            return i;
    }
    return -1;
}

static int model_seek_le(const struct model *m, const struct key *k, int inclusive)
{
    for (int i = m->nkeys - 1; i >= 0; i--) {
        int c = key_cmp(&m->keys[i], k);
        if (m->entries[i].exists && (c < 0 || (inclusive && c == 0)))
            return i;
    }
    return -1;
}

static int model_next(const struct model *m, int i, int dir)
{
    for (i += dir; i >= 0 && i < m->nkeys; i += dir)
        if (m->entries[i].exists)
            return i;
    return -1;
}

/* ---- Comparing the writemap with the model ---- */

/* A random base value, from a small set so that COMPARE_AND_CLEAR sometimes matches. */
static void random_small_value(struct rng *r, uint8_t *p, int *len)
{
    *len = rng_below(r, 4);
    for (int i = 0; i < *len; i++)
        p[i] = (uint8_t)rng_below(r, 2);
}

static void compare_entry(const struct model *m, struct writemap *wm, struct rng *r, int i)
{
    const struct key *k = &m->keys[i];
    const struct model_entry *me = &m->entries[i];
    struct writemap_entry *e = writemap_find(wm, k->b, k->len);
    char ks[64], a[160], b[160], c[160];
    key_str(k->b, k->len, ks, sizeof ks);
    MODEL_CHECK(m, (e != NULL) == me->exists, "find(%s): %s, expected %s", ks,
                e ? "an entry" : "NULL", me->exists ? "an entry" : "NULL");
    if (!e)
        return;
    ((struct model *)m)->seen[me->state]++;
    MODEL_CHECK(m, ref_cmp(e->key, e->key_len, k->b, k->len) == 0, "find(%s) returned key %s", ks,
                key_str(e->key, e->key_len, a, sizeof a));
    MODEL_CHECK(m, e->state == me->state, "find(%s): state %d, expected %d", ks, e->state,
                me->state);
    if (me->state == WRITEMAP_KNOWN) {
        MODEL_CHECK(m, e->present == me->present, "find(%s): present %d, expected %d", ks,
                    e->present, me->present);
        if (me->present)
            MODEL_CHECK(m, ref_cmp(e->value, e->value_len, me->value, me->value_len) == 0,
                        "find(%s): value %s, expected %s", ks,
                        key_str(e->value, e->value_len, a, sizeof a),
                        key_str(me->value, me->value_len, b, sizeof b));
    } else if (me->state == WRITEMAP_CHAIN) {
        for (int t = 0; t < 3; t++) {
            uint8_t base[4];
            int base_len, base_present = t > 0 && rng_below(r, 5) != 0;
            random_small_value(r, base, &base_len);
            uint8_t *got, *want;
            int got_len, got_present, want_len, want_present;
            writemap_resolve_chain(e, base_present, base_present ? base : NULL,
                                   base_present ? base_len : 0, &got, &got_len, &got_present);
            model_resolve(me, base_present, base, base_len, &want, &want_len, &want_present);
            MODEL_CHECK(m, got_present == want_present,
                        "resolve(%s) over %s: present %d, expected %d", ks,
                        base_present ? key_str(base, base_len, a, sizeof a) : "absent", got_present,
                        want_present);
            if (want_present)
                MODEL_CHECK(m, ref_cmp(got, got_len, want, want_len) == 0,
                            "resolve(%s) over %s (%d ops): %s, expected %s", ks,
                            base_present ? key_str(base, base_len, a, sizeof a) : "absent",
                            me->op_count, key_str(got, got_len, b, sizeof b),
                            key_str(want, want_len, c, sizeof c));
            free(got);
            free(want);
        }
    }
}

/* Walks from e in direction dir (+1 next, -1 prev) while inside the bound, comparing every
 * entry with the model's walk from index i. */
static void compare_walk(const struct model *m, struct writemap_entry *e, int i, int dir,
                         const struct key *bound, int bound_inclusive, const char *what)
{
    char a[64], b[64];
    for (int n = 0;; n++) {
        if (i >= 0 && bound) {
            int c = key_cmp(&m->keys[i], bound) * dir;
            if (c > 0 || (c == 0 && !bound_inclusive))
                i = -1;
        }
        if (e && bound) {
            int c = ref_cmp(e->key, e->key_len, bound->b, bound->len) * dir;
            if (c > 0 || (c == 0 && !bound_inclusive))
                e = NULL;
        }
        MODEL_CHECK(m, (e != NULL) == (i >= 0), "%s, item %d: %s, expected %s", what, n,
                    e ? key_str(e->key, e->key_len, a, sizeof a) : "end",
                    i >= 0 ? key_str(m->keys[i].b, m->keys[i].len, b, sizeof b) : "end");
        if (!e)
            return;
        MODEL_CHECK(m, ref_cmp(e->key, e->key_len, m->keys[i].b, m->keys[i].len) == 0,
                    "%s, item %d: %s, expected %s", what, n,
                    key_str(e->key, e->key_len, a, sizeof a),
                    key_str(m->keys[i].b, m->keys[i].len, b, sizeof b));
        e = dir > 0 ? writemap_next(e) : writemap_prev(e);
        i = model_next(m, i, dir);
    }
}

/* A probe key: usually one of the model's keys, sometimes one between them (other bytes,
 * longer) so seeks and membership land strictly between keys. */
static void random_probe(const struct model *m, struct rng *r, struct key *k)
{
    if (rng_below(r, 3) != 0) {
        *k = m->keys[rng_below(r, m->nkeys)];
        return;
    }
    static const uint8_t bytes[] = {0x00, 0x01, 0x02, 'a', 'b', 0x80, 0xfe, 0xff};
    k->len = rng_below(r, 7);
    for (int i = 0; i < k->len; i++)
        k->b[i] = bytes[rng_below(r, 8)];
}

static void compare_all(const struct model *m, struct writemap *wm, struct rng *r)
{
    char a[64], b[64], what[256];
    MODEL_CHECK(m, writemap_is_empty(wm) == !m->written, "is_empty %d, expected %d",
                writemap_is_empty(wm), !m->written);
    /* point lookups and chains */
    for (int i = 0; i < m->nkeys; i++)
        if (m->keys[i].len <= WRITE_KEY_MAX)
            compare_entry(m, wm, r, i);
    /* membership, every probe key */
    for (int i = 0; i < m->nkeys; i++) {
        const struct key *k = &m->keys[i];
        int got = writemap_in_cleared_range(wm, k->b, k->len);
        ((struct model *)m)->seen_cleared += got;
        MODEL_CHECK(m, got == m->cleared[i], "in_cleared_range(%s): %d, expected %d",
                    key_str(k->b, k->len, a, sizeof a), got, m->cleared[i]);
    }
    /* membership between probe keys */
    for (int t = 0; t < 4; t++) {
        struct key k;
        random_probe(m, r, &k);
        int got = writemap_in_cleared_range(wm, k.b, k.len), want = model_in_ranges(m, &k);
        MODEL_CHECK(m, got == want, "in_cleared_range(%s): %d, expected %d",
                    key_str(k.b, k.len, a, sizeof a), got, want);
    }
    /* full iteration, both ways */
    struct key lowest = {.len = 0}, highest = {.b = {0xff, 0xff, 0xff, 0xff, 0xff}, .len = 5};
    compare_walk(m, writemap_seek_ge(wm, lowest.b, lowest.len, 1), model_seek_ge(m, &lowest, 1), 1,
                 NULL, 0, "forward scan");
    compare_walk(m, writemap_seek_le(wm, highest.b, highest.len, 1), model_seek_le(m, &highest, 1),
                 -1, NULL, 0, "backward scan");
    /* bounded scans with inclusive and exclusive ends */
    for (int t = 0; t < 6; t++) {
        struct key lo, hi;
        random_probe(m, r, &lo);
        random_probe(m, r, &hi);
        if (key_cmp(&lo, &hi) > 0) {
            struct key tmp = lo;
            lo = hi;
            hi = tmp;
        }
        int lo_inclusive = rng_below(r, 2), hi_inclusive = rng_below(r, 2);
        snprintf(what, sizeof what, "forward %s%s, %s%s", lo_inclusive ? "[" : "(",
                 key_str(lo.b, lo.len, a, sizeof a), key_str(hi.b, hi.len, b, sizeof b),
                 hi_inclusive ? "]" : ")");
        compare_walk(m, writemap_seek_ge(wm, lo.b, lo.len, lo_inclusive),
                     model_seek_ge(m, &lo, lo_inclusive), 1, &hi, hi_inclusive, what);
        snprintf(what, sizeof what, "backward %s%s, %s%s", lo_inclusive ? "[" : "(",
                 key_str(lo.b, lo.len, a, sizeof a), key_str(hi.b, hi.len, b, sizeof b),
                 hi_inclusive ? "]" : ")");
        compare_walk(m, writemap_seek_le(wm, hi.b, hi.len, hi_inclusive),
                     model_seek_le(m, &hi, hi_inclusive), -1, &lo, lo_inclusive, what);
    }
}

/* ---- Random operations ---- */

static const int atomic_ops[] = {FDB_MUTATION_TYPE_ADD,
                                 FDB_MUTATION_TYPE_BIT_AND,
                                 FDB_MUTATION_TYPE_BIT_OR,
                                 FDB_MUTATION_TYPE_BIT_XOR,
                                 FDB_MUTATION_TYPE_APPEND_IF_FITS,
                                 FDB_MUTATION_TYPE_MAX,
                                 FDB_MUTATION_TYPE_MIN,
                                 FDB_MUTATION_TYPE_BYTE_MIN,
                                 FDB_MUTATION_TYPE_BYTE_MAX,
                                 FDB_MUTATION_TYPE_COMPARE_AND_CLEAR,
                                 MIN_V2,
                                 AND_V2};
#define ATOMIC_OP_COUNT ((int)(sizeof atomic_ops / sizeof atomic_ops[0]))

/* A key that may be written: one of the model's keys of at most 3 bytes. */
static int random_write_key(const struct model *m, struct rng *r)
{
    for (;;) {
        int i = rng_below(r, m->nkeys);
        if (m->keys[i].len <= WRITE_KEY_MAX)
            return i;
    }
}

static void random_step(struct model *m, struct writemap *wm, struct rng *r)
{
    int dice = rng_below(r, 1000), i = random_write_key(m, r);
    const struct key *k = &m->keys[i];
    uint8_t buf[16];
    int len;
    char a[64], b[64];
    if (dice < 250) {
        len = rng_below(r, 7);
        for (int j = 0; j < len; j++)
            buf[j] = (uint8_t)rng_next(r);
        if (m->trace)
            printf("%d: set %s = %s\n", m->step, key_str(k->b, k->len, a, sizeof a),
                   key_str(buf, len, b, sizeof b));
        writemap_set(wm, k->b, k->len, buf, len);
        model_set(m, i, buf, len);
    } else if (dice < 350) {
        if (m->trace)
            printf("%d: clear %s\n", m->step, key_str(k->b, k->len, a, sizeof a));
        writemap_clear(wm, k->b, k->len);
        model_clear(m, i);
    } else if (dice < 380) {
        int lo_index = rng_below(r, m->nkeys), shape = rng_below(r, 10);
        struct key lo = m->keys[lo_index], hi;
        if (shape < 3) { /* exactly one key: [k, k\0) */
            hi = lo;
            if (hi.len < PROBE_KEY_MAX)
                hi.b[hi.len++] = 0x00;
        } else if (shape < 7) { /* a few keys */
            int hi_index = lo_index + rng_below(r, 24);
            hi = m->keys[hi_index < m->nkeys ? hi_index : m->nkeys - 1];
        } else {
            hi = m->keys[rng_below(r, m->nkeys)];
            if (shape > 7 && key_cmp(&lo, &hi) > 0) { /* shape 7 keeps inverted ranges */
                struct key tmp = lo;
                lo = hi;
                hi = tmp;
            }
        }
        if (m->trace)
            printf("%d: clear_range %s .. %s\n", m->step, key_str(lo.b, lo.len, a, sizeof a),
                   key_str(hi.b, hi.len, b, sizeof b));
        writemap_clear_range(wm, lo.b, lo.len, hi.b, hi.len);
        model_clear_range(m, &lo, &hi);
    } else if (dice < 950) {
        int op = atomic_ops[rng_below(r, ATOMIC_OP_COUNT)];
        const struct model_entry *e = &m->entries[i];
        if (op == FDB_MUTATION_TYPE_COMPARE_AND_CLEAR && e->exists && e->present &&
            e->value_len <= (int)sizeof buf && rng_below(r, 2)) {
            len = e->value_len; /* compare with the current value, so it clears */
            memcpy(buf, e->value, (size_t)len);
        } else if (rng_below(r, 2)) {
            random_small_value(r, buf, &len);
        } else {
            len = rng_below(r, 5);
            for (int j = 0; j < len; j++)
                buf[j] = (uint8_t)rng_next(r);
        }
        if (m->trace)
            printf("%d: atomic %d %s with %s\n", m->step, op, key_str(k->b, k->len, a, sizeof a),
                   key_str(buf, len, b, sizeof b));
        writemap_atomic(wm, k->b, k->len, op, buf, len);
        model_atomic(m, i, op, buf, len);
    } else if (dice < 990) {
        if (m->trace)
            printf("%d: unreadable %s\n", m->step, key_str(k->b, k->len, a, sizeof a));
        writemap_set_unreadable(wm, k->b, k->len);
        model_unreadable(m, i);
    } else {
        if (m->trace)
            printf("%d: reset\n", m->step);
        writemap_reset(wm);
        model_reset(m);
    }
}

static void run_model(uint64_t seed, int steps)
{
    struct model m;
    model_init(&m);
    m.seed = seed;
    m.trace = getenv("WRITEMAP_TRACE") != NULL;
    struct rng r = {seed};
    struct writemap *wm = writemap_create();
    printf("test_writemap: model seed 0x%016" PRIx64 ", %d steps\n", seed, steps);
    fflush(stdout);
    int max_entries = 0, max_chain = 0;
    for (m.step = 0; m.step < steps; m.step++) {
        random_step(&m, wm, &r);
        compare_all(&m, wm, &r);
        int entries = 0;
        for (int i = 0; i < m.nkeys; i++) {
            entries += m.entries[i].exists;
            if (m.entries[i].op_count > max_chain)
                max_chain = m.entries[i].op_count;
        }
        if (entries > max_entries)
            max_entries = entries;
    }
    printf("test_writemap: seed 0x%016" PRIx64 ": compared %ld known, %ld chain, %ld unreadable "
           "entries, %ld cleared keys; at most %d entries, chains of up to %d ops\n",
           seed, m.seen[WRITEMAP_KNOWN], m.seen[WRITEMAP_CHAIN], m.seen[WRITEMAP_UNREADABLE],
           m.seen_cleared, max_entries, max_chain);
    /* the run must have exercised something: many entries at once, and real chains */
    ck_assert_int_ge(max_entries, 20);
    ck_assert_int_ge(max_chain, 3);
    writemap_destroy(wm);
    model_free(&m);
}

START_TEST(test_model_random)
{
    static const uint64_t seeds[] = {0x7772697465ULL, 0x1234567887654321ULL, 0xdeadbeefcafef00dULL,
                                     42};
    const char *env = getenv("WRITEMAP_SEED");
    if (env) {
        run_model(strtoull(env, NULL, 0), 20000);
        return;
    }
    run_model(seeds[_i], 15000);
}
END_TEST

static Suite *writemap_suite(void)
{
    Suite *s = suite_create("writemap");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_set_clear_find);
    tcase_add_test(tc, test_atomic_chain_and_known);
    tcase_add_test(tc, test_unreadable);
    tcase_add_test(tc, test_clear_range_intervals);
    tcase_add_test(tc, test_seek_bounds);
    tcase_add_test(tc, test_compare_keys);
    tcase_add_loop_test(tc, test_model_random, 0, getenv("WRITEMAP_SEED") ? 1 : 4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(writemap_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
