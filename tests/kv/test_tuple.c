/* test_tuple.c -- tests of kv/tuple: exact encodings, round trips, order, hostile input. */
#include "kv/tuple.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        int check_ok_rc_ = (expr);                                                         \
        ck_assert_msg(check_ok_rc_ == 0, "%s:%d: %s returned %d (%s)", __FILE__, __LINE__, \
                      #expr, check_ok_rc_, tuple_strerror(check_ok_rc_));                  \
    } while (0)

/* Asserts that buf holds exactly the listed bytes. */
#define EXPECT_BYTES(buf, ...)                                                             \
    do {                                                                                   \
        static const uint8_t expect_[] = {__VA_ARGS__};                                    \
        expect_bytes(__FILE__, __LINE__, (buf), expect_, sizeof expect_);                  \
    } while (0)

static void hex(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && at + 4 < out_size; i++)
        at += (size_t)snprintf(out + at, out_size - at, "%02x ", p[i]);
}

static void expect_bytes(const char *file, int line, const struct tuple_buf *buf,
                         const uint8_t *expect, size_t n)
{
    char got[512], want[512];
    hex(buf->data, buf->len, got, sizeof got);
    hex(expect, n, want, sizeof want);
    ck_assert_msg(buf->len == n && memcmp(buf->data, expect, n) == 0,
                  "%s:%d: encoded [%s], expected [%s]", file, line, got, want);
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

static size_t rng_below(struct rng *r, size_t n)
{
    return (size_t)(rng_next(r) % n);
}

/* ---- A model of tuples, to compare encodings against. ---- */

enum elem_kind { E_NULL, E_BYTES, E_STRING, E_INT, E_UINT, E_BOOL, E_VS };

#define MAX_ELEMS 6
#define MAX_BYTES 24

struct elem {
    enum elem_kind kind;
    int64_t i;
    uint64_t u;
    bool b;
    uint8_t bytes[MAX_BYTES]; /* E_BYTES, E_STRING (UTF-8), E_VS (12 bytes) */
    size_t n;
};

struct model {
    struct elem e[MAX_ELEMS];
    size_t n;
};

static int64_t random_int(struct rng *r)
{
    static const int64_t edges[] = {
        0,    1,    -1,    255,   256,        -255,      -256,      65535,    65536,
        -65535, -65536, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 127, -128,
    };
    if (rng_below(r, 4) == 0)
        return edges[rng_below(r, sizeof edges / sizeof edges[0])];
    /* Random width so every encoded length (0..8 bytes) is common. */
    unsigned bits = (unsigned)rng_below(r, 64);
    uint64_t v = bits == 0 ? 0 : rng_next(r) >> (64 - bits);
    return rng_below(r, 2) ? (int64_t)v : -(int64_t)v;
}

static void random_bytes(struct rng *r, struct elem *e)
{
    /* A small alphabet heavy in 00 and FF makes shared prefixes and escapes common. */
    static const uint8_t alphabet[] = {0x00, 0x00, 0x01, 0x61, 0x62, 0xfe, 0xff, 0xff};
    e->n = rng_below(r, 9);
    bool small = rng_below(r, 2);
    for (size_t i = 0; i < e->n; i++)
        e->bytes[i] = small ? alphabet[rng_below(r, sizeof alphabet)] : (uint8_t)rng_next(r);
}

static size_t utf8_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static void random_string(struct rng *r, struct elem *e)
{
    static const uint32_t points[] = {0,      'a',    'b',    0x7f,   0x80,    0x7ff,
                                      0x800,  0xd7ff, 0xe000, 0xfffd, 0x10000, 0x10ffff};
    size_t chars = rng_below(r, 5);
    e->n = 0;
    for (size_t i = 0; i < chars; i++) {
        uint32_t cp;
        if (rng_below(r, 2)) {
            cp = points[rng_below(r, sizeof points / sizeof points[0])];
        } else {
            do
                cp = (uint32_t)rng_below(r, 0x110000);
            while (cp >= 0xd800 && cp <= 0xdfff);
        }
        e->n += utf8_encode(cp, e->bytes + e->n);
    }
}

/* full: also null, bool, versionstamp and uint64 (not only the kinds the order test mixes). */
static void random_elem(struct rng *r, struct elem *e, bool full)
{
    memset(e, 0, sizeof *e);
    size_t pick = rng_below(r, full ? 7 : 3);
    switch (pick) {
    case 0:
        e->kind = E_INT;
        e->i = random_int(r);
        break;
    case 1:
        e->kind = E_BYTES;
        random_bytes(r, e);
        break;
    case 2:
        e->kind = E_STRING;
        random_string(r, e);
        break;
    case 3:
        e->kind = E_NULL;
        break;
    case 4:
        e->kind = E_BOOL;
        e->b = rng_below(r, 2);
        break;
    case 5:
        e->kind = E_UINT;
        e->u = (uint64_t)INT64_MAX + 1 + rng_next(r) % ((uint64_t)INT64_MAX + 1);
        break;
    default:
        e->kind = E_VS;
        e->n = 12;
        for (size_t i = 0; i < 12; i++)
            e->bytes[i] = (uint8_t)(rng_below(r, 3) ? rng_next(r) : 0xff);
        break;
    }
}

static void random_model(struct rng *r, struct model *m, bool full)
{
    m->n = rng_below(r, MAX_ELEMS + 1);
    for (size_t i = 0; i < m->n; i++)
        random_elem(r, &m->e[i], full);
}

static void pack_model(const struct model *m, struct tuple_buf *buf)
{
    for (size_t i = 0; i < m->n; i++) {
        const struct elem *e = &m->e[i];
        switch (e->kind) {
        case E_NULL:
            tuple_pack_null(buf);
            break;
        case E_BYTES:
            tuple_pack_bytes(buf, e->bytes, e->n);
            break;
        case E_STRING:
            CHECK_OK(tuple_pack_string(buf, (const char *)e->bytes, e->n));
            break;
        case E_INT:
            tuple_pack_int(buf, e->i);
            break;
        case E_UINT:
            tuple_pack_uint64(buf, e->u);
            break;
        case E_BOOL:
            tuple_pack_bool(buf, e->b);
            break;
        case E_VS:
            tuple_pack_versionstamp(buf, e->bytes,
                                    (uint16_t)(e->bytes[10] << 8 | e->bytes[11]));
            break;
        }
    }
}

/* The tuple layer's type order: the type code, all integers sharing one. */
static int kind_rank(const struct elem *e)
{
    switch (e->kind) {
    case E_NULL:
        return 0x00;
    case E_BYTES:
        return 0x01;
    case E_STRING:
        return 0x02;
    case E_INT:
    case E_UINT:
        return 0x14;
    case E_BOOL:
        return e->b ? 0x27 : 0x26;
    case E_VS:
        return 0x33;
    }
    return -1;
}

static int cmp_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

static int cmp_elem(const struct elem *a, const struct elem *b)
{
    int ra = kind_rank(a), rb = kind_rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (a->kind) {
    case E_INT:
        if (b->kind == E_UINT)
            return -1;
        return a->i < b->i ? -1 : a->i > b->i;
    case E_UINT:
        if (b->kind == E_INT)
            return 1;
        return a->u < b->u ? -1 : a->u > b->u;
    case E_BYTES:
    case E_STRING: /* UTF-8 byte order is code point order */
    case E_VS:
        return cmp_bytes(a->bytes, a->n, b->bytes, b->n);
    default:
        return 0;
    }
}

/* Tuple order: element by element, a proper prefix first. */
static int cmp_model(const struct model *a, const struct model *b)
{
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        int c = cmp_elem(&a->e[i], &b->e[i]);
        if (c != 0)
            return c;
    }
    return a->n < b->n ? -1 : a->n > b->n;
}

