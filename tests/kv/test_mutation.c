/* test_mutation.c -- tests of kv/mutation: exact vectors for every atomic op (API 710
 * semantics), a randomized cross-check against an independent integer model, and the
 * versionstamp offset suffix parser. */
#include "kv/mutation.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/fdb_errors.h"

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        fdb_error_t check_ok_rc_ = (expr);                                                         \
        ck_assert_msg(check_ok_rc_ == 0, "%s:%d: %s returned %d (%s)", __FILE__, __LINE__, #expr,  \
                      (int)check_ok_rc_, fdb_errors_describe(check_ok_rc_));                       \
    } while (0)

#define MIN_V2 18 /* MutationRef::MinV2: accepted by the client, same as MIN at API 710 */
#define AND_V2 19 /* MutationRef::AndV2: same as BIT_AND at API 710 */
#define ABSENT 0
#define PRESENT 1

static void hex(const uint8_t *p, int n, char *out, size_t out_size)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < n && at + 8 < out_size; i++)
        at += (size_t)snprintf(out + at, out_size - at, "%02x ", p[i]);
    if (n > 0 && at + 8 >= out_size)
        snprintf(out + at, out_size - at, "...");
}

/* Applies op and asserts the result: present or absent, and the exact bytes when present. */
static void expect_apply(const char *file, int line, int op, int present, const uint8_t *value,
                         int value_len, const uint8_t *param, int param_len, int want_present,
                         const uint8_t *want, int want_len)
{
    uint8_t *out = NULL;
    int out_len = -1, out_present = -1;
    mutation_apply(op, present, value, value_len, param, param_len, &out, &out_len, &out_present);
    char got_hex[256], want_hex[256], value_hex[256], param_hex[256];
    hex(out, out_len, got_hex, sizeof got_hex);
    hex(want, want_len, want_hex, sizeof want_hex);
    hex(value, present ? value_len : 0, value_hex, sizeof value_hex);
    hex(param, param_len, param_hex, sizeof param_hex);
    ck_assert_msg(!want_present || out != NULL, "%s:%d: op %d returned a NULL buffer", file, line,
                  op);
    ck_assert_msg(out_present == want_present,
                  "%s:%d: op %d on %s[%s] with [%s]: present %d, expected %d", file, line, op,
                  present ? "" : "absent ", value_hex, param_hex, out_present, want_present);
    if (want_present)
        ck_assert_msg(out_len == want_len && memcmp(out, want, (size_t)want_len) == 0,
                      "%s:%d: op %d on %s[%s] with [%s]: got [%s], expected [%s]", file, line, op,
                      present ? "" : "absent ", value_hex, param_hex, got_hex, want_hex);
    free(out);
}

/* B(...) is a byte-string literal with its length, for the vectors below. */
#define B(...) (const uint8_t[]){__VA_ARGS__}, (int)sizeof((const uint8_t[]){__VA_ARGS__})
#define NONE NULL, 0
/* EXPECT(op, present, B(value), B(param), want_present, B(want)) */
#define EXPECT(op, present, ...) expect_apply(__FILE__, __LINE__, (op), (present), __VA_ARGS__)

/* An empty but non-NULL byte string, for "present and empty". */
static const uint8_t empty[1];
#define EMPTY empty, 0

