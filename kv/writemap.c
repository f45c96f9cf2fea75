/* writemap.c -- a transaction's uncommitted writes, ordered by key (see writemap.h).
 *
 * Invariants:
 * (1) cleared intervals are disjoint, non-empty and not adjacent (they are merged);
 * (2) a clear_range removes every entry inside it, so an entry inside a cleared interval was
 *     written after that clear and takes precedence over it. */
#include "kv/writemap.h"

#include <stdlib.h>
#include <string.h>

#include "kv/mutation.h"

struct cleared {
    RB_ENTRY(cleared) link;
    uint8_t *begin, *end;
    int begin_len, end_len;
};

RB_HEAD(entry_tree, writemap_entry);
RB_HEAD(cleared_tree, cleared);

struct writemap {
    struct entry_tree entries;
    struct cleared_tree cleared;
    int count;
};

int writemap_compare_keys(const uint8_t *a, int a_len, const uint8_t *b, int b_len)
{
    int n = a_len < b_len ? a_len : b_len;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    return c ? c : (a_len > b_len) - (a_len < b_len);
}

static int entry_cmp(struct writemap_entry *a, struct writemap_entry *b)
{
    return writemap_compare_keys(a->key, a->key_len, b->key, b->key_len);
}

static int cleared_cmp(struct cleared *a, struct cleared *b)
{
    return writemap_compare_keys(a->begin, a->begin_len, b->begin, b->begin_len);
}

RB_GENERATE_STATIC(entry_tree, writemap_entry, link, entry_cmp)
RB_GENERATE_STATIC(cleared_tree, cleared, link, cleared_cmp)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static uint8_t *dup_bytes(const uint8_t *p, int n)
{
    uint8_t *d = xmalloc((size_t)n);
    if (n)
        memcpy(d, p, (size_t)n);
    return d;
}

struct writemap *writemap_create(void)
{
    struct writemap *wm = xmalloc(sizeof(*wm));
    RB_INIT(&wm->entries);
    RB_INIT(&wm->cleared);
    wm->count = 0;
    return wm;
}

static void entry_free_contents(struct writemap_entry *e)
{
    free(e->value);
    e->value = NULL;
    for (int i = 0; i < e->op_count; i++)
        free(e->ops[i].param);
    free(e->ops);
    e->ops = NULL;
    e->op_count = e->op_cap = 0;
}

static void entry_free(struct writemap_entry *e)
{
    entry_free_contents(e);
    free(e->key);
    free(e);
}

void writemap_reset(struct writemap *wm)
{
    struct writemap_entry *e, *next_e;
    RB_FOREACH_SAFE(e, entry_tree, &wm->entries, next_e)
    {
        RB_REMOVE(entry_tree, &wm->entries, e);
        entry_free(e);
    }
    struct cleared *c, *next_c;
    RB_FOREACH_SAFE(c, cleared_tree, &wm->cleared, next_c)
    {
        RB_REMOVE(cleared_tree, &wm->cleared, c);
        free(c->begin);
        free(c->end);
        free(c);
    }
    wm->count = 0;
}

void writemap_destroy(struct writemap *wm)
{
    if (!wm)
        return;
    writemap_reset(wm);
    free(wm);
}

int writemap_is_empty(const struct writemap *wm)
{
    return RB_EMPTY(&wm->entries) && RB_EMPTY(&wm->cleared);
}

struct writemap_entry *writemap_find(const struct writemap *wm, const uint8_t *key, int key_len)
{
    struct writemap_entry probe = {.key = (uint8_t *)key, .key_len = key_len};
    return RB_FIND(entry_tree, (struct entry_tree *)&wm->entries, &probe);
}

struct writemap_entry *writemap_seek_ge(const struct writemap *wm, const uint8_t *key,
                                        int key_len, int inclusive)
{
    struct writemap_entry probe = {.key = (uint8_t *)key, .key_len = key_len};
    struct writemap_entry *e = RB_NFIND(entry_tree, (struct entry_tree *)&wm->entries, &probe);
    if (e && !inclusive && entry_cmp(e, &probe) == 0)
        e = RB_NEXT(entry_tree, NULL, e);
    return e;
}