/* Decodes the whole of p[0..len) into m; returns 0, or the first error. */
static int unpack_model(const uint8_t *p, size_t len, struct model *m)
{
    struct tuple_buf tmp = {0};
    struct tuple_item item;
    size_t pos = 0;
    int rc;
    m->n = 0;
    while ((rc = tuple_next(p, len, &pos, &item)) == 0) {
        ck_assert_uint_lt(m->n, MAX_ELEMS);
        struct elem *e = &m->e[m->n++];
        memset(e, 0, sizeof *e);
        switch (item.type) {
        case TUPLE_NULL:
            e->kind = E_NULL;
            break;
        case TUPLE_BYTES:
        case TUPLE_STRING:
            e->kind = item.type == TUPLE_BYTES ? E_BYTES : E_STRING;
            tuple_buf_reset(&tmp);
            tuple_item_unescape(&item, &tmp);
            ck_assert_uint_eq(tmp.len, item.bytes.len);
            ck_assert_uint_le(tmp.len, MAX_BYTES);
            if (tmp.len)
                memcpy(e->bytes, tmp.data, tmp.len);
            e->n = tmp.len;
            if (item.bytes.escapes == 0)
                ck_assert(item.bytes.raw_len == item.bytes.len &&
                          (tmp.len == 0 || memcmp(item.bytes.raw, tmp.data, tmp.len) == 0));
            break;
        case TUPLE_INT:
            e->kind = E_INT;
            e->i = item.i64;
            break;
        case TUPLE_UINT64:
            e->kind = E_UINT;
            e->u = item.u64;
            ck_assert_uint_gt(item.u64, INT64_MAX);
            break;
        case TUPLE_FALSE:
        case TUPLE_TRUE:
            e->kind = E_BOOL;
            e->b = item.type == TUPLE_TRUE;
            break;
        case TUPLE_VERSIONSTAMP:
            e->kind = E_VS;
            e->n = 12;
            memcpy(e->bytes, item.versionstamp, 12);
            break;
        }
    }
    tuple_buf_free(&tmp);
    return rc == TUPLE_END ? 0 : rc;
}

