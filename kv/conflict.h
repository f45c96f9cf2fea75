/* conflict.h -- the embedded engine's resolver: which key ranges were written at which
 * commit version, for the last few seconds, to detect read-write conflicts. */
#ifndef KV_CONFLICT_H
#define KV_CONFLICT_H

#include <stdint.h>

struct conflict;

struct conflict *conflict_create(void); /* aborts on out-of-memory */
void conflict_destroy(struct conflict *c);

/* Whether any key in [begin, end) was written at a version > read_version. */
int conflict_check(const struct conflict *c, const uint8_t *begin, int begin_len,
                   const uint8_t *end, int end_len, int64_t read_version);

/* Records that [begin, end) was written at `version`, which is >= every version recorded
 * before. */
void conflict_add_write(struct conflict *c, const uint8_t *begin, int begin_len,
                        const uint8_t *end, int end_len, int64_t version);

/* Forgets writes at versions <= horizon; no transaction with a read version below the
 * horizon may be checked afterwards (the engine refuses them as too old). */
void conflict_prune(struct conflict *c, int64_t horizon);

/* Number of boundaries held (for tests and statistics). */
int conflict_size(const struct conflict *c);

#endif