START_TEST(test_add)
{
    int op = FDB_MUTATION_TYPE_ADD;
    EXPECT(op, PRESENT, B(0x01), B(0x01), PRESENT, B(0x02));
    /* carry into the next byte */
    EXPECT(op, PRESENT, B(0xff, 0x00), B(0x01, 0x00), PRESENT, B(0x00, 0x01));
    /* carry through several bytes */
    EXPECT(op, PRESENT, B(0xff, 0xff, 0x00), B(0x01, 0x00, 0x00), PRESENT, B(0x00, 0x00, 0x01));
    /* a carry out of the top byte is dropped */
    EXPECT(op, PRESENT, B(0xff, 0xff), B(0x01, 0x00), PRESENT, B(0x00, 0x00));
    EXPECT(op, PRESENT, B(0xff), B(0xff), PRESENT, B(0xfe));
    /* both bytes sum with a carry in */
    EXPECT(op, PRESENT, B(0x80, 0x7f), B(0x80, 0x80), PRESENT, B(0x00, 0x00));
    EXPECT(op, PRESENT, B(0x34, 0x12), B(0xcd, 0xab), PRESENT, B(0x01, 0xbe));
    /* two's complement: adding -1 */
    EXPECT(op, PRESENT, B(0x05, 0x00), B(0xff, 0xff), PRESENT, B(0x04, 0x00));
    EXPECT(op, PRESENT, B(0x00, 0x00), B(0xff, 0xff), PRESENT, B(0xff, 0xff));
    /* the existing value is truncated to the parameter's length */
    EXPECT(op, PRESENT, B(0x01, 0x02, 0x03), B(0x01), PRESENT, B(0x02));
    EXPECT(op, PRESENT, B(0xff, 0x02, 0x03), B(0x01), PRESENT, B(0x00));
    /* ... or zero-extended to it, and the carry goes into the extension */
    EXPECT(op, PRESENT, B(0xff), B(0x01, 0x00, 0x00, 0x00), PRESENT, B(0x00, 0x01, 0x00, 0x00));
    EXPECT(op, PRESENT, B(0x10), B(0x01, 0x02), PRESENT, B(0x11, 0x02));
    /* absent or empty values count as zero */
    EXPECT(op, ABSENT, NONE, B(0x05, 0x06), PRESENT, B(0x05, 0x06));
    EXPECT(op, PRESENT, EMPTY, B(0x07), PRESENT, B(0x07));
    /* an empty parameter gives an empty value */
    EXPECT(op, PRESENT, B(0x01, 0x02), EMPTY, PRESENT, EMPTY);
    EXPECT(op, ABSENT, NONE, EMPTY, PRESENT, EMPTY);
}
END_TEST

START_TEST(test_bit_and)
{
    static const int ops[] = {FDB_MUTATION_TYPE_BIT_AND, AND_V2};
    for (int i = 0; i < 2; i++) {
        int op = ops[i];
        EXPECT(op, PRESENT, B(0x0f, 0xf0), B(0xff, 0x0f), PRESENT, B(0x0f, 0x00));
        EXPECT(op, PRESENT, B(0xaa), B(0x3c), PRESENT, B(0x28));
        /* AND_V2: an absent value takes the parameter */
        EXPECT(op, ABSENT, NONE, B(0x12, 0x34), PRESENT, B(0x12, 0x34));
        /* ... but a present empty value is zero-extended */
        EXPECT(op, PRESENT, EMPTY, B(0x12, 0x34), PRESENT, B(0x00, 0x00));
        /* shorter value: the extension ANDs to zero */
        EXPECT(op, PRESENT, B(0xff), B(0xff, 0xff, 0xff), PRESENT, B(0xff, 0x00, 0x00));
        /* longer value: truncated */
        EXPECT(op, PRESENT, B(0xf0, 0xff, 0xff), B(0x3c), PRESENT, B(0x30));
        EXPECT(op, PRESENT, B(0x01, 0x02), EMPTY, PRESENT, EMPTY);
    }
}
END_TEST

