/* mutation.h -- FoundationDB's atomic operations, applied to a value. */
#ifndef KV_MUTATION_H
#define KV_MUTATION_H

#include <stddef.h>
#include <stdint.h>

#include "kv/fdb_api.h"

/* Whether `op` is an atomic mutation type the engine implements (versionstamp ops
 * included). */
int mutation_is_valid_atomic(int op);

/* Applies atomic `op` with `param` to the existing value (`present` says whether the key
 * exists). On return *out and *out_len hold the new value, malloc'd and owned by the caller,
 * and *out_present whether the key exists afterwards (COMPARE_AND_CLEAR can clear it).
 * Versionstamp operations are not handled here. Aborts on out-of-memory. */
void mutation_apply(int op, int present, const uint8_t *value, int value_len,
                    const uint8_t *param, int param_len, uint8_t **out, int *out_len,
                    int *out_present);

/* Reads the 4-byte little-endian versionstamp offset suffix of a versionstamped key or
 * value; returns 0 and the offset, or FDB_ERR_CLIENT_INVALID_OPERATION when the offset does
 * not leave room for the 10-byte stamp. *body_len is the length without the suffix. */
fdb_error_t mutation_versionstamp_offset(const uint8_t *bytes, int len, int *offset,
                                         int *body_len);

#endif
