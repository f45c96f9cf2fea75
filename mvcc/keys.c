/* keys.c -- the key layout and record encoding described in keys.h. */
#include "mvcc/keys.h"

#include <string.h>

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int64_t keys_stamp_revision(const uint8_t stamp[10])
{
    return (int64_t)get_be64(stamp);
}

void keys_init(struct keys *k, const char *name)
{
    tuple_buf_init(&k->prefix);
    tuple_pack_bytes(&k->prefix, "etcd-fdb", 8);
    tuple_pack_bytes(&k->prefix, name, strlen(name));
}

void keys_free(struct keys *k)
{
    tuple_buf_free(&k->prefix);
}

size_t keys_space_prefix_len(const char *name)
{
    struct keys k;
    keys_init(&k, name);
    size_t len = k.prefix.len + 2; /* an integer 1 to 255: type byte and one byte */
    keys_free(&k);
    return len;
}

static void start(const struct keys *k, struct tuple_buf *out, enum keys_space space)
{
    tuple_buf_reset(out);
    tuple_buf_append(out, k->prefix.data, k->prefix.len);
    tuple_pack_int(out, space);
}

void keys_meta(const struct keys *k, struct tuple_buf *out, const char *name)
{
    start(k, out, KEYS_META);
    tuple_pack_bytes(out, name, strlen(name));
}

void keys_latest(const struct keys *k, struct tuple_buf *out, const uint8_t *key, size_t len)
{
    start(k, out, KEYS_LATEST);
    tuple_pack_bytes(out, key, len);
}

void keys_latest_chunk(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                       size_t len, int64_t index)
{
    start(k, out, KEYS_LATEST_CHUNK);
    tuple_pack_bytes(out, key, len);
    tuple_pack_int(out, index);
}

/* [begin, end) in `space` for etcd's [key, range_end) rules. */
static void space_range(const struct keys *k, enum keys_space space, const uint8_t *key,
                        size_t len, const uint8_t *range_end, size_t range_end_len,
                        struct tuple_buf *begin, struct tuple_buf *end)
{
    start(k, begin, space);
    tuple_pack_bytes(begin, key, len);
    start(k, end, space);
    if (range_end_len == 0) { /* the single key: all store keys that start with it */
        tuple_pack_bytes(end, key, len);
        tuple_buf_append(end, "\xff", 1);
    } else if (range_end_len == 1 && range_end[0] == 0) { /* every key >= key */
        tuple_buf_append(end, "\xff", 1);
    } else {
        tuple_pack_bytes(end, range_end, range_end_len);
    }
}

void keys_latest_range(const struct keys *k, const uint8_t *key, size_t len,
                       const uint8_t *range_end, size_t range_end_len, struct tuple_buf *begin,
                       struct tuple_buf *end)
{
    space_range(k, KEYS_LATEST, key, len, range_end, range_end_len, begin, end);
}

void keys_history_range(const struct keys *k, const uint8_t *key, size_t len,
                        const uint8_t *range_end, size_t range_end_len, struct tuple_buf *begin,
                        struct tuple_buf *end)
{
    space_range(k, KEYS_HISTORY, key, len, range_end, range_end_len, begin, end);
}

static void pack_stamp(struct tuple_buf *out, int64_t rev, uint16_t order, uint16_t user)
{
    uint8_t stamp[10];
    be64(stamp, (uint64_t)rev);
    stamp[8] = (uint8_t)(order >> 8);
    stamp[9] = (uint8_t)order;
    tuple_pack_versionstamp(out, stamp, user);
}

void keys_history_at(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                     size_t len, int64_t rev, uint16_t order)
{
    start(k, out, KEYS_HISTORY);
    tuple_pack_bytes(out, key, len);
    pack_stamp(out, rev, order, order);
}

/* Appends an incomplete versionstamp and the offset suffix of a versionstamped key. */
static void finish_new(struct tuple_buf *out, size_t offset)
{
    if (tuple_finish_versionstamped_key(out, offset) != 0) /* offset < 4 GiB: cannot fail */
        tuple_buf_reset(out);
}

void keys_history_new(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                      size_t len)
{
    size_t off;
    start(k, out, KEYS_HISTORY);
    tuple_pack_bytes(out, key, len);
    tuple_pack_incomplete_versionstamp(out, 0, &off);
    finish_new(out, off);
}

