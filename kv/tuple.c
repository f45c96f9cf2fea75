/* tuple.c -- FoundationDB's tuple encoding and subspace helpers (see tuple.h). */
#include "kv/tuple.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Integer type codes: 0x14 is zero, 0x14+n a positive n-byte big-endian magnitude, 0x14-n a
 * negative one stored as its one's complement, so that memcmp orders integers by value. */
#define CODE_INT_ZERO 0x14
#define CODE_INT_BIG_NEG 0x0b /* arbitrary-precision negative: out of range here */
#define CODE_INT_BIG_POS 0x1d /* arbitrary-precision positive: out of range here */
#define ESCAPE 0xff           /* follows an embedded NUL in a byte or unicode string */
#define VERSIONSTAMP_SIZE 12
#define TR_VERSION_SIZE 10

void tuple_buf_init(struct tuple_buf *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void tuple_buf_free(struct tuple_buf *buf)
{
    free(buf->data);
    tuple_buf_init(buf);
}

void tuple_buf_reset(struct tuple_buf *buf)
{
    buf->len = 0;
}

/* Makes room for n more bytes; aborts on overflow or allocation failure. */
static void buf_reserve(struct tuple_buf *buf, size_t n)
{
    if (n > SIZE_MAX - buf->len)
        abort();
    size_t need = buf->len + n;
    if (need <= buf->cap)
        return;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *data = realloc(buf->data, cap);
    if (!data)
        abort();
    buf->data = data;
    buf->cap = cap;
}

void tuple_buf_append(struct tuple_buf *buf, const void *bytes, size_t n)
{
    if (n == 0)
        return;
    /* Callers may append a slice of the buffer to itself (tuple_range, tuple_strinc); find it
     * again after realloc moves the memory. */
    uintptr_t src = (uintptr_t)bytes, start = (uintptr_t)buf->data;
    bool inside = buf->data && src >= start && src < start + buf->cap;
    size_t src_offset = inside ? (size_t)(src - start) : 0;
    buf_reserve(buf, n);
    const void *from = inside ? buf->data + src_offset : bytes;
    memmove(buf->data + buf->len, from, n);
    buf->len += n;
}

static void buf_byte(struct tuple_buf *buf, uint8_t byte)
{
    buf_reserve(buf, 1);
    buf->data[buf->len++] = byte;
}

void tuple_pack_null(struct tuple_buf *buf)
{
    buf_byte(buf, TUPLE_NULL);
}

/* Appends code, bytes with every NUL written as 00 FF, and the 00 terminator. */
static void pack_escaped(struct tuple_buf *buf, uint8_t code, const uint8_t *bytes, size_t n)
{
    buf_byte(buf, code);
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] != 0x00)
            continue;
        tuple_buf_append(buf, bytes + run, i + 1 - run);
        buf_byte(buf, ESCAPE);
        run = i + 1;
    }
    if (run < n) /* bytes may be NULL when n == 0 */
        tuple_buf_append(buf, bytes + run, n - run);
    buf_byte(buf, 0x00);
}

void tuple_pack_bytes(struct tuple_buf *buf, const void *bytes, size_t n)
{
    pack_escaped(buf, TUPLE_BYTES, bytes, n);
}

/* True if s[0..n) is valid UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF). With escaped set, s is the escaped form: every NUL is followed by ESCAPE, which
 * is skipped. */
static bool utf8_valid(const uint8_t *s, size_t n, bool escaped)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i += (c == 0x00 && escaped) ? 2 : 1;
            continue;
        }
        /* The allowed range of the second byte and the number of continuation bytes. */
        uint8_t lo = 0x80, hi = 0xbf;
        size_t more;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false;
        }
        if (more > n - i - 1)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += 1 + more;
    }
    return true;
}

int tuple_pack_string(struct tuple_buf *buf, const char *s, size_t n)
{
    if (!utf8_valid((const uint8_t *)s, n, false))
        return TUPLE_EINVAL;
    pack_escaped(buf, TUPLE_STRING, (const uint8_t *)s, n);
    return TUPLE_OK;
}

/* Number of bytes needed for magnitude m (0 for 0). */
static int magnitude_bytes(uint64_t m)
{
    int n = 0;
    while (m) {
        n++;
        m >>= 8;
    }
    return n;
}

/* Appends the low n bytes of v, big-endian. */
static void pack_big_endian(struct tuple_buf *buf, uint64_t v, int n)
{
    uint8_t out[8];
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    tuple_buf_append(buf, out, (size_t)n);
}

