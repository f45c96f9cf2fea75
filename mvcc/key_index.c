/* key_index.c -- the live keys of the store in memory, to count ranges (see key_index.h).
 *
 * Invariants:
 * (1) every node's `live_below` is the number of live nodes in its subtree (itself included);
 * (2) the treap is a search tree by key and a max-heap by priority (random), so its depth
 *     is O(log n) expected;
 * (3) READY: the live nodes are exactly the store's live keys at revision `rev`; there are
 *     no dead nodes (they exist only while LOADING, so that a key the tail deleted is not
 *     added back by a loader chunk read before the delete);
 * (4) the change ring holds every change of the live count with a revision above
 *     `complete_from`, in revision order: the count at a revision R in [complete_from, rev]
 *     is the count at `rev` minus the changes after R. */
#include "mvcc/key_index.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/deadline.h"

#define CHANGES_MAX 8192 /* remembered count changes: about a second of heavy writes */

struct node {
    struct node *left, *right;
    uint32_t priority;
    uint32_t live_below; /* (1) */
    uint32_t live;
    uint32_t len;
    uint8_t key[];
};

struct change {
    int64_t rev;
    int delta; /* +1 created, -1 deleted */
    uint32_t len;
    uint8_t *key;
};

struct key_index {
    pthread_mutex_t mu;
    pthread_cond_t advanced; /* rev moved or the index became READY */
    struct node *root;
    uint64_t random;
    int64_t rev; /* the tail applied every change through this revision */
    int ready;   /* READY, else LOADING */
    int loader_done;
    int64_t loader_rev;  /* the newest revision a loader chunk was read at */
    struct change *ring; /* (4), CHANGES_MAX entries; ring_next is the oldest when full */
    size_t ring_next, ring_n;
    int64_t complete_from;
};

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (al > bl) - (al < bl);
}

static uint32_t live_of(const struct node *t)
{
    return t ? t->live_below : 0;
}

static void update(struct node *t)
{
    t->live_below = t->live + live_of(t->left) + live_of(t->right);
}

static struct node *node_new(struct key_index *ix, const uint8_t *key, size_t len, int live)
{
    struct node *t = malloc(sizeof(*t) + len);
    if (!t)
        abort();
    ix->random ^= ix->random << 13; /* xorshift64 */
    ix->random ^= ix->random >> 7;
    ix->random ^= ix->random << 17;
    t->left = t->right = NULL;
    t->priority = (uint32_t)(ix->random >> 32);
    t->live = (uint32_t)live;
    t->live_below = t->live;
    t->len = (uint32_t)len;
    memcpy(t->key, key, len);
    return t;
}

static struct node *rotate_right(struct node *t)
{
    struct node *l = t->left;
    t->left = l->right;
    update(t);
    l->right = t;
    update(l);
    return l;
}

static struct node *rotate_left(struct node *t)
{
    struct node *r = t->right;
    t->right = r->left;
    update(t);
    r->left = t;
    update(r);
    return r;
}

enum set_mode {
    SET_LOADED, /* the loader saw the key live: add it unless the tail already knows it */
    SET_LIVE,   /* the tail saw a PUT */
    SET_DEAD,   /* the tail saw a DELETE while LOADING: remember it (3) */
};

/* Sets a key in subtree t; *delta gets the change in live keys. Returns the new root. */
static struct node *node_set(struct key_index *ix, struct node *t, const uint8_t *key, size_t len,
                             enum set_mode mode, int *delta)
{
    if (!t) {
        t = node_new(ix, key, len, mode != SET_DEAD);
        *delta = (int)t->live;
        return t;
    }
    int c = key_cmp(key, len, t->key, t->len);
    if (c == 0) {
        if (mode != SET_LOADED) {
            uint32_t live = mode == SET_LIVE;
            *delta = (int)live - (int)t->live;
            t->live = live;
        }
    } else if (c < 0) {
        t->left = node_set(ix, t->left, key, len, mode, delta);
        if (t->left->priority > t->priority)
            return rotate_right(t);
    } else {
        t->right = node_set(ix, t->right, key, len, mode, delta);
        if (t->right->priority > t->priority)
            return rotate_left(t);
    }
    update(t);
    return t;
}