START_TEST(test_bit_or_xor)
{
    int bor = FDB_MUTATION_TYPE_BIT_OR, bxor = FDB_MUTATION_TYPE_BIT_XOR;
    EXPECT(bor, PRESENT, B(0x0f, 0xf0), B(0x30, 0x0c), PRESENT, B(0x3f, 0xfc));
    EXPECT(bxor, PRESENT, B(0x0f, 0xf0), B(0xff, 0xf0), PRESENT, B(0xf0, 0x00));
    EXPECT(bor, ABSENT, NONE, B(0x81, 0x02), PRESENT, B(0x81, 0x02));
    EXPECT(bxor, ABSENT, NONE, B(0x81, 0x02), PRESENT, B(0x81, 0x02));
    EXPECT(bor, PRESENT, EMPTY, B(0x81), PRESENT, B(0x81));
    EXPECT(bxor, PRESENT, EMPTY, B(0x81), PRESENT, B(0x81));
    /* shorter value zero-extended */
    EXPECT(bor, PRESENT, B(0x01), B(0x10, 0x20), PRESENT, B(0x11, 0x20));
    EXPECT(bxor, PRESENT, B(0x11), B(0x10, 0x20), PRESENT, B(0x01, 0x20));
    /* longer value truncated */
    EXPECT(bor, PRESENT, B(0x01, 0x02, 0x03), B(0x10), PRESENT, B(0x11));
    EXPECT(bxor, PRESENT, B(0x11, 0x02, 0x03), B(0x11), PRESENT, B(0x00));
    EXPECT(bor, PRESENT, B(0x01), EMPTY, PRESENT, EMPTY);
    EXPECT(bxor, PRESENT, B(0x01), EMPTY, PRESENT, EMPTY);
}
END_TEST

START_TEST(test_max_min)
{
    int max = FDB_MUTATION_TYPE_MAX;
    static const int mins[] = {FDB_MUTATION_TYPE_MIN, MIN_V2};
    /* little-endian: 00 01 is 256 and beats ff 00 (255); a lexicographic compare would not */
    EXPECT(max, PRESENT, B(0x00, 0x01), B(0xff, 0x00), PRESENT, B(0x00, 0x01));
    EXPECT(max, PRESENT, B(0xff, 0x00), B(0x00, 0x01), PRESENT, B(0x00, 0x01));
    /* unsigned: 0x80 is 128, not -128 */
    EXPECT(max, PRESENT, B(0x80), B(0x7f), PRESENT, B(0x80));
    EXPECT(max, PRESENT, B(0x05), B(0x05), PRESENT, B(0x05));
    /* value truncated: 01 00 | 00 01 -> 1 < 2 */
    EXPECT(max, PRESENT, B(0x01, 0x00, 0x00, 0x01), B(0x02, 0x00), PRESENT, B(0x02, 0x00));
    /* value truncated and kept: 03 00 | ff -> 3 > 2, result is the truncation */
    EXPECT(max, PRESENT, B(0x03, 0x00, 0xff), B(0x02, 0x00), PRESENT, B(0x03, 0x00));
    /* value zero-extended: 05 -> 05 00 (5) vs 03 00 */
    EXPECT(max, PRESENT, B(0x05), B(0x03, 0x00), PRESENT, B(0x05, 0x00));
    EXPECT(max, PRESENT, B(0x05), B(0x00, 0x01), PRESENT, B(0x00, 0x01));
    EXPECT(max, ABSENT, NONE, B(0x00, 0x00), PRESENT, B(0x00, 0x00));
    EXPECT(max, ABSENT, NONE, B(0x07, 0x08), PRESENT, B(0x07, 0x08));
    EXPECT(max, PRESENT, EMPTY, B(0x00, 0x09), PRESENT, B(0x00, 0x09));
    EXPECT(max, PRESENT, B(0x01), EMPTY, PRESENT, EMPTY);
    for (int i = 0; i < 2; i++) {
        int min = mins[i];
        EXPECT(min, PRESENT, B(0x00, 0x01), B(0xff, 0x00), PRESENT, B(0xff, 0x00));
        EXPECT(min, PRESENT, B(0xff, 0x00), B(0x00, 0x01), PRESENT, B(0xff, 0x00));
        EXPECT(min, PRESENT, B(0x80), B(0x7f), PRESENT, B(0x7f));
        EXPECT(min, PRESENT, B(0x01, 0x00, 0x00, 0x01), B(0x02, 0x00), PRESENT, B(0x01, 0x00));
        EXPECT(min, PRESENT, B(0x03, 0x00, 0xff), B(0x02, 0x00), PRESENT, B(0x02, 0x00));
        EXPECT(min, PRESENT, B(0x05), B(0x03, 0x00), PRESENT, B(0x03, 0x00));
        EXPECT(min, PRESENT, B(0x05), B(0x00, 0x01), PRESENT, B(0x05, 0x00));
        /* MIN_V2: an absent value takes the parameter... */
        EXPECT(min, ABSENT, NONE, B(0x07, 0x08), PRESENT, B(0x07, 0x08));
        /* ... a present empty one is zero */
        EXPECT(min, PRESENT, EMPTY, B(0x07, 0x08), PRESENT, B(0x00, 0x00));
        EXPECT(min, PRESENT, B(0x01), EMPTY, PRESENT, EMPTY);
    }
}
END_TEST