struct writemap_entry *writemap_seek_le(const struct writemap *wm, const uint8_t *key,
                                        int key_len, int inclusive)
{
    struct writemap_entry probe = {.key = (uint8_t *)key, .key_len = key_len};
    struct writemap_entry *e = RB_NFIND(entry_tree, (struct entry_tree *)&wm->entries, &probe);
    if (e && inclusive && entry_cmp(e, &probe) == 0)
        return e;
    return e ? RB_PREV(entry_tree, NULL, e) : RB_MAX(entry_tree, (struct entry_tree *)&wm->entries);
}

struct writemap_entry *writemap_next(struct writemap_entry *e)
{
    return RB_NEXT(entry_tree, NULL, e);
}

struct writemap_entry *writemap_prev(struct writemap_entry *e)
{
    return RB_PREV(entry_tree, NULL, e);
}

/* The cleared interval with the greatest begin <= key, or NULL. */
static struct cleared *cleared_floor(const struct writemap *wm, const uint8_t *key, int key_len)
{
    struct cleared probe = {.begin = (uint8_t *)key, .begin_len = key_len};
    struct cleared_tree *t = (struct cleared_tree *)&wm->cleared;
    struct cleared *c = RB_NFIND(cleared_tree, t, &probe);
    if (c && cleared_cmp(c, &probe) == 0)
        return c;
    return c ? RB_PREV(cleared_tree, NULL, c) : RB_MAX(cleared_tree, t);
}

int writemap_in_cleared_range(const struct writemap *wm, const uint8_t *key, int key_len)
{
    struct cleared *c = cleared_floor(wm, key, key_len);
    return c && writemap_compare_keys(key, key_len, c->end, c->end_len) < 0;
}

/* The entry for key, created (empty, state KNOWN absent) if missing. */
static struct writemap_entry *entry_get(struct writemap *wm, const uint8_t *key, int key_len)
{
    struct writemap_entry *e = writemap_find(wm, key, key_len);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    e->key = dup_bytes(key, key_len);
    e->key_len = key_len;
    e->state = WRITEMAP_KNOWN;
    RB_INSERT(entry_tree, &wm->entries, e);
    wm->count++;
    return e;
}

void writemap_set(struct writemap *wm, const uint8_t *key, int key_len, const uint8_t *value,
                  int value_len)
{
    struct writemap_entry *e = entry_get(wm, key, key_len);
    entry_free_contents(e);
    e->state = WRITEMAP_KNOWN;
    e->present = 1;
    e->value = dup_bytes(value, value_len);
    e->value_len = value_len;
}

void writemap_clear(struct writemap *wm, const uint8_t *key, int key_len)
{
    struct writemap_entry *e = entry_get(wm, key, key_len);
    entry_free_contents(e);
    e->state = WRITEMAP_KNOWN;
    e->present = 0;
    e->value_len = 0;
}

void writemap_set_unreadable(struct writemap *wm, const uint8_t *key, int key_len)
{
    struct writemap_entry *e = entry_get(wm, key, key_len);
    entry_free_contents(e);
    e->state = WRITEMAP_UNREADABLE;
    e->present = 0;
}