static struct node *merge(struct node *a, struct node *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (a->priority > b->priority) {
        a->right = merge(a->right, b);
        update(a);
        return a;
    }
    b->left = merge(a, b->left);
    update(b);
    return b;
}

/* Removes a key from subtree t (READY: a DELETE); *delta gets the change in live keys. */
static struct node *node_remove(struct node *t, const uint8_t *key, size_t len, int *delta)
{
    if (!t)
        return NULL;
    int c = key_cmp(key, len, t->key, t->len);
    if (c == 0) {
        struct node *m = merge(t->left, t->right);
        *delta = -(int)t->live;
        free(t);
        return m;
    }
    if (c < 0)
        t->left = node_remove(t->left, key, len, delta);
    else
        t->right = node_remove(t->right, key, len, delta);
    update(t);
    return t;
}

/* Drops the dead nodes of subtree t (on becoming READY, (3)). */
static struct node *sweep(struct node *t)
{
    if (!t)
        return NULL;
    t->left = sweep(t->left);
    t->right = sweep(t->right);
    if (!t->live) {
        struct node *m = merge(t->left, t->right);
        free(t);
        return m;
    }
    update(t);
    return t;
}

static void free_tree(struct node *t)
{
    while (t) {
        free_tree(t->left);
        struct node *r = t->right;
        free(t);
        t = r;
    }
}

/* The number of live keys below key (exclusive). */
static int64_t rank(const struct node *t, const uint8_t *key, size_t len)
{
    int64_t r = 0;
    while (t) {
        if (key_cmp(key, len, t->key, t->len) <= 0) {
            t = t->left;
        } else {
            r += live_of(t->left) + t->live;
            t = t->right;
        }
    }
    return r;
}

static int range_open_ended(const ProtobufCBinaryData *range_end)
{
    return range_end->len == 1 && range_end->data[0] == 0;
}

static int in_range(const uint8_t *k, size_t len, const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *range_end)
{
    if (key_cmp(k, len, key->data, key->len) < 0)
        return 0;
    return range_open_ended(range_end) || key_cmp(k, len, range_end->data, range_end->len) < 0;
}

static void ring_clear(struct key_index *ix)
{
    for (size_t i = 0; i < CHANGES_MAX; i++) {
        free(ix->ring[i].key);
        ix->ring[i].key = NULL;
    }
    ix->ring_next = ix->ring_n = 0;
    ix->complete_from = ix->rev;
}

static void ring_push(struct key_index *ix, int64_t rev, int delta, const uint8_t *key, size_t len)
{
    struct change *c = &ix->ring[ix->ring_next];
    if (ix->ring_n == CHANGES_MAX) { /* forget the oldest (4) */
        if (c->rev > ix->complete_from)
            ix->complete_from = c->rev;
        free(c->key);
    } else {
        ix->ring_n++;
    }
    c->rev = rev;
    c->delta = delta;
    c->len = (uint32_t)len;
    c->key = malloc(len ? len : 1);
    if (!c->key)
        abort();
    memcpy(c->key, key, len);
    ix->ring_next = (ix->ring_next + 1) % CHANGES_MAX;
}

/* LOADING -> READY once the loader is done and the tail has passed its chunks (3). */
static void maybe_ready(struct key_index *ix)
{
    if (ix->ready || !ix->loader_done || ix->rev < ix->loader_rev)
        return;
    ix->root = sweep(ix->root);
    ix->ready = 1;
    ring_clear(ix);
}

struct key_index *key_index_create(void)
{
    struct key_index *ix = calloc(1, sizeof(*ix));
    if (!ix)
        abort();
    ix->ring = calloc(CHANGES_MAX, sizeof(*ix->ring));
    if (!ix->ring)
        abort();
    pthread_mutex_init(&ix->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ix->advanced, &attr);
    pthread_condattr_destroy(&attr);
    ix->random = 0x9e3779b97f4a7c15ull;
    return ix;
}