START_TEST(test_byte_min_max)
{
    int bmin = FDB_MUTATION_TYPE_BYTE_MIN, bmax = FDB_MUTATION_TYPE_BYTE_MAX;
    /* lexicographic, not numeric: "ab" < "b" */
    EXPECT(bmin, PRESENT, B('a', 'b'), B('b'), PRESENT, B('a', 'b'));
    EXPECT(bmax, PRESENT, B('a', 'b'), B('b'), PRESENT, B('b'));
    EXPECT(bmin, PRESENT, B('b'), B('a', 'b'), PRESENT, B('a', 'b'));
    EXPECT(bmax, PRESENT, B('b'), B('a', 'b'), PRESENT, B('b'));
    /* a prefix is smaller */
    EXPECT(bmin, PRESENT, B('a'), B('a', 0x00), PRESENT, B('a'));
    EXPECT(bmax, PRESENT, B('a'), B('a', 0x00), PRESENT, B('a', 0x00));
    EXPECT(bmin, PRESENT, B('a', 0x00), B('a'), PRESENT, B('a'));
    EXPECT(bmax, PRESENT, B('a', 0x00), B('a'), PRESENT, B('a', 0x00));
    /* unsigned bytes */
    EXPECT(bmax, PRESENT, B(0x80), B(0x7f), PRESENT, B(0x80));
    EXPECT(bmin, PRESENT, B(0x80), B(0x7f), PRESENT, B(0x7f));
    /* lengths differ: the result keeps its own length */
    EXPECT(bmin, PRESENT, B(0x01, 0x02, 0x03), B(0x02), PRESENT, B(0x01, 0x02, 0x03));
    EXPECT(bmax, PRESENT, B(0x01, 0x02, 0x03), B(0x02), PRESENT, B(0x02));
    /* absent takes the parameter; present empty is the smallest value */
    EXPECT(bmin, ABSENT, NONE, B('x'), PRESENT, B('x'));
    EXPECT(bmax, ABSENT, NONE, B('x'), PRESENT, B('x'));
    EXPECT(bmin, PRESENT, EMPTY, B('x'), PRESENT, EMPTY);
    EXPECT(bmax, PRESENT, EMPTY, B('x'), PRESENT, B('x'));
    EXPECT(bmin, PRESENT, B('x'), EMPTY, PRESENT, EMPTY);
    EXPECT(bmax, PRESENT, B('x'), EMPTY, PRESENT, B('x'));
    EXPECT(bmin, ABSENT, NONE, EMPTY, PRESENT, EMPTY);
}
END_TEST

START_TEST(test_compare_and_clear)
{
    int op = FDB_MUTATION_TYPE_COMPARE_AND_CLEAR;
    EXPECT(op, PRESENT, B('a', 'b'), B('a', 'b'), ABSENT, NONE);
    EXPECT(op, PRESENT, B('a', 'b'), B('a', 'c'), PRESENT, B('a', 'b'));
    /* a prefix is not equal, either way */
    EXPECT(op, PRESENT, B('a', 'b'), B('a'), PRESENT, B('a', 'b'));
    EXPECT(op, PRESENT, B('a'), B('a', 'b'), PRESENT, B('a'));
    EXPECT(op, PRESENT, B('a', 0x00), B('a'), PRESENT, B('a', 0x00));
    EXPECT(op, PRESENT, EMPTY, EMPTY, ABSENT, NONE);
    EXPECT(op, PRESENT, EMPTY, B(0x00), PRESENT, EMPTY);
    EXPECT(op, PRESENT, B(0x00), EMPTY, PRESENT, B(0x00));
    /* absent stays absent whatever the parameter */
    EXPECT(op, ABSENT, NONE, B('a'), ABSENT, NONE);
    EXPECT(op, ABSENT, NONE, EMPTY, ABSENT, NONE);
}
END_TEST