void keys_history_chunk_new(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                            size_t len, int64_t index)
{
    size_t off;
    start(k, out, KEYS_HISTORY_CHUNK);
    tuple_pack_bytes(out, key, len);
    tuple_pack_incomplete_versionstamp(out, 0, &off);
    tuple_pack_int(out, index);
    finish_new(out, off);
}

void keys_history_chunk_prefix(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                               size_t len, int64_t rev)
{
    start(k, out, KEYS_HISTORY_CHUNK);
    tuple_pack_bytes(out, key, len);
    pack_stamp(out, rev, 0, 0);
}

void keys_log_new(const struct keys *k, struct tuple_buf *out, uint16_t event)
{
    size_t off;
    start(k, out, KEYS_LOG);
    tuple_pack_incomplete_versionstamp(out, event, &off);
    finish_new(out, off);
}

void keys_log_after(const struct keys *k, int64_t rev, struct tuple_buf *begin,
                    struct tuple_buf *end)
{
    start(k, begin, KEYS_LOG);
    pack_stamp(begin, rev + 1, 0, 0);
    start(k, end, KEYS_LOG);
    tuple_buf_append(end, "\xff", 1);
}

void keys_log_range(const struct keys *k, struct tuple_buf *begin, struct tuple_buf *end)
{
    keys_space_range(k, KEYS_LOG, begin, end);
}

void keys_lease(const struct keys *k, struct tuple_buf *out, int64_t id)
{
    start(k, out, KEYS_LEASE);
    tuple_pack_int(out, id);
}

void keys_lease_key(const struct keys *k, struct tuple_buf *out, int64_t id, const uint8_t *key,
                    size_t len)
{
    start(k, out, KEYS_LEASE_KEY);
    tuple_pack_int(out, id);
    tuple_pack_bytes(out, key, len);
}

void keys_lease_all(const struct keys *k, struct tuple_buf *begin, struct tuple_buf *end)
{
    keys_space_range(k, KEYS_LEASE, begin, end);
}

void keys_space_range(const struct keys *k, enum keys_space space, struct tuple_buf *begin,
                      struct tuple_buf *end)
{
    start(k, begin, space);
    tuple_buf_append(begin, "\x00", 1);
    start(k, end, space);
    tuple_buf_append(end, "\xff", 1);
}

/* Checks P and the space code; returns the position after them, or 0. */
static size_t expect_space(const struct keys *k, const uint8_t *s, size_t len,
                           enum keys_space space)
{
    if (len < k->prefix.len || memcmp(s, k->prefix.data, k->prefix.len) != 0)
        return 0;
    size_t pos = k->prefix.len;
    struct tuple_item it;
    if (tuple_next(s, len, &pos, &it) != 0 || it.type != TUPLE_INT || it.i64 != space)
        return 0;
    return pos;
}

static int next_bytes(const uint8_t *s, size_t len, size_t *pos, struct tuple_buf *out)
{
    struct tuple_item it;
    if (tuple_next(s, len, pos, &it) != 0 || it.type != TUPLE_BYTES)
        return -1;
    tuple_buf_reset(out);
    tuple_item_unescape(&it, out);
    return 0;
}

int keys_decode_latest(const struct keys *k, const uint8_t *skey, size_t slen,
                       struct tuple_buf *out)
{
    size_t pos = expect_space(k, skey, slen, KEYS_LATEST);
    return pos ? next_bytes(skey, slen, &pos, out) : -1;
}

int keys_decode_history(const struct keys *k, const uint8_t *skey, size_t slen,
                        struct tuple_buf *out, int64_t *rev)
{
    size_t pos = expect_space(k, skey, slen, KEYS_HISTORY);
    if (!pos || next_bytes(skey, slen, &pos, out) != 0)
        return -1;
    struct tuple_item it;
    if (tuple_next(skey, slen, &pos, &it) != 0 || it.type != TUPLE_VERSIONSTAMP)
        return -1;
    *rev = keys_stamp_revision(it.versionstamp);
    return 0;
}

int keys_decode_log(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *rev,
                    uint16_t *event)
{
    size_t pos = expect_space(k, skey, slen, KEYS_LOG);
    struct tuple_item it;
    if (!pos || tuple_next(skey, slen, &pos, &it) != 0 || it.type != TUPLE_VERSIONSTAMP)
        return -1;
    *rev = keys_stamp_revision(it.versionstamp);
    *event = (uint16_t)(it.versionstamp[10] << 8 | it.versionstamp[11]);
    return 0;
}

