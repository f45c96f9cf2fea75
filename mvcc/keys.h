/* keys.h -- where etcd's data lives in the store: the key layout under one subspace and the
 * encoding of a key's record.
 *
 * Every key is P + tuple(...), P = tuple("etcd-fdb", <prefix>), with FoundationDB's tuple
 * encoding (kv/tuple.h), so other FoundationDB tools can read it:
 *   P (0, "rev")               -> versionstamp of the newest etcd write (blind versionstamped
 *                                 set by every write: no write reads it, none conflict)
 *   P (0, "compact")           -> compacted revision, 8 bytes big-endian
 *   P (1, key)                 -> record of the key's newest version (live keys only)
 *   P (6, key, i)              -> chunk i >= 1 of that record's value when it is split
 *   P (2, key, stamp)          -> record of the key at revision stamp (tombstone = delete)
 *   P (7, key, stamp, i)       -> chunk i >= 1 of a history record's value
 *   P (3, stamp(user=n))       -> event n of the write at stamp: the change log for watches
 *                                 (type, prev mod revision, key; mvcc.c log_put_inline)
 *   P (4, lease id)            -> a lease
 *   P (5, lease id, key)       -> key attached to a lease
 *   P (8, expiry ms, lease id) -> index of leases by expiry time
 * A revision is the commit version of the write (first 8 bytes of its versionstamp); every
 * write commits as the first transaction of its batch, so the 2 order bytes are 0. */
#ifndef MVCC_KEYS_H
#define MVCC_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "kv/tuple.h"

enum keys_space {
    KEYS_META = 0,
    KEYS_LATEST = 1,
    KEYS_HISTORY = 2,
    KEYS_LOG = 3,
    KEYS_LEASE = 4,
    KEYS_LEASE_KEY = 5,
    KEYS_LATEST_CHUNK = 6,
    KEYS_HISTORY_CHUNK = 7,
    KEYS_LEASE_EXPIRY = 8,
};

struct keys {
    struct tuple_buf prefix; /* P */
};

void keys_init(struct keys *k, const char *name);
void keys_free(struct keys *k);
/* The length of P (space) for the spaces 1 to 8 of instance name: the bytes that the keys of
 * one space share (the embedded store's memtable insert hint, kv/embedded.c). */
size_t keys_space_prefix_len(const char *name);

/* Each builder replaces out's contents. */
void keys_meta(const struct keys *k, struct tuple_buf *out, const char *name);
void keys_latest(const struct keys *k, struct tuple_buf *out, const uint8_t *key, size_t len);
void keys_latest_chunk(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                       size_t len, int64_t index);
/* [begin, end) of the latest records for etcd's [key, range_end): an empty range_end is the
 * single key, "\0" means every key >= key. */
void keys_latest_range(const struct keys *k, const uint8_t *key, size_t len,
                       const uint8_t *range_end, size_t range_end_len, struct tuple_buf *begin,
                       struct tuple_buf *end);
/* The same for history records. */
void keys_history_range(const struct keys *k, const uint8_t *key, size_t len,
                        const uint8_t *range_end, size_t range_end_len, struct tuple_buf *begin,
                        struct tuple_buf *end);
/* P (2, key, stamp(rev, order)): with order 0xffff, the last possible record of rev. */
void keys_history_at(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                     size_t len, int64_t rev, uint16_t order);
/* Versionstamped-key forms (with the 4-byte offset suffix) for a write in progress. */
void keys_history_new(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                      size_t len);
void keys_history_chunk_new(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                            size_t len, int64_t index);
void keys_history_chunk_prefix(const struct keys *k, struct tuple_buf *out, const uint8_t *key,
                               size_t len, int64_t rev);
void keys_log_new(const struct keys *k, struct tuple_buf *out, uint16_t event);
/* [begin, end) of the change log after revision rev. */
void keys_log_after(const struct keys *k, int64_t rev, struct tuple_buf *begin,
                    struct tuple_buf *end);
void keys_log_range(const struct keys *k, struct tuple_buf *begin, struct tuple_buf *end);
void keys_lease(const struct keys *k, struct tuple_buf *out, int64_t id);
void keys_lease_key(const struct keys *k, struct tuple_buf *out, int64_t id, const uint8_t *key,
                    size_t len);
void keys_lease_expiry(const struct keys *k, struct tuple_buf *out, int64_t expires_ms,
                       int64_t id);
void keys_lease_keys_range(const struct keys *k, int64_t id, struct tuple_buf *begin,
                           struct tuple_buf *end);
int keys_decode_lease_key(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *id,
                          struct tuple_buf *key);
int keys_decode_lease(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *id);
int keys_decode_lease_expiry(const struct keys *k, const uint8_t *skey, size_t slen,
                             int64_t *expires_ms, int64_t *id);
void keys_lease_all(const struct keys *k, struct tuple_buf *begin, struct tuple_buf *end);
void keys_space_range(const struct keys *k, enum keys_space space, struct tuple_buf *begin,
                      struct tuple_buf *end);

/* Decoders return 0, or -1 when the store key is not of the expected form. The etcd key is
 * unescaped into out. */
int keys_decode_latest(const struct keys *k, const uint8_t *skey, size_t slen,
                       struct tuple_buf *out);
int keys_decode_history(const struct keys *k, const uint8_t *skey, size_t slen,
                        struct tuple_buf *out, int64_t *rev);
int keys_decode_log(const struct keys *k, const uint8_t *skey, size_t slen, int64_t *rev,
                    uint16_t *event);

int64_t keys_stamp_revision(const uint8_t stamp[10]);

/* A key's record: what etcd's KeyValue says besides the key. */
enum {
    RECORD_CREATE_SELF = 1, /* create_revision = mod_revision (the key was created here) */
    RECORD_TOMBSTONE = 2,   /* history only: the key was deleted at this revision */
    RECORD_CHUNKED = 4,     /* the value continues in chunk keys */
};

#define RECORD_HEADER_LEN 35 /* flags 1, mod stamp 10, create 8, version 8, lease 8 */
#define RECORD_STAMP_OFFSET 1
#define RECORD_CHUNK_LEN 90000 /* value bytes per store value (limit 100,000) */

struct record {
    int flags;
    int64_t mod_rev; /* from the stamp in the value, or from the key (history) */
    int64_t create_rev;
    int64_t version;
    int64_t lease;
    uint32_t total_len;  /* value length, chunks included */
    const uint8_t *part; /* the value bytes stored in this record (borrowed) */
    uint32_t part_len;
};

/* Encodes a record with `part` as its inline value bytes into out (replacing it); the mod
 * stamp is zeros (filled by a versionstamped set, or unused in history). */
void record_encode(struct tuple_buf *out, int flags, int64_t create_rev, int64_t version,
                   int64_t lease, uint32_t total_len, const uint8_t *part, uint32_t part_len);
/* Decodes; the record borrows v. Returns 0 or -1 if malformed. A tombstone may be stored as
 * its flags byte alone. */
int record_decode(const uint8_t *v, size_t len, struct record *r);

#endif