/* A buffer of n bytes, byte i = (seed + i * 7) mod 256. */
static uint8_t *pattern(int n, int seed)
{
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
    return p;
}

/* APPEND_IF_FITS with value_len + param_len = total: appended iff total <= 100,000. */
static void check_append_boundary(int value_len, int param_len)
{
    uint8_t *value = pattern(value_len, 1), *param = pattern(param_len, 101);
    int total = value_len + param_len, fits = total <= FDB_VALUE_SIZE_LIMIT;
    uint8_t *out = NULL;
    int out_len = -1, out_present = -1;
    mutation_apply(FDB_MUTATION_TYPE_APPEND_IF_FITS, 1, value, value_len, param, param_len, &out,
                   &out_len, &out_present);
    ck_assert_msg(out_present == 1, "append %d+%d: absent", value_len, param_len);
    ck_assert_msg(out_len == (fits ? total : value_len), "append %d+%d: length %d, expected %d",
                  value_len, param_len, out_len, fits ? total : value_len);
    ck_assert_msg(memcmp(out, value, (size_t)value_len) == 0,
                  "append %d+%d: existing bytes changed", value_len, param_len);
    if (fits)
        ck_assert_msg(memcmp(out + value_len, param, (size_t)param_len) == 0,
                      "append %d+%d: appended bytes differ", value_len, param_len);
    free(out);
    free(value);
    free(param);
}

START_TEST(test_append_if_fits)
{
    int op = FDB_MUTATION_TYPE_APPEND_IF_FITS;
    EXPECT(op, PRESENT, B('a', 'b'), B('c', 'd'), PRESENT, B('a', 'b', 'c', 'd'));
    EXPECT(op, ABSENT, NONE, B('x'), PRESENT, B('x'));
    EXPECT(op, PRESENT, EMPTY, B('x'), PRESENT, B('x'));
    EXPECT(op, PRESENT, B('x'), EMPTY, PRESENT, B('x'));
    EXPECT(op, ABSENT, NONE, EMPTY, PRESENT, EMPTY);
    ck_assert_int_eq(FDB_VALUE_SIZE_LIMIT, 100000);
    check_append_boundary(99998, 2);  /* exactly 100,000: appended */
    check_append_boundary(99999, 1);  /* exactly 100,000 */
    check_append_boundary(99999, 2);  /* 100,001: unchanged */
    check_append_boundary(100000, 1); /* 100,001 */
    check_append_boundary(100000, 0); /* 100,000 with nothing to append */
    check_append_boundary(1, 99999);  /* 100,000 */
    check_append_boundary(1, 100000); /* 100,001: unchanged */
    check_append_boundary(50000, 50000);
    check_append_boundary(50000, 50001);
    /* an absent value and a parameter at the limit: the parameter */
    uint8_t *param = pattern(FDB_VALUE_SIZE_LIMIT, 3), *out = NULL;
    int out_len = -1, out_present = -1;
    mutation_apply(op, 0, NULL, 0, param, FDB_VALUE_SIZE_LIMIT, &out, &out_len, &out_present);
    ck_assert_int_eq(out_present, 1);
    ck_assert_int_eq(out_len, FDB_VALUE_SIZE_LIMIT);
    ck_assert(memcmp(out, param, FDB_VALUE_SIZE_LIMIT) == 0);
    free(out);
    free(param);
}
END_TEST

/* ---- Randomized cross-check of the integer ops against uint64 arithmetic. ---- */

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

/* Random bytes biased towards 0x00 and 0xff so carries and ties happen. */
static void random_bytes(struct rng *r, uint8_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        int k = rng_below(r, 4);
        p[i] = k == 0 ? 0x00 : k == 1 ? 0xff : (uint8_t)rng_next(r);
    }
}

