/* tuple.h -- FoundationDB's tuple encoding (the byte format all bindings share) and subspaces.
 *
 * Keys built here sort, under memcmp, in tuple order, and decode with any FoundationDB
 * binding. Encoders append one element to a growable buffer; tuple_next() walks the
 * elements of an encoded tuple and is safe on arbitrary (hostile) input. A subspace is just
 * a prefix byte string: pack the prefix, then append elements after it.
 *
 * Supported elements: null, byte string, unicode string, 64-bit integer (signed, and
 * unsigned above INT64_MAX), boolean, 96-bit versionstamp. Other type codes (nested tuples,
 * floats, UUIDs, big integers) are rejected by the decoder. */
#ifndef KV_TUPLE_H
#define KV_TUPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUPLE_MUST_CHECK __attribute__((warn_unused_result))

/* Errors; each function returning int returns 0 or one of these. */
enum tuple_error {
    TUPLE_OK = 0,
    TUPLE_ETRUNCATED = -1,  /* input ends inside an element */
    TUPLE_EMALFORMED = -2,  /* bad element: non-canonical integer, invalid UTF-8 */
    TUPLE_EUNSUPPORTED = -3, /* a type code this module does not decode */
    TUPLE_ERANGE = -4,      /* integer outside [INT64_MIN, UINT64_MAX] */
    TUPLE_EINVAL = -5,      /* bad argument (see each function) */
};

/* tuple_next() returns this when every element has been read. */
#define TUPLE_END 1

/* Type codes of the encoding; tuple_item.type is one of these. */
enum tuple_type {
    TUPLE_NULL = 0x00,
    TUPLE_BYTES = 0x01,
    TUPLE_STRING = 0x02,
    TUPLE_INT = 0x14,    /* fits int64_t: item.i64 */
    TUPLE_UINT64 = 0x1c, /* above INT64_MAX: item.u64 */
    TUPLE_FALSE = 0x26,
    TUPLE_TRUE = 0x27,
    TUPLE_VERSIONSTAMP = 0x33,
};

/* Growable byte buffer. Zero-initialised (or tuple_buf_init) it is empty and owns nothing;
 * tuple_buf_free releases it. Allocation failure aborts the process: keys are small, and
 * every caller would have to treat it as fatal anyway. */
struct tuple_buf {
    uint8_t *data;
    size_t len, cap;
};

void tuple_buf_init(struct tuple_buf *buf);
void tuple_buf_free(struct tuple_buf *buf);
/* Empties the buffer, keeping its memory for reuse. */
void tuple_buf_reset(struct tuple_buf *buf);
/* Appends n bytes. bytes may point into buf itself. */
void tuple_buf_append(struct tuple_buf *buf, const void *bytes, size_t n);

/* Encoders: each appends one element to buf. */
void tuple_pack_null(struct tuple_buf *buf);
void tuple_pack_bytes(struct tuple_buf *buf, const void *bytes, size_t n);
/* s must be n bytes of valid UTF-8 (NULs allowed); TUPLE_EINVAL and nothing appended if not,
 * because no binding could decode the key. */
TUPLE_MUST_CHECK int tuple_pack_string(struct tuple_buf *buf, const char *s, size_t n);
void tuple_pack_int(struct tuple_buf *buf, int64_t value);
/* Same encoding as tuple_pack_int for values <= INT64_MAX; larger ones use the 0x1c code. */
void tuple_pack_uint64(struct tuple_buf *buf, uint64_t value);
void tuple_pack_bool(struct tuple_buf *buf, bool value);
/* A complete versionstamp: the 10-byte transaction versionstamp as the store returned it,
 * and the 2-byte user version that orders keys written by one transaction. */
void tuple_pack_versionstamp(struct tuple_buf *buf, const uint8_t tr_version[10],
                             uint16_t user_version);

/* An incomplete versionstamp: 10 bytes of 0xFF for the store to fill in at commit. Sets
 * *offset to the position of those 10 bytes in buf. Once the key (or value) is complete,
 * call the matching tuple_finish_* exactly once, then pass the buffer to the atomic op. */
void tuple_pack_incomplete_versionstamp(struct tuple_buf *buf, uint16_t user_version,
                                        size_t *offset);
/* Appends the 4-byte little-endian offset that SET_VERSIONSTAMPED_KEY / _VALUE expect
 * (API version >= 520). TUPLE_EINVAL if the 10 bytes at offset are not inside buf or offset
 * does not fit 32 bits. */
TUPLE_MUST_CHECK int tuple_finish_versionstamped_key(struct tuple_buf *buf, size_t offset);
TUPLE_MUST_CHECK int tuple_finish_versionstamped_value(struct tuple_buf *buf, size_t offset);

/* One decoded element. For TUPLE_BYTES and TUPLE_STRING the bytes are not copied: raw points
 * at the escaped form inside the input (after the type code, before the terminator) and is
 * valid as long as the input is. When escapes == 0, raw[0..len) is the value itself;
 * otherwise each NUL is stored as 00 FF and tuple_item_unescape gives the value. Strings
 * have been checked to be valid UTF-8. An incomplete versionstamp decodes with its first 10
 * bytes all 0xFF. */
struct tuple_item {
    enum tuple_type type;
    union {
        int64_t i64;
        uint64_t u64;
        uint8_t versionstamp[12]; /* transaction version, then user version big-endian */
        struct {
            const uint8_t *raw;
            size_t raw_len;
            size_t len;     /* length once unescaped */
            size_t escapes; /* number of escaped NULs */
        } bytes;
    };
};

/* Decodes the element at p[*pos] and advances *pos past it. Returns 0 with *out filled,
 * TUPLE_END when *pos == len, or a negative error with *pos unchanged and *out unspecified
 * (TUPLE_EINVAL if *pos > len). Never reads outside
 * p[0..len). Integers are accepted only in their canonical (shortest) form, so a decoded
 * tuple packs back to the same bytes. */
TUPLE_MUST_CHECK int tuple_next(const uint8_t *p, size_t len, size_t *pos,
                                struct tuple_item *out);
/* Appends the unescaped value (item.bytes.len bytes) of a TUPLE_BYTES or TUPLE_STRING item
 * to out, which must not be the buffer holding the decoded input. */
void tuple_item_unescape(const struct tuple_item *item, struct tuple_buf *out);

/* Sets begin to prefix+00 and end to prefix+FF: every tuple packed after the prefix lies in
 * [begin, end), the prefix itself does not (FoundationDB's Subspace.range()). prefix may
 * point into begin or end. */
void tuple_range(const uint8_t *prefix, size_t len, struct tuple_buf *begin,
                 struct tuple_buf *end);
/* Sets out to the first key after every key that starts with key[0..len): trailing 0xFF
 * bytes stripped, then the last byte incremented (FoundationDB's strinc). TUPLE_EINVAL if
 * key is empty or all 0xFF. key may point into out. */
TUPLE_MUST_CHECK int tuple_strinc(const uint8_t *key, size_t len, struct tuple_buf *out);

/* A static string describing a tuple_error code. */
const char *tuple_strerror(int err);

#endif
