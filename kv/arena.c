/* arena.c -- a bump allocator over a list of chunks. */
#include "kv/arena.h"

#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(8) uint8_t data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            abort();
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

uint8_t *arena_dup(struct arena *a, const void *p, size_t n)
{
    uint8_t *d = arena_alloc(a, n ? n : 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void arena_move(struct arena *to, struct arena *from)
{
    struct arena_chunk *c = from->head;
    while (c) {
        struct arena_chunk *next = c->next;
        c->next = to->head;
        to->head = c;
        c = next;
    }
    to->total += from->total;
    from->head = NULL;
    from->total = 0;
}