static uint64_t le_load(const uint8_t *p, int n) /* n <= 8 */
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void le_store(uint64_t v, uint8_t *p, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The model: the value as an integer truncated to the parameter's n bytes (n <= 8). */
static void model_apply(int op, int present, const uint8_t *value, int value_len,
                        const uint8_t *param, int n, uint8_t *out)
{
    uint64_t mask = n == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * n)) - 1;
    uint64_t v = present ? le_load(value, value_len < n ? value_len : n) : 0;
    uint64_t p = le_load(param, n), r;
    switch (op) {
    case FDB_MUTATION_TYPE_ADD:
        r = (v + p) & mask;
        break;
    case FDB_MUTATION_TYPE_BIT_AND:
    case AND_V2:
        r = present ? v & p : p;
        break;
    case FDB_MUTATION_TYPE_BIT_OR:
        r = v | p;
        break;
    case FDB_MUTATION_TYPE_BIT_XOR:
        r = v ^ p;
        break;
    case FDB_MUTATION_TYPE_MAX:
        r = v > p ? v : p;
        break;
    default: /* MIN, MIN_V2 */
        r = !present ? p : v < p ? v : p;
        break;
    }
    le_store(r, out, n);
}

START_TEST(test_integer_ops_random)
{
    static const int ops[] = {FDB_MUTATION_TYPE_ADD,
                              FDB_MUTATION_TYPE_BIT_AND,
                              AND_V2,
                              FDB_MUTATION_TYPE_BIT_OR,
                              FDB_MUTATION_TYPE_BIT_XOR,
                              FDB_MUTATION_TYPE_MAX,
                              FDB_MUTATION_TYPE_MIN,
                              MIN_V2};
    const uint64_t seed = 0x6d75746174696f6eULL;
    struct rng r = {seed};
    printf("test_mutation: integer ops, seed 0x%016" PRIx64 "\n", seed);
    for (int iter = 0; iter < 200000; iter++) {
        int op = ops[rng_below(&r, (int)(sizeof ops / sizeof ops[0]))];
        int present = rng_below(&r, 8) != 0;
        int value_len = rng_below(&r, 11), n = rng_below(&r, 9);
        uint8_t value[10], param[8], want[8];
        random_bytes(&r, value, value_len);
        random_bytes(&r, param, n);
        if (rng_below(&r, 4) == 0 && value_len >= n) /* equal operands */
            memcpy(param, value, (size_t)n);
        model_apply(op, present, value, value_len, param, n, want);
        expect_apply(__FILE__, __LINE__, op, present, present ? value : NULL,
                     present ? value_len : 0, param, n, 1, want, n);
    }
}
END_TEST

/* ---- Versionstamp offset suffix ---- */

/* bytes = body (body_len bytes) + 4-byte little-endian offset. */
static fdb_error_t parse(int body_len, uint32_t offset, int *out_offset, int *out_body_len)
{
    uint8_t buf[64];
    ck_assert_int_le(body_len + 4, (int)sizeof buf);
    memset(buf, 0xab, sizeof buf);
    buf[body_len] = (uint8_t)offset;
    buf[body_len + 1] = (uint8_t)(offset >> 8);
    buf[body_len + 2] = (uint8_t)(offset >> 16);
    buf[body_len + 3] = (uint8_t)(offset >> 24);
    *out_offset = -1;
    *out_body_len = -1;
    return mutation_versionstamp_offset(buf, body_len + 4, out_offset, out_body_len);
}

