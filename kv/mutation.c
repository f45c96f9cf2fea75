/* mutation.c -- FoundationDB's atomic operations (API version 710 semantics: MIN and AND act
 * as MIN_V2 and AND_V2, so an absent value takes the parameter). Integers are little-endian
 * and unsigned for MAX/MIN, two's complement for ADD; the existing value is zero-extended or
 * truncated to the parameter's length. */
#include "kv/mutation.h"

#include <stdlib.h>
#include <string.h>

#define MUTATION_TYPE_MIN_V2 18
#define MUTATION_TYPE_AND_V2 19

int mutation_is_valid_atomic(int op)
{
    switch (op) {
    case FDB_MUTATION_TYPE_ADD:
    case FDB_MUTATION_TYPE_BIT_AND:
    case FDB_MUTATION_TYPE_BIT_OR:
    case FDB_MUTATION_TYPE_BIT_XOR:
    case FDB_MUTATION_TYPE_APPEND_IF_FITS:
    case FDB_MUTATION_TYPE_MAX:
    case FDB_MUTATION_TYPE_MIN:
    case FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_KEY:
    case FDB_MUTATION_TYPE_SET_VERSIONSTAMPED_VALUE:
    case FDB_MUTATION_TYPE_BYTE_MIN:
    case FDB_MUTATION_TYPE_BYTE_MAX:
    case MUTATION_TYPE_MIN_V2:
    case MUTATION_TYPE_AND_V2:
    case FDB_MUTATION_TYPE_COMPARE_AND_CLEAR:
        return 1;
    default:
        return 0;
    }
}

static uint8_t *dup_bytes(const uint8_t *p, int n)
{
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    if (!d)
        abort();
    if (n > 0)
        memcpy(d, p, (size_t)n);
    return d;
}

/* The existing value zero-extended or truncated to n bytes. */
static uint8_t *resized(const uint8_t *value, int value_len, int n)
{
    uint8_t *d = calloc(1, n > 0 ? (size_t)n : 1);
    if (!d)
        abort();
    int keep = value_len < n ? value_len : n;
    if (keep > 0)
        memcpy(d, value, (size_t)keep);
    return d;
}

/* Compares little-endian unsigned integers of equal length n. */
static int compare_le(const uint8_t *a, const uint8_t *b, int n)
{
    for (int i = n - 1; i >= 0; i--)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int compare_bytes(const uint8_t *a, int an, const uint8_t *b, int bn)
{
    int c = memcmp(a, b, (size_t)(an < bn ? an : bn));
    return c ? c : (an > bn) - (an < bn);
}

void mutation_apply(int op, int present, const uint8_t *value, int value_len,
                    const uint8_t *param, int param_len, uint8_t **out, int *out_len,
                    int *out_present)
{
    uint8_t *r;
    *out_present = 1;
    *out_len = param_len;
    if (op == FDB_MUTATION_TYPE_MIN)
        op = MUTATION_TYPE_MIN_V2;
    if (op == FDB_MUTATION_TYPE_BIT_AND)
        op = MUTATION_TYPE_AND_V2;
    if (!present) {
        value = NULL;
        value_len = 0;
    }
    switch (op) {
    case FDB_MUTATION_TYPE_ADD: {
        r = resized(value, value_len, param_len);
        unsigned carry = 0;
        for (int i = 0; i < param_len; i++) {
            unsigned s = (unsigned)r[i] + param[i] + carry;
            r[i] = (uint8_t)s;
            carry = s >> 8;
        }
        break;
    }
    case MUTATION_TYPE_AND_V2:
        if (!present) {
            r = dup_bytes(param, param_len);
            break;
        }
        r = resized(value, value_len, param_len);
        for (int i = 0; i < param_len; i++)
            r[i] &= param[i];
        break;
    case FDB_MUTATION_TYPE_BIT_OR:
    case FDB_MUTATION_TYPE_BIT_XOR:
        r = resized(value, value_len, param_len);
        for (int i = 0; i < param_len; i++)
            r[i] = op == FDB_MUTATION_TYPE_BIT_OR ? r[i] | param[i] : r[i] ^ param[i];
        break;
    case FDB_MUTATION_TYPE_APPEND_IF_FITS:
        if (value_len + param_len > FDB_VALUE_SIZE_LIMIT) {
            r = dup_bytes(value, value_len);
            *out_len = value_len;
            break;
        }
        r = malloc((size_t)(value_len + param_len) + 1);
        if (!r)
            abort();
        if (value_len)
            memcpy(r, value, (size_t)value_len);
        if (param_len)
            memcpy(r + value_len, param, (size_t)param_len);
        *out_len = value_len + param_len;
        break;
    case FDB_MUTATION_TYPE_MAX:
    case MUTATION_TYPE_MIN_V2:
        r = resized(value, value_len, param_len);
        if (!present) {
            memcpy(r, param, (size_t)param_len);
            break;
        }
        {
            int c = compare_le(param, r, param_len);
            if ((op == FDB_MUTATION_TYPE_MAX && c > 0) || (op == MUTATION_TYPE_MIN_V2 && c < 0))
                memcpy(r, param, (size_t)param_len);
        }
        break;
    case FDB_MUTATION_TYPE_BYTE_MIN:
    case FDB_MUTATION_TYPE_BYTE_MAX: {
        int c = present ? compare_bytes(param, param_len, value, value_len) : 0;
        int take_param = !present || (op == FDB_MUTATION_TYPE_BYTE_MIN ? c < 0 : c > 0);
        r = take_param ? dup_bytes(param, param_len) : dup_bytes(value, value_len);
        *out_len = take_param ? param_len : value_len;
        break;
    }
    case FDB_MUTATION_TYPE_COMPARE_AND_CLEAR:
        if (present && compare_bytes(param, param_len, value, value_len) == 0) {
            r = dup_bytes(NULL, 0);
            *out_len = 0;
            *out_present = 0;
        } else {
            r = dup_bytes(value, value_len);
            *out_len = value_len;
            *out_present = present;
        }
        break;
    default: /* unreachable: callers validate with mutation_is_valid_atomic() */
        r = dup_bytes(value, value_len);
        *out_len = value_len;
        *out_present = present;
        break;
    }
    *out = r;
}

fdb_error_t mutation_versionstamp_offset(const uint8_t *bytes, int len, int *offset,
                                         int *body_len)
{
    if (len < 4)
        return FDB_ERR_CLIENT_INVALID_OPERATION;
    const uint8_t *s = bytes + len - 4;
    uint32_t off = (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
                   (uint32_t)s[3] << 24;
    if (off > (uint32_t)(len - 4) || (uint32_t)(len - 4) - off < 10)
        return FDB_ERR_CLIENT_INVALID_OPERATION;
    *offset = (int)off;
    *body_len = len - 4;
    return 0;
}