void tuple_pack_uint64(struct tuple_buf *buf, uint64_t value)
{
    int n = magnitude_bytes(value);
    buf_byte(buf, (uint8_t)(CODE_INT_ZERO + n));
    pack_big_endian(buf, value, n);
}

void tuple_pack_int(struct tuple_buf *buf, int64_t value)
{
    if (value >= 0) {
        tuple_pack_uint64(buf, (uint64_t)value);
        return;
    }
    /* Unsigned negation so that INT64_MIN gives 2^63 without overflow. */
    uint64_t magnitude = (uint64_t)0 - (uint64_t)value;
    int n = magnitude_bytes(magnitude);
    buf_byte(buf, (uint8_t)(CODE_INT_ZERO - n));
    pack_big_endian(buf, ~magnitude, n);
}

void tuple_pack_bool(struct tuple_buf *buf, bool value)
{
    buf_byte(buf, value ? TUPLE_TRUE : TUPLE_FALSE);
}

void tuple_pack_versionstamp(struct tuple_buf *buf, const uint8_t tr_version[10],
                             uint16_t user_version)
{
    buf_byte(buf, TUPLE_VERSIONSTAMP);
    tuple_buf_append(buf, tr_version, TR_VERSION_SIZE);
    pack_big_endian(buf, user_version, 2);
}

void tuple_pack_incomplete_versionstamp(struct tuple_buf *buf, uint16_t user_version,
                                        size_t *offset)
{
    static const uint8_t placeholder[TR_VERSION_SIZE] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    };
    buf_byte(buf, TUPLE_VERSIONSTAMP);
    *offset = buf->len;
    tuple_buf_append(buf, placeholder, TR_VERSION_SIZE);
    pack_big_endian(buf, user_version, 2);
}

/* Keys and values take the same suffix: the placeholder's offset, 4 bytes little-endian. */
static int finish_versionstamped(struct tuple_buf *buf, size_t offset)
{
    if (offset > UINT32_MAX || offset > buf->len || buf->len - offset < TR_VERSION_SIZE)
        return TUPLE_EINVAL;
    uint8_t suffix[4];
    for (int i = 0; i < 4; i++)
        suffix[i] = (uint8_t)(offset >> (8 * i));
    tuple_buf_append(buf, suffix, sizeof suffix);
    return TUPLE_OK;
}

int tuple_finish_versionstamped_key(struct tuple_buf *buf, size_t offset)
{
    return finish_versionstamped(buf, offset);
}

int tuple_finish_versionstamped_value(struct tuple_buf *buf, size_t offset)
{
    return finish_versionstamped(buf, offset);
}

/* Decodes an escaped string starting at p[start] (after the type code). Sets *end to the
 * position of its terminator. */
static int decode_escaped(const uint8_t *p, size_t len, size_t start, size_t *end,
                          struct tuple_item *out)
{
    size_t escapes = 0;
    size_t i = start;
    for (;;) {
        if (i >= len)
            return TUPLE_ETRUNCATED;
        if (p[i] == 0x00) {
            /* 00 FF is an embedded NUL; 00 followed by anything else, or by nothing, ends the
             * string. */
            if (i + 1 < len && p[i + 1] == ESCAPE) {
                escapes++;
                i += 2;
                continue;
            }
            break;
        }
        i++;
    }
    out->bytes.raw = p + start;
    out->bytes.raw_len = i - start;
    out->bytes.escapes = escapes;
    out->bytes.len = i - start - escapes;
    *end = i;
    return TUPLE_OK;
}

/* Decodes the integer with type code `code` from p[start..), setting *next past it. */
static int decode_int(const uint8_t *p, size_t len, size_t start, uint8_t code, size_t *next,
                      struct tuple_item *out)
{
    if (code == CODE_INT_BIG_NEG || code == CODE_INT_BIG_POS)
        return TUPLE_ERANGE;
    bool negative = code < CODE_INT_ZERO;
    size_t n = negative ? (size_t)(CODE_INT_ZERO - code) : (size_t)(code - CODE_INT_ZERO);
    if (n > len - start)
        return TUPLE_ETRUNCATED;
    /* Canonical form only: a leading 00 (or FF, the complement of 00) could have been
     * shorter, and accepting it would let two byte strings decode to one tuple. */
    if (n > 0 && p[start] == (negative ? 0xff : 0x00))
        return TUPLE_EMALFORMED;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[start + i];
    if (negative) {
        uint64_t magnitude = n == 8 ? ~v : (((uint64_t)1 << (8 * n)) - 1) ^ v;
        if (magnitude > (uint64_t)1 << 63)
            return TUPLE_ERANGE;
        out->type = TUPLE_INT;
        /* 2^63 has no positive int64_t to negate. */
        out->i64 = magnitude == (uint64_t)1 << 63 ? INT64_MIN : -(int64_t)magnitude;
    } else if (v > INT64_MAX) {
        out->type = TUPLE_UINT64;
        out->u64 = v;
    } else {
        out->type = TUPLE_INT;
        out->i64 = (int64_t)v;
    }
    *next = start + n;
    return TUPLE_OK;
}

