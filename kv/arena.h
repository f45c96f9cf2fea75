/* arena.h -- a bump allocator for a transaction's keys, values and ranges, freed at once. */
#ifndef KV_ARENA_H
#define KV_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head;
    size_t total; /* bytes handed out, for statistics */
};

/* Returns n bytes aligned to 8, valid until arena_free(). Aborts on out-of-memory. */
void *arena_alloc(struct arena *a, size_t n);
/* A copy of p[0..n) in the arena. */
uint8_t *arena_dup(struct arena *a, const void *p, size_t n);
void arena_free(struct arena *a);
/* Moves every allocation of `from` into `to`, leaving `from` empty. */
void arena_move(struct arena *to, struct arena *from);

#endif