START_TEST(test_versionstamp_offset)
{
    int off, body;
    /* just the 10-byte stamp */
    CHECK_OK(parse(10, 0, &off, &body));
    ck_assert_int_eq(off, 0);
    ck_assert_int_eq(body, 10);
    /* prefix "ab", stamp, suffix */
    CHECK_OK(parse(12, 2, &off, &body));
    ck_assert_int_eq(off, 2);
    ck_assert_int_eq(body, 12);
    /* the stamp may end exactly at the end of the body, or anywhere before */
    for (int body_len = 10; body_len <= 40; body_len++) {
        for (int o = 0; o <= body_len + 2; o++) {
            fdb_error_t err = parse(body_len, (uint32_t)o, &off, &body);
            if (o + 10 <= body_len) {
                ck_assert_msg(err == 0, "body %d offset %d: error %d", body_len, o, err);
                ck_assert_int_eq(off, o);
                ck_assert_int_eq(body, body_len);
            } else {
                ck_assert_msg(err == FDB_ERR_CLIENT_INVALID_OPERATION,
                              "body %d offset %d: returned %d, expected invalid operation",
                              body_len, o, err);
            }
        }
    }
    /* too short for the stamp */
    for (int body_len = 0; body_len < 10; body_len++)
        ck_assert_int_eq(parse(body_len, 0, &off, &body), FDB_ERR_CLIENT_INVALID_OPERATION);
    /* little-endian: 01 00 00 00 is 1, not 16M */
    uint8_t le[] = {'p', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x01, 0x00, 0x00, 0x00};
    CHECK_OK(mutation_versionstamp_offset(le, (int)sizeof le, &off, &body));
    ck_assert_int_eq(off, 1);
    ck_assert_int_eq(body, 11);
    /* offsets far out of range, including ones that overflow a signed int */
    static const uint32_t huge[] = {0x00000100u, 0x00010000u, 0x01000000u, 0x7fffffffu,
                                    0x80000000u, 0xfffffff6u, 0xfffffffcu, 0xffffffffu};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        ck_assert_msg(parse(20, huge[i], &off, &body) == FDB_ERR_CLIENT_INVALID_OPERATION,
                      "offset 0x%08x accepted", huge[i]);
    /* shorter than the suffix itself */
    static const uint8_t tiny[4] = {0, 0, 0, 0};
    for (int len = 0; len < 4; len++)
        ck_assert_int_eq(mutation_versionstamp_offset(tiny, len, &off, &body),
                         FDB_ERR_CLIENT_INVALID_OPERATION);
    ck_assert_int_eq(mutation_versionstamp_offset(tiny, 4, &off, &body),
                     FDB_ERR_CLIENT_INVALID_OPERATION);
}
END_TEST

START_TEST(test_is_valid_atomic)
{
    static const int valid[] = {FDB_MUTATION_TYPE_ADD,
                                FDB_MUTATION_TYPE_BIT_AND,
                                FDB_MUTATION_TYPE_BIT_OR,
                                FDB_MUTATION_TYPE_BIT_XOR,
                                FDB_MUTATION_TYPE_APPEND_IF_FITS,
                                FDB_MUTATION_TYPE_MAX,
                                FDB_MUTATION_TYPE_MIN,
                                FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY,
                                FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE,
                                FDB_MUTATION_TYPE_BYTE_MIN,
                                FDB_MUTATION_TYPE_BYTE_MAX,
                                MIN_V2,
                                AND_V2,
                                FDB_MUTATION_TYPE_COMPARE_AND_CLEAR};
    static const int invalid[] = {-1, 0, 1, 3, 4, 5, 10, 11, 21, 22, 255, 1 << 20};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        ck_assert_msg(mutation_is_valid_atomic(valid[i]), "op %d rejected", valid[i]);
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ck_assert_msg(!mutation_is_valid_atomic(invalid[i]), "op %d accepted", invalid[i]);
}
END_TEST

static Suite *mutation_suite(void)
{
    Suite *s = suite_create("mutation");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_bit_and);
    tcase_add_test(tc, test_bit_or_xor);
    tcase_add_test(tc, test_max_min);
    tcase_add_test(tc, test_byte_min_max);
    tcase_add_test(tc, test_compare_and_clear);
    tcase_add_test(tc, test_append_if_fits);
    tcase_add_test(tc, test_integer_ops_random);
    tcase_add_test(tc, test_versionstamp_offset);
    tcase_add_test(tc, test_is_valid_atomic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mutation_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