int tuple_next(const uint8_t *p, size_t len, size_t *pos, struct tuple_item *out)
{
    size_t at = *pos;
    if (at > len)
        return TUPLE_EINVAL;
    if (at == len)
        return TUPLE_END;
    uint8_t code = p[at];
    size_t next;
    int rc;
    switch (code) {
    case TUPLE_NULL:
    case TUPLE_FALSE:
    case TUPLE_TRUE:
        out->type = (enum tuple_type)code;
        next = at + 1;
        break;
    case TUPLE_BYTES:
    case TUPLE_STRING:
        rc = decode_escaped(p, len, at + 1, &next, out);
        if (rc < 0)
            return rc;
        if (code == TUPLE_STRING && !utf8_valid(out->bytes.raw, out->bytes.raw_len, true))
            return TUPLE_EMALFORMED;
        out->type = (enum tuple_type)code;
        next++; /* the terminator */
        break;
    case TUPLE_VERSIONSTAMP:
        if (len - at - 1 < VERSIONSTAMP_SIZE)
            return TUPLE_ETRUNCATED;
        out->type = TUPLE_VERSIONSTAMP;
        memcpy(out->versionstamp, p + at + 1, VERSIONSTAMP_SIZE);
        next = at + 1 + VERSIONSTAMP_SIZE;
        break;
    default:
        if (code < CODE_INT_BIG_NEG || code > CODE_INT_BIG_POS)
            return TUPLE_EUNSUPPORTED;
        rc = decode_int(p, len, at + 1, code, &next, out);
        if (rc < 0)
            return rc;
        break;
    }
    *pos = next;
    return TUPLE_OK;
}

void tuple_item_unescape(const struct tuple_item *item, struct tuple_buf *out)
{
    assert(item->type == TUPLE_BYTES || item->type == TUPLE_STRING);
    const uint8_t *raw = item->bytes.raw;
    size_t n = item->bytes.raw_len;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] != 0x00)
            continue;
        /* Keep the NUL, drop the ESCAPE after it (the decoder guaranteed it is there). */
        tuple_buf_append(out, raw + run, i + 1 - run);
        i++;
        run = i + 1;
    }
    if (run < n)
        tuple_buf_append(out, raw + run, n - run);
}

void tuple_range(const uint8_t *prefix, size_t len, struct tuple_buf *begin,
                 struct tuple_buf *end)
{
    assert(begin != end);
    /* prefix may live in end: fill begin first, then take the prefix from begin. */
    tuple_buf_reset(begin);
    tuple_buf_append(begin, prefix, len);
    buf_byte(begin, 0x00);
    tuple_buf_reset(end);
    tuple_buf_append(end, begin->data, len);
    buf_byte(end, 0xff);
}

int tuple_strinc(const uint8_t *key, size_t len, struct tuple_buf *out)
{
    size_t n = len;
    while (n > 0 && key[n - 1] == 0xff)
        n--;
    if (n == 0)
        return TUPLE_EINVAL;
    tuple_buf_reset(out);
    tuple_buf_append(out, key, n);
    out->data[n - 1]++;
    return TUPLE_OK;
}

const char *tuple_strerror(int err)
{
    switch (err) {
    case TUPLE_OK:
        return "success";
    case TUPLE_ETRUNCATED:
        return "tuple: input ends inside an element";
    case TUPLE_EMALFORMED:
        return "tuple: malformed element";
    case TUPLE_EUNSUPPORTED:
        return "tuple: unsupported type code";
    case TUPLE_ERANGE:
        return "tuple: integer out of range";
    case TUPLE_EINVAL:
        return "tuple: invalid argument";
    default:
        return "tuple: unknown error";
    }
}