void key_index_destroy(struct key_index *ix)
{
    if (!ix)
        return;
    free_tree(ix->root);
    ring_clear(ix);
    free(ix->ring);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->advanced);
    free(ix);
}

void key_index_reset(struct key_index *ix, int64_t from_rev)
{
    pthread_mutex_lock(&ix->mu);
    free_tree(ix->root);
    ix->root = NULL;
    ix->ready = ix->loader_done = 0;
    ix->loader_rev = 0;
    ix->rev = from_rev;
    ring_clear(ix);
    pthread_mutex_unlock(&ix->mu);
}

void key_index_load(struct key_index *ix, const ProtobufCBinaryData *keys, size_t n, int64_t at_rev,
                    int last)
{
    pthread_mutex_lock(&ix->mu);
    if (!ix->ready && !ix->loader_done) {
        int delta;
        for (size_t i = 0; i < n; i++)
            ix->root = node_set(ix, ix->root, keys[i].data, keys[i].len, SET_LOADED, &delta);
        if (at_rev > ix->loader_rev)
            ix->loader_rev = at_rev;
        ix->loader_done = last;
        maybe_ready(ix);
        if (ix->ready)
            pthread_cond_broadcast(&ix->advanced);
    }
    pthread_mutex_unlock(&ix->mu);
}

void key_index_apply(struct key_index *ix, Mvccpb__Event *const *events, size_t n,
                     int64_t through_rev)
{
    pthread_mutex_lock(&ix->mu);
    for (size_t i = 0; i < n; i++) {
        const Mvccpb__KeyValue *kv = events[i]->kv;
        if (!kv)
            continue; /* never written by mvcc */
        int delta = 0;
        if (events[i]->type != MVCCPB__EVENT__EVENT_TYPE__DELETE)
            ix->root = node_set(ix, ix->root, kv->key.data, kv->key.len, SET_LIVE, &delta);
        else if (ix->ready)
            ix->root = node_remove(ix->root, kv->key.data, kv->key.len, &delta);
        else
            ix->root = node_set(ix, ix->root, kv->key.data, kv->key.len, SET_DEAD, &delta);
        if (delta && ix->ready)
            ring_push(ix, kv->mod_revision, delta, kv->key.data, kv->key.len);
    }
    if (through_rev > ix->rev)
        ix->rev = through_rev;
    maybe_ready(ix);
    pthread_cond_broadcast(&ix->advanced);
    pthread_mutex_unlock(&ix->mu);
}

int key_index_count(struct key_index *ix, const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *range_end, int64_t rev, int wait_ms, int64_t *count)
{
    struct timespec deadline = kv_deadline_ms(CLOCK_MONOTONIC, wait_ms);
    pthread_mutex_lock(&ix->mu);
    while (ix->ready && ix->rev < rev &&
           pthread_cond_timedwait(&ix->advanced, &ix->mu, &deadline) == 0)
        ;
    int rc = -1;
    if (ix->ready && ix->rev >= rev && rev >= ix->complete_from) {
        int64_t n = 0;
        if (range_open_ended(range_end))
            n = live_of(ix->root) - rank(ix->root, key->data, key->len);
        else if (key_cmp(range_end->data, range_end->len, key->data, key->len) > 0)
            n = rank(ix->root, range_end->data, range_end->len) -
                rank(ix->root, key->data, key->len);
        for (size_t i = 0; i < ix->ring_n; i++) { /* undo the changes after rev (4) */
            const struct change *c = &ix->ring[(ix->ring_next + CHANGES_MAX - 1 - i) % CHANGES_MAX];
            if (c->rev <= rev)
                break;
            if (in_range(c->key, c->len, key, range_end))
                n -= c->delta;
        }
        *count = n;
        rc = 0;
    }
    pthread_mutex_unlock(&ix->mu);
    return rc;
}