void record_encode(struct tuple_buf *out, int flags, int64_t create_rev, int64_t version,
                   int64_t lease, uint32_t total_len, const uint8_t *part, uint32_t part_len)
{
    uint8_t h[RECORD_HEADER_LEN + 4];
    memset(h, 0, sizeof(h));
    h[0] = (uint8_t)flags;
    be64(h + 11, (uint64_t)create_rev);
    be64(h + 19, (uint64_t)version);
    be64(h + 27, (uint64_t)lease);
    size_t n = RECORD_HEADER_LEN;
    if (flags & RECORD_CHUNKED) {
        h[35] = (uint8_t)(total_len >> 24);
        h[36] = (uint8_t)(total_len >> 16);
        h[37] = (uint8_t)(total_len >> 8);
        h[38] = (uint8_t)total_len;
        n += 4;
    }
    tuple_buf_reset(out);
    tuple_buf_append(out, h, n);
    if (part_len)
        tuple_buf_append(out, part, part_len);
}

int record_decode(const uint8_t *v, size_t len, struct record *r)
{
    if (len >= 1 && len < RECORD_HEADER_LEN && (v[0] & RECORD_TOMBSTONE)) {
        memset(r, 0, sizeof(*r)); /* the short form of a tombstone: its flags only */
        r->flags = v[0];
        r->part = v;
        return 0;
    }
    if (len < RECORD_HEADER_LEN)
        return -1;
    r->flags = v[0];
    r->mod_rev = keys_stamp_revision(v + 1);
    r->create_rev = (int64_t)get_be64(v + 11);
    r->version = (int64_t)get_be64(v + 19);
    r->lease = (int64_t)get_be64(v + 27);
    size_t pos = RECORD_HEADER_LEN;
    if (r->flags & RECORD_CHUNKED) {
        if (len < pos + 4)
            return -1;
        r->total_len = (uint32_t)v[35] << 24 | (uint32_t)v[36] << 16 | (uint32_t)v[37] << 8 |
                       v[38];
        pos += 4;
    }
    r->part = v + pos;
    r->part_len = (uint32_t)(len - pos);
    if (!(r->flags & RECORD_CHUNKED))
        r->total_len = r->part_len;
    if (r->part_len > r->total_len)
        return -1;
    return 0;
}

void keys_lease_expiry(const struct keys *k, struct tuple_buf *out, int64_t expires_ms,
                       int64_t id)
{
    start(k, out, KEYS_LEASE_EXPIRY);
    tuple_pack_int(out, expires_ms);
    tuple_pack_int(out, id);
}

void keys_lease_keys_range(const struct keys *k, int64_t id, struct tuple_buf *begin,
                           struct tuple_buf *end)
{
    start(k, begin, KEYS_LEASE_KEY);
    tuple_pack_int(begin, id);
    start(k, end, KEYS_LEASE_KEY);
    tuple_pack_int(end, id);
    tuple_buf_append(end, "\xff", 1);
}

static int next_int(const uint8_t *s, size_t len, size_t *pos, int64_t *out)
{
    struct tuple_item it;
    if (tuple_next(s, len, pos, &it) != 0 || it.type != TUPLE_INT)
        return -1;
    *out = it.i64;
    return 0;
}

int keys_decode_lease_key(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *id,
                          struct tuple_buf *key)
{
    size_t pos = expect_space(k, skey, slen, KEYS_LEASE_KEY);
    if (!pos || next_int(skey, slen, &pos, id) != 0)
        return -1;
    return next_bytes(skey, slen, &pos, key);
}

int keys_decode_lease(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *id)
{
    size_t pos = expect_space(k, skey, slen, KEYS_LEASE);
    return pos ? next_int(skey, slen, &pos, id) : -1;
}

int keys_decode_lease_expiry(const struct keys *k, const uint8_t *skey, size_t slen,
                             int64_t *expires_ms, int64_t *id)
{
    size_t pos = expect_space(k, skey, slen, KEYS_LEASE_EXPIRY);
    if (!pos || next_int(skey, slen, &pos, expires_ms) != 0)
        return -1;
    return next_int(skey, slen, &pos, id);
}