void writemap_clear_range(struct writemap *wm, const uint8_t *begin, int begin_len,
                          const uint8_t *end, int end_len)
{
    if (writemap_compare_keys(begin, begin_len, end, end_len) >= 0)
        return;
    /* (2): drop entries inside [begin, end). */
    struct writemap_entry *e = writemap_seek_ge(wm, begin, begin_len, 1);
    while (e && writemap_compare_keys(e->key, e->key_len, end, end_len) < 0) {
        struct writemap_entry *next = writemap_next(e);
        RB_REMOVE(entry_tree, &wm->entries, e);
        entry_free(e);
        wm->count--;
        e = next;
    }
    /* (1): merge with every interval that overlaps or touches [begin, end). */
    const uint8_t *nb = begin, *ne = end;
    int nbl = begin_len, nel = end_len;
    uint8_t *own_begin = NULL, *own_end = NULL;
    struct cleared *c = cleared_floor(wm, begin, begin_len);
    if (!c || writemap_compare_keys(c->end, c->end_len, begin, begin_len) < 0)
        c = c ? RB_NEXT(cleared_tree, NULL, c) : RB_MIN(cleared_tree, &wm->cleared);
    while (c && writemap_compare_keys(c->begin, c->begin_len, ne, nel) <= 0) {
        struct cleared *next = RB_NEXT(cleared_tree, NULL, c);
        RB_REMOVE(cleared_tree, &wm->cleared, c);
        if (writemap_compare_keys(c->begin, c->begin_len, nb, nbl) < 0) {
            free(own_begin);
            own_begin = c->begin;
            nb = c->begin;
            nbl = c->begin_len;
            c->begin = NULL;
        }
        if (writemap_compare_keys(c->end, c->end_len, ne, nel) > 0) {
            free(own_end);
            own_end = c->end;
            ne = c->end;
            nel = c->end_len;
            c->end = NULL;
        }
        free(c->begin);
        free(c->end);
        free(c);
        c = next;
    }
    struct cleared *n = xmalloc(sizeof(*n));
    n->begin = own_begin ? own_begin : dup_bytes(nb, nbl);
    n->begin_len = nbl;
    n->end = own_end ? own_end : dup_bytes(ne, nel);
    n->end_len = nel;
    RB_INSERT(cleared_tree, &wm->cleared, n);
}

void writemap_atomic(struct writemap *wm, const uint8_t *key, int key_len, int op,
                     const uint8_t *param, int param_len)
{
    struct writemap_entry *e = writemap_find(wm, key, key_len);
    int base_known = e ? e->state == WRITEMAP_KNOWN : writemap_in_cleared_range(wm, key, key_len);
    if (!e)
        e = entry_get(wm, key, key_len);
    if (e->state == WRITEMAP_UNREADABLE)
        return; /* stays unreadable until set or cleared */
    if (base_known) {
        uint8_t *out;
        int out_len, out_present;
        mutation_apply(op, e->present, e->value, e->value_len, param, param_len, &out, &out_len,
                       &out_present);
        entry_free_contents(e);
        e->state = WRITEMAP_KNOWN;
        e->present = out_present;
        e->value = out;
        e->value_len = out_len;
        return;
    }
    if (e->state != WRITEMAP_CHAIN) {
        entry_free_contents(e);
        e->state = WRITEMAP_CHAIN;
    }
    if (e->op_count == e->op_cap) {
        e->op_cap = e->op_cap ? e->op_cap * 2 : 2;
        e->ops = realloc(e->ops, (size_t)e->op_cap * sizeof(*e->ops));
        if (!e->ops)
            abort();
    }
    e->ops[e->op_count++] = (struct writemap_op){op, dup_bytes(param, param_len), param_len};
}

void writemap_resolve_chain(const struct writemap_entry *e, int base_present,
                            const uint8_t *base, int base_len, uint8_t **out, int *out_len,
                            int *out_present)
{
    uint8_t *cur = dup_bytes(base, base_present ? base_len : 0);
    int cur_len = base_present ? base_len : 0, cur_present = base_present;
    for (int i = 0; i < e->op_count; i++) {
        uint8_t *next;
        int next_len, next_present;
        mutation_apply(e->ops[i].type, cur_present, cur, cur_len, e->ops[i].param,
                       e->ops[i].param_len, &next, &next_len, &next_present);
        free(cur);
        cur = next;
        cur_len = next_len;
        cur_present = next_present;
    }
    *out = cur;
    *out_len = cur_len;
    *out_present = cur_present;
}
