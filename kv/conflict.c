/* conflict.c -- a step function over the key space: key -> last write version.
 *
 * Each boundary b with version v says every key in [b, next boundary) was last written at
 * v (0 = not within the window). Invariants:
 * (1) the empty key is always a boundary, so every key has a segment;
 * (2) versions only grow, so recording [b, e) at v overwrites whatever was inside. */
#include "kv/conflict.h"

#include <stdlib.h>
#include <string.h>

#include "kv/writemap.h" /* tree.h and writemap_compare_keys */

struct boundary {
    RB_ENTRY(boundary) link;
    uint8_t *key;
    int key_len;
    int64_t version;
};

RB_HEAD(boundary_tree, boundary);

struct conflict {
    struct boundary_tree tree;
    int count;
};

static int boundary_cmp(struct boundary *a, struct boundary *b)
{
    return writemap_compare_keys(a->key, a->key_len, b->key, b->key_len);
}

RB_GENERATE_STATIC(boundary_tree, boundary, link, boundary_cmp)

static struct boundary *boundary_new(const uint8_t *key, int key_len, int64_t version)
{
    struct boundary *b = malloc(sizeof(*b));
    if (!b || !(b->key = malloc(key_len ? (size_t)key_len : 1)))
        abort();
    if (key_len)
        memcpy(b->key, key, (size_t)key_len);
    b->key_len = key_len;
    b->version = version;
    return b;
}

static void boundary_free(struct boundary *b)
{
    free(b->key);
    free(b);
}

struct conflict *conflict_create(void)
{
    struct conflict *c = malloc(sizeof(*c));
    if (!c)
        abort();
    RB_INIT(&c->tree);
    RB_INSERT(boundary_tree, &c->tree, boundary_new(NULL, 0, 0)); /* (1) */
    c->count = 1;
    return c;
}

void conflict_destroy(struct conflict *c)
{
    if (!c)
        return;
    struct boundary *b, *next;
    RB_FOREACH_SAFE(b, boundary_tree, &c->tree, next)
    {
        RB_REMOVE(boundary_tree, &c->tree, b);
        boundary_free(b);
    }
    free(c);
}

/* The boundary whose segment contains key (greatest boundary <= key); never NULL by (1). */
static struct boundary *segment_of(const struct conflict *c, const uint8_t *key, int key_len)
{
    struct boundary probe = {.key = (uint8_t *)key, .key_len = key_len};
    struct boundary_tree *t = (struct boundary_tree *)&c->tree;
    struct boundary *b = RB_NFIND(boundary_tree, t, &probe);
    if (b && boundary_cmp(b, &probe) == 0)
        return b;
    return b ? RB_PREV(boundary_tree, NULL, b) : RB_MAX(boundary_tree, t);
}

int conflict_check(const struct conflict *c, const uint8_t *begin, int begin_len,
                   const uint8_t *end, int end_len, int64_t read_version)
{
    if (writemap_compare_keys(begin, begin_len, end, end_len) >= 0)
        return 0;
    for (struct boundary *b = segment_of(c, begin, begin_len);
         b && writemap_compare_keys(b->key, b->key_len, end, end_len) < 0;
         b = RB_NEXT(boundary_tree, NULL, b))
        if (b->version > read_version)
            return 1;
    return 0;
}

void conflict_add_write(struct conflict *c, const uint8_t *begin, int begin_len,
                        const uint8_t *end, int end_len, int64_t version)
{
    if (writemap_compare_keys(begin, begin_len, end, end_len) >= 0)
        return;
    /* Keep the segment that starts at `end` as it was. */
    struct boundary *at_end = segment_of(c, end, end_len);
    if (boundary_cmp(at_end, &(struct boundary){.key = (uint8_t *)end, .key_len = end_len}) != 0) {
        RB_INSERT(boundary_tree, &c->tree, boundary_new(end, end_len, at_end->version));
        c->count++;
    }
    /* (2): drop the boundaries inside (begin, end), then set [begin, ...) to version. */
    struct boundary *b = segment_of(c, begin, begin_len);
    if (writemap_compare_keys(b->key, b->key_len, begin, begin_len) == 0) {
        b->version = version;
    } else {
        b = boundary_new(begin, begin_len, version);
        RB_INSERT(boundary_tree, &c->tree, b);
        c->count++;
    }
    struct boundary *next = RB_NEXT(boundary_tree, NULL, b);
    while (next && writemap_compare_keys(next->key, next->key_len, end, end_len) < 0) {
        struct boundary *after = RB_NEXT(boundary_tree, NULL, next);
        RB_REMOVE(boundary_tree, &c->tree, next);
        boundary_free(next);
        c->count--;
        next = after;
    }
}

void conflict_prune(struct conflict *c, int64_t horizon)
{
    struct boundary *prev = NULL, *b, *next;
    RB_FOREACH_SAFE(b, boundary_tree, &c->tree, next)
    {
        if (b->version <= horizon)
            b->version = 0;
        if (prev && prev->version == 0 && b->version == 0) {
            RB_REMOVE(boundary_tree, &c->tree, b);
            boundary_free(b);
            c->count--;
            continue;
        }
        prev = b;
    }
}

int conflict_size(const struct conflict *c)
{
    return c->count;
}