/* ---- Exact encodings. ---- */

START_TEST(test_int_vectors)
{
    struct tuple_buf b = {0};
#define INT_CASE(v, ...)                                                                   \
    do {                                                                                   \
        tuple_buf_reset(&b);                                                               \
        tuple_pack_int(&b, (v));                                                           \
        EXPECT_BYTES(&b, __VA_ARGS__);                                                     \
    } while (0)
    INT_CASE(0, 0x14);
    INT_CASE(1, 0x15, 0x01);
    INT_CASE(-1, 0x13, 0xfe);
    INT_CASE(255, 0x15, 0xff);
    INT_CASE(256, 0x16, 0x01, 0x00);
    INT_CASE(-255, 0x13, 0x00);
    INT_CASE(-256, 0x12, 0xfe, 0xff);
    INT_CASE(-257, 0x12, 0xfe, 0xfe);
    INT_CASE(65536, 0x17, 0x01, 0x00, 0x00);
    INT_CASE(-5551212, 0x11, 0xab, 0x4b, 0x93); /* the specification's test case */
    INT_CASE(INT64_MAX, 0x1c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    INT_CASE(INT64_MIN, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    INT_CASE(INT64_MIN + 1, 0x0c, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    INT_CASE((int64_t)1 << 56, 0x1c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    INT_CASE(((int64_t)1 << 56) - 1, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
#undef INT_CASE

    tuple_buf_reset(&b);
    tuple_pack_uint64(&b, UINT64_MAX);
    EXPECT_BYTES(&b, 0x1c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    tuple_buf_reset(&b);
    tuple_pack_uint64(&b, 256);
    EXPECT_BYTES(&b, 0x16, 0x01, 0x00);
    tuple_buf_free(&b);
}
END_TEST

START_TEST(test_other_vectors)
{
    struct tuple_buf b = {0};
    tuple_pack_bytes(&b, "foo\0bar", 7);
    EXPECT_BYTES(&b, 0x01, 'f', 'o', 'o', 0x00, 0xff, 'b', 'a', 'r', 0x00);

    tuple_buf_reset(&b);
    tuple_pack_bytes(&b, "", 0);
    EXPECT_BYTES(&b, 0x01, 0x00);

    tuple_buf_reset(&b);
    tuple_pack_bytes(&b, "\0\0", 2);
    EXPECT_BYTES(&b, 0x01, 0x00, 0xff, 0x00, 0xff, 0x00);

    tuple_buf_reset(&b);
    CHECK_OK(tuple_pack_string(&b, "", 0));
    EXPECT_BYTES(&b, 0x02, 0x00);

    tuple_buf_reset(&b); /* the specification's u"F\u00d4O\u0000bar" */
    CHECK_OK(tuple_pack_string(&b, "F\xc3\x94O\0bar", 8));
    EXPECT_BYTES(&b, 0x02, 'F', 0xc3, 0x94, 'O', 0x00, 0xff, 'b', 'a', 'r', 0x00);

    tuple_buf_reset(&b);
    tuple_pack_null(&b);
    tuple_pack_bool(&b, false);
    tuple_pack_bool(&b, true);
    EXPECT_BYTES(&b, 0x00, 0x26, 0x27);

    /* A tuple is its elements' encodings concatenated: ("foo", 1, b"") */
    tuple_buf_reset(&b);
    CHECK_OK(tuple_pack_string(&b, "foo", 3));
    tuple_pack_int(&b, 1);
    tuple_pack_bytes(&b, NULL, 0);
    EXPECT_BYTES(&b, 0x02, 'f', 'o', 'o', 0x00, 0x15, 0x01, 0x01, 0x00);

    tuple_buf_reset(&b);
    static const uint8_t tr[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    tuple_pack_versionstamp(&b, tr, 0x1234);
    EXPECT_BYTES(&b, 0x33, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x12, 0x34);
    struct tuple_item item;
    size_t pos = 0;
    CHECK_OK(tuple_next(b.data, b.len, &pos, &item));
    ck_assert_int_eq(item.type, TUPLE_VERSIONSTAMP);
    ck_assert_mem_eq(item.versionstamp, b.data + 1, 12);
    ck_assert_int_eq(tuple_next(b.data, b.len, &pos, &item), TUPLE_END);
    tuple_buf_free(&b);
}
END_TEST

START_TEST(test_invalid_utf8_rejected)
{
    static const char *bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", "\xff", "\x80", "a\xc3", "\xe2\x82",
    };
    struct tuple_buf b = {0};
    tuple_pack_int(&b, 7);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(tuple_pack_string(&b, bad[i], strlen(bad[i])), TUPLE_EINVAL);
        EXPECT_BYTES(&b, 0x15, 0x07); /* nothing appended */
    }
    CHECK_OK(tuple_pack_string(&b, "\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF is fine */
    tuple_buf_free(&b);
}
END_TEST

/* ---- Versionstamped keys. ---- */

START_TEST(test_incomplete_versionstamp)
{
    struct tuple_buf b = {0};
    size_t offset = 0;
    tuple_pack_bytes(&b, "x", 1);
    tuple_pack_incomplete_versionstamp(&b, 5, &offset);
    tuple_pack_int(&b, 1);
    ck_assert_uint_eq(offset, 4);
    CHECK_OK(tuple_finish_versionstamped_key(&b, offset));
    EXPECT_BYTES(&b, 0x01, 'x', 0x00, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                 0xff, 0xff, 0x00, 0x05, 0x15, 0x01, 0x04, 0x00, 0x00, 0x00);

    /* The key without its suffix decodes, with the placeholder as the versionstamp. */
    struct model m;
    CHECK_OK(unpack_model(b.data, b.len - 4, &m));
    ck_assert_uint_eq(m.n, 3);
    ck_assert_int_eq(m.e[1].kind, E_VS);
    static const uint8_t placeholder[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0x00, 0x05};
    ck_assert_mem_eq(m.e[1].bytes, placeholder, 12);

    /* Offsets past 255 need the higher bytes of the little-endian suffix. */
    tuple_buf_reset(&b);
    uint8_t filler[300];
    memset(filler, 'a', sizeof filler);
    tuple_buf_append(&b, filler, sizeof filler);
    tuple_pack_incomplete_versionstamp(&b, 0, &offset);
    ck_assert_uint_eq(offset, 301);
    CHECK_OK(tuple_finish_versionstamped_value(&b, offset));
    ck_assert_uint_eq(b.len, 300 + 13 + 4);
    static const uint8_t suffix[4] = {0x2d, 0x01, 0x00, 0x00};
    ck_assert_mem_eq(b.data + b.len - 4, suffix, 4);

    /* The placeholder must lie inside the buffer. */
    tuple_buf_reset(&b);
    tuple_pack_incomplete_versionstamp(&b, 0, &offset);
    ck_assert_int_eq(tuple_finish_versionstamped_key(&b, offset + 3), TUPLE_EINVAL);
    ck_assert_int_eq(tuple_finish_versionstamped_key(&b, 1000), TUPLE_EINVAL);
    ck_assert_int_eq(tuple_finish_versionstamped_value(&b, (size_t)UINT32_MAX + 1),
                     TUPLE_EINVAL);
    ck_assert_uint_eq(b.len, 13);
    tuple_buf_free(&b);
}
END_TEST

/* ---- Round trips. ---- */

static void expect_int_round_trip(int64_t v)
{
    struct tuple_buf b = {0};
    struct tuple_item item;
    size_t pos = 0;
    tuple_pack_int(&b, v);
    CHECK_OK(tuple_next(b.data, b.len, &pos, &item));
    ck_assert_int_eq(item.type, TUPLE_INT);
    ck_assert_msg(item.i64 == v, "decoded %lld, packed %lld", (long long)item.i64,
                  (long long)v);
    ck_assert_uint_eq(pos, b.len);
    tuple_buf_free(&b);
}

START_TEST(test_int_round_trip)
{
    struct rng r = {0x9e3779b97f4a7c15ULL};
    for (int shift = 0; shift < 64; shift++) {
        int64_t edge = (int64_t)(((uint64_t)1 << shift) - 1);
        expect_int_round_trip(edge);
        expect_int_round_trip(-edge);
        expect_int_round_trip(-edge - 1);
        if (edge < INT64_MAX)
            expect_int_round_trip(edge + 1);
    }
    expect_int_round_trip(INT64_MIN);
    expect_int_round_trip(INT64_MAX);
    for (int i = 0; i < 100000; i++)
        expect_int_round_trip(random_int(&r));

    struct tuple_buf b = {0};
    struct tuple_item item;
    for (int i = 0; i < 10000; i++) {
        uint64_t v = rng_next(&r);
        size_t pos = 0;
        tuple_buf_reset(&b);
        tuple_pack_uint64(&b, v);
        CHECK_OK(tuple_next(b.data, b.len, &pos, &item));
        if (v > INT64_MAX) {
            ck_assert_int_eq(item.type, TUPLE_UINT64);
            ck_assert(item.u64 == v);
        } else {
            ck_assert_int_eq(item.type, TUPLE_INT);
            ck_assert(item.i64 == (int64_t)v);
        }
    }
    tuple_buf_free(&b);
}
END_TEST

START_TEST(test_tuple_round_trip)
{
    struct rng r = {12345};
    struct tuple_buf b = {0}, again = {0};
    for (int i = 0; i < 50000; i++) {
        struct model m, back;
        random_model(&r, &m, true);
        tuple_buf_reset(&b);
        pack_model(&m, &b);
        CHECK_OK(unpack_model(b.data, b.len, &back));
        ck_assert_uint_eq(back.n, m.n);
        for (size_t k = 0; k < m.n; k++) {
            ck_assert_int_eq(back.e[k].kind, m.e[k].kind);
            ck_assert_msg(cmp_elem(&back.e[k], &m.e[k]) == 0, "element %zu differs", k);
        }
        tuple_buf_reset(&again);
        pack_model(&back, &again);
        ck_assert(again.len == b.len && (b.len == 0 || memcmp(again.data, b.data, b.len) == 0));
    }
    tuple_buf_free(&b);
    tuple_buf_free(&again);
}
END_TEST

/* ---- Order. ---- */

/* b: a copy of a, changed a little so that a and b often share a prefix. */
static void mutate(struct rng *r, const struct model *a, struct model *b)
{
    *b = *a;
    switch (rng_below(r, 4)) {
    case 0: /* truncate */
        b->n = rng_below(r, a->n + 1);
        break;
    case 1: /* extend */
        if (b->n < MAX_ELEMS)
            random_elem(r, &b->e[b->n++], false);
        break;
    case 2: /* replace one element */
        if (b->n > 0)
            random_elem(r, &b->e[rng_below(r, b->n)], false);
        break;
    default: /* nudge one element's value */
        if (b->n > 0) {
            struct elem *e = &b->e[rng_below(r, b->n)];
            if (e->kind == E_INT && e->i != INT64_MAX)
                e->i++;
            else if (e->kind == E_BYTES && e->n < MAX_BYTES)
                e->bytes[e->n++] = rng_below(r, 2) ? 0x00 : 0xff;
            else if (e->kind == E_STRING && e->n > 0 && e->bytes[e->n - 1] < 0x80)
                e->n--; /* dropping a trailing ASCII char keeps it valid UTF-8 */
        }
        break;
    }
}

START_TEST(test_order)
{
    struct rng r = {0xdeadbeefcafeULL};
    struct tuple_buf ka = {0}, kb = {0};
    int seen[3] = {0};
    for (int i = 0; i < 200000; i++) {
        struct model a, b;
        bool full = i % 2; /* half the pairs mix in null, bool, uint64, versionstamp */
        random_model(&r, &a, full);
        if (rng_below(&r, 4) == 0)
            random_model(&r, &b, full);
        else
            mutate(&r, &a, &b);
        tuple_buf_reset(&ka);
        tuple_buf_reset(&kb);
        pack_model(&a, &ka);
        pack_model(&b, &kb);
        int want = cmp_model(&a, &b);
        int got = cmp_bytes(ka.data, ka.len, kb.data, kb.len);
        ck_assert_msg(got == want, "pair %d: memcmp order %d, tuple order %d", i, got, want);
        seen[want + 1]++;
    }
    /* The generator must exercise all three outcomes, equality included. */
    ck_assert(seen[0] > 1000 && seen[1] > 1000 && seen[2] > 1000);
    tuple_buf_free(&ka);
    tuple_buf_free(&kb);
}
END_TEST

START_TEST(test_int_order_sorted)
{
    /* Every adjacent pair across encoding-length boundaries. */
    static const int64_t sorted[] = {
        INT64_MIN, INT64_MIN + 1, -((int64_t)1 << 56) - 1, -((int64_t)1 << 56), -65537, -65536,
        -65535,    -257,          -256,                    -255,                -2,     -1,
        0,         1,             2,                       255,                 256,    65535,
        65536,     INT64_MAX - 1, INT64_MAX,
    };
    struct tuple_buf a = {0}, b = {0};
    for (size_t i = 0; i + 1 < sizeof sorted / sizeof sorted[0]; i++) {
        tuple_buf_reset(&a);
        tuple_buf_reset(&b);
        tuple_pack_int(&a, sorted[i]);
        tuple_pack_int(&b, sorted[i + 1]);
        ck_assert_msg(cmp_bytes(a.data, a.len, b.data, b.len) < 0, "%lld !< %lld",
                      (long long)sorted[i], (long long)sorted[i + 1]);
    }
    /* uint64 values above INT64_MAX continue the order. */
    tuple_buf_reset(&a);
    tuple_buf_reset(&b);
    tuple_pack_int(&a, INT64_MAX);
    tuple_pack_uint64(&b, (uint64_t)INT64_MAX + 1);
    ck_assert_int_lt(cmp_bytes(a.data, a.len, b.data, b.len), 0);
    tuple_buf_free(&a);
    tuple_buf_free(&b);
}
END_TEST

/* ---- Hostile input. ---- */

static void expect_error(const uint8_t *bytes, size_t n, int want)
{
    uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees any over-read */
    memcpy(copy, bytes, n);
    struct tuple_item item;
    size_t pos = 0;
    int rc = tuple_next(copy, n, &pos, &item);
    ck_assert_msg(rc == want, "got %d (%s), want %d (%s)", rc, tuple_strerror(rc), want,
                  tuple_strerror(want));
    ck_assert_uint_eq(pos, 0);
    free(copy);
}

#define EXPECT_ERROR(want, ...)                                                            \
    do {                                                                                   \
        static const uint8_t in_[] = {__VA_ARGS__};                                        \
        expect_error(in_, sizeof in_, (want));                                             \
    } while (0)

START_TEST(test_malformed)
{
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x15);
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x16, 0x01);
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x01);
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x01, 'a', 'b');
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x01, 'a', 0x00, 0xff);
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x02, 'a');
    EXPECT_ERROR(TUPLE_ETRUNCATED, 0x33, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x15, 0x00);       /* 0 in one byte */
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x16, 0x00, 0xff); /* 255 in two bytes */
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x13, 0xff);       /* -0 */
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x12, 0xff, 0x00); /* -255 in two bytes */
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x02, 0xc0, 0x80, 0x00);
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x02, 0xff, 0x00);
    EXPECT_ERROR(TUPLE_EMALFORMED, 0x02, 0xe2, 0x00, 0xff, 0x82, 0x00); /* NUL inside a char */
    EXPECT_ERROR(TUPLE_ERANGE, 0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe);
    EXPECT_ERROR(TUPLE_ERANGE, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    EXPECT_ERROR(TUPLE_ERANGE, 0x1d, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    EXPECT_ERROR(TUPLE_ERANGE, 0x0b, 0xf6, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    EXPECT_ERROR(TUPLE_EUNSUPPORTED, 0x05, 0x00); /* nested tuple */
    EXPECT_ERROR(TUPLE_EUNSUPPORTED, 0x21, 0, 0, 0, 0, 0, 0, 0, 0);
    EXPECT_ERROR(TUPLE_EUNSUPPORTED, 0x30);
    EXPECT_ERROR(TUPLE_EUNSUPPORTED, 0xff);

    /* A bad element after good ones: good ones decode, the error leaves pos on the bad one. */
    static const uint8_t mixed[] = {0x15, 0x01, 0x01, 'a', 0x00, 0x40};
    struct tuple_item item;
    size_t pos = 0;
    CHECK_OK(tuple_next(mixed, sizeof mixed, &pos, &item));
    CHECK_OK(tuple_next(mixed, sizeof mixed, &pos, &item));
    ck_assert_int_eq(item.type, TUPLE_BYTES);
    ck_assert_uint_eq(item.bytes.len, 1);
    ck_assert_int_eq(tuple_next(mixed, sizeof mixed, &pos, &item), TUPLE_EUNSUPPORTED);
    ck_assert_uint_eq(pos, 5);
    pos = sizeof mixed + 1;
    ck_assert_int_eq(tuple_next(mixed, sizeof mixed, &pos, &item), TUPLE_EINVAL);
    pos = 0;
    ck_assert_int_eq(tuple_next(NULL, 0, &pos, &item), TUPLE_END);
}
END_TEST

/* Decodes p[0..len) (an exact-size heap copy) element by element, checking that the decoder
 * stays in bounds; an input accepted whole must re-encode to the same bytes, since only
 * canonical encodings are accepted. Returns the final tuple_next result. */
static int decode_hostile(const uint8_t *input, size_t len, struct tuple_buf *scratch)
{
    uint8_t *p = malloc(len ? len : 1);
    if (len)
        memcpy(p, input, len);
    struct tuple_item item;
    size_t pos = 0;
    int rc;
    tuple_buf_reset(scratch);
    while ((rc = tuple_next(p, len, &pos, &item)) == 0) {
        ck_assert_uint_le(pos, len);
        switch (item.type) {
        case TUPLE_NULL:
            tuple_pack_null(scratch);
            break;
        case TUPLE_BYTES:
        case TUPLE_STRING: {
            ck_assert(item.bytes.raw >= p && item.bytes.raw_len <= len &&
                      item.bytes.raw + item.bytes.raw_len < p + len);
            struct tuple_buf value = {0};
            tuple_item_unescape(&item, &value);
            ck_assert_uint_eq(value.len, item.bytes.len);
            if (item.type == TUPLE_BYTES)
                tuple_pack_bytes(scratch, value.data, value.len);
            else
                CHECK_OK(tuple_pack_string(scratch, (const char *)value.data, value.len));
            tuple_buf_free(&value);
            break;
        }
        case TUPLE_INT:
            tuple_pack_int(scratch, item.i64);
            break;
        case TUPLE_UINT64:
            tuple_pack_uint64(scratch, item.u64);
            break;
        case TUPLE_FALSE:
        case TUPLE_TRUE:
            tuple_pack_bool(scratch, item.type == TUPLE_TRUE);
            break;
        case TUPLE_VERSIONSTAMP:
            tuple_pack_versionstamp(scratch, item.versionstamp,
                                    (uint16_t)(item.versionstamp[10] << 8 |
                                               item.versionstamp[11]));
            break;
        }
        ck_assert_msg(scratch->len == pos && memcmp(scratch->data, p, pos) == 0,
                      "re-encoding differs from the accepted input");
    }
    ck_assert_msg(rc == TUPLE_END || (rc <= TUPLE_ETRUNCATED && rc >= TUPLE_ERANGE),
                  "unexpected result %d", rc);
    if (rc == TUPLE_END)
        ck_assert_uint_eq(pos, len);
    free(p);
    return rc;
}

START_TEST(test_random_bytes)
{
    /* Bytes biased toward type codes and escapes, so that some inputs decode a long way. */
    static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x0b, 0x0c, 0x12, 0x13, 0x14,
                                          0x15, 0x16, 0x1c, 0x1d, 0x26, 0x27, 0x33, 0xff,
                                          0x7f, 0x80, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 'a'};
    struct rng r = {424242};
    struct tuple_buf scratch = {0};
    uint8_t in[48];
    int accepted = 0;
    for (int i = 0; i < 300000; i++) {
        size_t n = rng_below(&r, sizeof in + 1);
        bool biased = rng_below(&r, 4) != 0;
        for (size_t k = 0; k < n; k++)
            in[k] = biased ? interesting[rng_below(&r, sizeof interesting)] : (uint8_t)rng_next(&r);
        if (decode_hostile(in, n, &scratch) == TUPLE_END)
            accepted++;
    }
    ck_assert_int_gt(accepted, 1000); /* the walk really got past the first element */
    tuple_buf_free(&scratch);
}
END_TEST

START_TEST(test_truncations)
{
    struct rng r = {777};
    struct tuple_buf b = {0}, scratch = {0};
    for (int i = 0; i < 3000; i++) {
        struct model m;
        random_model(&r, &m, true);
        tuple_buf_reset(&b);
        pack_model(&m, &b);
        for (size_t cut = 0; cut <= b.len; cut++) {
            int rc = decode_hostile(b.data, cut, &scratch);
            if (cut == b.len)
                ck_assert_int_eq(rc, TUPLE_END);
        }
        /* Corrupt one byte as well. */
        if (b.len > 0) {
            b.data[rng_below(&r, b.len)] = (uint8_t)rng_next(&r);
            (void)decode_hostile(b.data, b.len, &scratch);
        }
    }
    tuple_buf_free(&b);
    tuple_buf_free(&scratch);
}
END_TEST

/* ---- Buffers and subspaces. ---- */

START_TEST(test_buf)
{
    struct tuple_buf b;
    tuple_buf_init(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    tuple_buf_append(&b, "abc", 3);
    /* Appending the buffer to itself across reallocations. */
    for (int i = 0; i < 12; i++)
        tuple_buf_append(&b, b.data, b.len);
    ck_assert_uint_eq(b.len, 3u << 12);
    for (size_t i = 0; i < b.len; i++)
        ck_assert_int_eq(b.data[i], "abc"[i % 3]);
    uint8_t *mem = b.data;
    tuple_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_ptr_eq(b.data, mem);
    tuple_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_strinc)
{
    struct tuple_buf out = {0};
#define STRINC_CASE(in, in_len, ...)                                                       \
    do {                                                                                   \
        CHECK_OK(tuple_strinc((const uint8_t *)(in), (in_len), &out));                     \
        EXPECT_BYTES(&out, __VA_ARGS__);                                                   \
    } while (0)
    STRINC_CASE("a", 1, 'b');
    STRINC_CASE("a\xff", 2, 'b');
    STRINC_CASE("a\xff\xff", 3, 'b');
    STRINC_CASE("\x01\xfe\xff", 3, 0x01, 0xff);
    STRINC_CASE("ab\x00", 3, 'a', 'b', 0x01);
    STRINC_CASE("\xfe", 1, 0xff);
#undef STRINC_CASE
    ck_assert_int_eq(tuple_strinc((const uint8_t *)"", 0, &out), TUPLE_EINVAL);
    ck_assert_int_eq(tuple_strinc((const uint8_t *)"\xff", 1, &out), TUPLE_EINVAL);
    ck_assert_int_eq(tuple_strinc((const uint8_t *)"\xff\xff\xff", 3, &out), TUPLE_EINVAL);

    /* In place: the key lives in out. */
    tuple_buf_reset(&out);
    tuple_buf_append(&out, "k\xff", 2);
    CHECK_OK(tuple_strinc(out.data, out.len, &out));
    EXPECT_BYTES(&out, 'l');

    /* Every key with the prefix sorts before strinc(prefix). */
    struct rng r = {99};
    struct tuple_buf key = {0};
    for (int i = 0; i < 10000; i++) {
        uint8_t prefix[4];
        size_t n = 1 + rng_below(&r, 4);
        for (size_t k = 0; k < n; k++)
            prefix[k] = rng_below(&r, 2) ? 0xff : (uint8_t)rng_next(&r);
        int rc = tuple_strinc(prefix, n, &out);
        bool all_ff = true;
        for (size_t k = 0; k < n; k++)
            all_ff = all_ff && prefix[k] == 0xff;
        if (all_ff) {
            ck_assert_int_eq(rc, TUPLE_EINVAL);
            continue;
        }
        CHECK_OK(rc);
        tuple_buf_reset(&key);
        tuple_buf_append(&key, prefix, n);
        for (size_t k = rng_below(&r, 5); k > 0; k--) {
            uint8_t byte = rng_below(&r, 2) ? 0xff : (uint8_t)rng_next(&r);
            tuple_buf_append(&key, &byte, 1);
        }
        ck_assert_int_lt(cmp_bytes(key.data, key.len, out.data, out.len), 0);
        ck_assert_int_gt(cmp_bytes(out.data, out.len, prefix, n), 0);
    }
    tuple_buf_free(&key);
    tuple_buf_free(&out);
}
END_TEST

START_TEST(test_range)
{
    struct tuple_buf begin = {0}, end = {0}, key = {0};
    tuple_range((const uint8_t *)"ab", 2, &begin, &end);
    EXPECT_BYTES(&begin, 'a', 'b', 0x00);
    EXPECT_BYTES(&end, 'a', 'b', 0xff);

    tuple_range(NULL, 0, &begin, &end);
    EXPECT_BYTES(&begin, 0x00);
    EXPECT_BYTES(&end, 0xff);

    /* The prefix may live in either output buffer. */
    tuple_buf_reset(&begin);
    tuple_buf_append(&begin, "xyz", 3);
    tuple_range(begin.data, begin.len, &begin, &end);
    EXPECT_BYTES(&begin, 'x', 'y', 'z', 0x00);
    EXPECT_BYTES(&end, 'x', 'y', 'z', 0xff);
    tuple_range(end.data, 2, &begin, &end);
    EXPECT_BYTES(&begin, 'x', 'y', 0x00);
    EXPECT_BYTES(&end, 'x', 'y', 0xff);

    /* Every non-empty tuple packed under a subspace is inside its range; the prefix is not. */
    struct rng r = {2024};
    struct tuple_buf prefix = {0};
    tuple_pack_bytes(&prefix, "etcd", 4);
    tuple_pack_int(&prefix, 3);
    tuple_range(prefix.data, prefix.len, &begin, &end);
    ck_assert_int_lt(cmp_bytes(prefix.data, prefix.len, begin.data, begin.len), 0);
    for (int i = 0; i < 20000; i++) {
        struct model m;
        random_model(&r, &m, true);
        if (m.n == 0)
            continue;
        tuple_buf_reset(&key);
        tuple_buf_append(&key, prefix.data, prefix.len);
        pack_model(&m, &key);
        ck_assert_int_le(cmp_bytes(begin.data, begin.len, key.data, key.len), 0);
        ck_assert_int_lt(cmp_bytes(key.data, key.len, end.data, end.len), 0);
    }
    tuple_buf_free(&prefix);
    tuple_buf_free(&key);
    tuple_buf_free(&begin);
    tuple_buf_free(&end);
}
END_TEST

START_TEST(test_strerror)
{
    static const int codes[] = {TUPLE_ETRUNCATED, TUPLE_EMALFORMED, TUPLE_EUNSUPPORTED,
                                TUPLE_ERANGE, TUPLE_EINVAL};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_ptr_nonnull(tuple_strerror(codes[i]));
        ck_assert_str_ne(tuple_strerror(codes[i]), tuple_strerror(-1000));
        for (size_t k = 0; k < i; k++)
            ck_assert_str_ne(tuple_strerror(codes[i]), tuple_strerror(codes[k]));
    }
    ck_assert_str_eq(tuple_strerror(TUPLE_OK), "success");
}
END_TEST

static Suite *tuple_suite(void)
{
    Suite *s = suite_create("tuple");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_int_vectors);
    tcase_add_test(tc, test_other_vectors);
    tcase_add_test(tc, test_invalid_utf8_rejected);
    tcase_add_test(tc, test_incomplete_versionstamp);
    tcase_add_test(tc, test_int_round_trip);
    tcase_add_test(tc, test_tuple_round_trip);
    tcase_add_test(tc, test_order);
    tcase_add_test(tc, test_int_order_sorted);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_random_bytes);
    tcase_add_test(tc, test_truncations);
    tcase_add_test(tc, test_buf);
    tcase_add_test(tc, test_strinc);
    tcase_add_test(tc, test_range);
    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tuple_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
