/* writemap.h -- an ordered map of a transaction's uncommitted writes (read-your-writes).
 *
 * Holds, per key, what the transaction knows of the key's value after its own writes:
 * a known value (set, cleared, or an atomic op on a known base), a chain of atomic ops on a
 * base only the store knows, or "unreadable" (a versionstamped value). Cleared ranges are
 * kept as disjoint intervals; a key inside one and without an entry is known absent. */
#ifndef KV_WRITEMAP_H
#define KV_WRITEMAP_H

#include <stdint.h>

#ifndef __unused /* libbsd's tree.h marks generated functions with it */
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>

enum writemap_state {
    WRITEMAP_KNOWN = 1,      /* present/value say what the key holds */
    WRITEMAP_CHAIN = 2,      /* ops applied, in order, to the store's value */
    WRITEMAP_UNREADABLE = 3, /* reading it is accessed_unreadable */
};

struct writemap_op {
    int type;
    uint8_t *param;
    int param_len;
};

struct writemap_entry {
    RB_ENTRY(writemap_entry) link;
    uint8_t *key;
    int key_len;
    enum writemap_state state;
    int present;
    uint8_t *value;
    int value_len;
    struct writemap_op *ops;
    int op_count;
    int op_cap;
};

struct writemap;

/* Aborts on out-of-memory, like every function here that allocates. */
struct writemap *writemap_create(void);
void writemap_destroy(struct writemap *wm);
void writemap_reset(struct writemap *wm);
int writemap_is_empty(const struct writemap *wm);

/* Writes. Keys and values are copied. */
void writemap_set(struct writemap *wm, const uint8_t *key, int key_len, const uint8_t *value,
                  int value_len);
void writemap_clear(struct writemap *wm, const uint8_t *key, int key_len);
void writemap_clear_range(struct writemap *wm, const uint8_t *begin, int begin_len,
                          const uint8_t *end, int end_len);
void writemap_atomic(struct writemap *wm, const uint8_t *key, int key_len, int op,
                     const uint8_t *param, int param_len);
void writemap_set_unreadable(struct writemap *wm, const uint8_t *key, int key_len);

/* Lookups. Entries are borrowed and valid until the next write or reset. */
struct writemap_entry *writemap_find(const struct writemap *wm, const uint8_t *key, int key_len);
int writemap_in_cleared_range(const struct writemap *wm, const uint8_t *key, int key_len);
/* First entry >= key (> key when !inclusive), or NULL. */
struct writemap_entry *writemap_seek_ge(const struct writemap *wm, const uint8_t *key,
                                        int key_len, int inclusive);
/* Last entry <= key (< key when !inclusive), or NULL. */
struct writemap_entry *writemap_seek_le(const struct writemap *wm, const uint8_t *key,
                                        int key_len, int inclusive);
struct writemap_entry *writemap_next(struct writemap_entry *e);
struct writemap_entry *writemap_prev(struct writemap_entry *e);

/* The value of a CHAIN entry over the store's value (base); the result is malloc'd and
 * owned by the caller. */
void writemap_resolve_chain(const struct writemap_entry *e, int base_present,
                            const uint8_t *base, int base_len, uint8_t **out, int *out_len,
                            int *out_present);

/* Compares byte strings the way the store orders keys. */
int writemap_compare_keys(const uint8_t *a, int a_len, const uint8_t *b, int b_len);

#endif
