/* key_index.h -- the live keys of the store, in memory, to count a range without reading it.
 *
 * etcd answers every Range with `count`, the number of keys in the whole range, even when it
 * returns only the first `limit` of them (kube-apiserver lists in pages of 500 and reads the
 * count of the rest). Counting by scanning reads every record of the rest of the range. This
 * index answers it from memory: an ordered set of the live keys (a treap whose nodes count
 * their subtree), fed in revision order by the watch tail, which reads the change log. It
 * knows the keys at one revision (the tail's) and, for a few thousand changes back, how the
 * count differed before each one, so it can answer at any revision in that window.
 *
 * States: LOADING (after key_index_reset: the loader adds the keys of the store, read in
 * chunks at revisions >= the reset revision, while the tail applies the changes after it)
 * -> READY (loader finished and the tail is at or past every chunk's revision). A reset
 * starts again (the tail lost events). key_index_count answers only when READY.
 *
 * Thread safety: every function may be called from any thread; one mutex guards the index. */
#ifndef MVCC_KEY_INDEX_H
#define MVCC_KEY_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "mvccpb/kv.pb-c.h"

struct key_index;

struct key_index *key_index_create(void);
void key_index_destroy(struct key_index *ix);

/* Forgets every key and starts LOADING: the tail's next changes are those after from_rev. */
void key_index_reset(struct key_index *ix, int64_t from_rev);

/* The loader: keys[0..n) were live at revision at_rev (keys are borrowed for the call). `last`
 * says the store has no more keys after these. */
void key_index_load(struct key_index *ix, const ProtobufCBinaryData *keys, size_t n, int64_t at_rev,
                    int last);

/* The tail: the change-log events after the previous call, in revision order, through
 * through_rev (events may be empty). A PUT of version 1 creates a key; a DELETE removes it. */
void key_index_apply(struct key_index *ix, Mvccpb__Event *const *events, size_t n,
                     int64_t through_rev);

/* The number of live keys in etcd's [key, range_end) at revision rev (range_end "\0": every
 * key >= key; it must not be empty). Waits up to wait_ms for the tail to reach rev. Returns 0
 * and *count, or -1 when the index cannot tell: still loading, the tail not at rev in time,
 * or rev older than the changes it remembers. */
int key_index_count(struct key_index *ix, const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *range_end, int64_t rev, int wait_ms, int64_t *count);

#endif
