/* watch.c -- the watch hub (see watch.h).
 *
 * Two threads per process:
 *   - the tail thread reads the change log after `synced_rev` (mvcc_read_events), hands
 *     each event to the synced watchers whose range holds its key, then advances
 *     synced_rev; when there is nothing new it sleeps on a store watch of the revision key;
 *   - the worker thread runs stream requests (create needs a store read), catches up
 *     unsynced watchers from the store in chunks, and sends periodic progress
 *     notifications.
 * A watcher is either synced (the tail delivers to it) or unsynced (the worker replays the
 * log for it); it moves between the two only under hub->mu, with next_rev exact, so no
 * event is delivered twice or skipped. Synced watchers of a stream whose client does not
 * read fall back to unsynced, so memory per stream stays bounded.
 *
 * Guarantees (etcd's robustness checks), kept by:
 * (1) Ordered: a watcher's next_rev only grows, and each delivery covers revisions
 *     [next_rev, through] in order.
 * (2) Unique: delivery moves next_rev past every revision delivered.
 * (3) Reliable: next_rev moves only past revisions whose events were delivered.
 * (4) Atomic: mvcc_read_events never splits a revision, and a watcher's events of one
 *     batch go out in one response (unless fragmenting).
 * (5) Resumable: a watch from revision R starts unsynced at R and replays the log.
 * (6) Bookmarkable: progress is reported at next_rev - 1 of synced watchers only.
 */
#include "watch/watch.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/arena.h"
#include "kv/deadline.h"
#include "kv/log.h"

#define TAIL_BATCH 1000
#define CATCHUP_BATCH 1000
#define WAIT_MS 1000

/* etcd's refusals of a create request: answered created + canceled with watch_id -1. */
static const char ERR_DUPLICATE_ID[] = "mvcc: duplicate watch ID provided on the WatchStream";
static const char ERR_EMPTY_RANGE[] = "mvcc: watcher range is empty";
static const char ERR_COMPACTED[] = "etcdserver: mvcc: required revision has been compacted";

/* Events of the batch being dispatched to one watcher, in the batch's arena. */
struct event_node {
    Mvccpb__Event *event;
    struct event_node *next;
};

/* One watch. Kept small (104 bytes plus its key), and in one allocation with its
 * key and range end: a kube-apiserver or a benchmark may hold 100,000 of them. */
struct watcher {
    struct watch_stream *stream;
    struct watcher *next_in_stream, *prev_in_stream;
    struct watcher *next_unsynced, *prev_unsynced;
    struct watcher *next_touched;
    struct event_node *batch_head, *batch_tail;
    int64_t id;
    int64_t next_rev;    /* first revision not yet delivered */
    int64_t created_rev; /* the revision its created response reported */
    uint32_t key_len, end_len; /* [key, end) in bytes[]; end_len 0 and !open_end: one key */
    uint32_t batch_n;
    unsigned open_end : 1; /* every key >= key */
    unsigned no_put : 1, no_delete : 1, prev_kv : 1, progress_notify : 1, fragment : 1;
    unsigned synced : 1, sent_since_tick : 1;
    uint8_t bytes[];
};

#define WATCHER_KEY(w) ((const uint8_t *)(w)->bytes)
#define WATCHER_END(w) ((const uint8_t *)(w)->bytes + (w)->key_len)

struct request {
    struct watch_stream *stream;
    Etcdserverpb__WatchRequest *req; /* owned */
    struct request *next;
};

struct watch_stream {
    struct watch_hub *hub;
    struct watch_sink sink;
    struct watcher *watchers;
    struct watcher **by_id; /* open addressing on id, linear probing; NULL = free slot */
    size_t by_id_cap, n_watchers;
    int64_t next_id;
    int progress_wanted;
    int64_t progress_min_rev; /* the store's revision when progress was requested */
    int closing;
    int queued, held; /* requests of the stream in the hub's queue; input held (sink.hold) */
    int refs; /* hub->mu: the owner until close, each queued request, a catch-up in progress */
    struct watch_stream *next, *prev;
};

/* The interval index of synced watchers, rebuilt lazily (at the next dispatch) after any
 * change: exact-key watchers sorted by key; range watchers sorted by begin, in blocks that
 * know their widest end, so a lookup skips the blocks that cannot hold the key. */
#define INDEX_BLOCK 64

struct windex {
    struct watcher **exact;
    size_t n_exact, cap_exact;
    struct watcher **ranges;
    size_t n_ranges, cap_ranges;
    struct watcher **block_widest; /* per block: the watcher with the greatest end */
    size_t cap_blocks;
    int dirty;
};

struct watch_hub {
    struct watch_config config;
    struct windex index;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    int stopping;
    int64_t synced_rev;
    struct watch_stream *streams;
    struct watcher *unsynced;
    int prev_kv_watchers; /* synced ones wanting prev_kv */
    struct request *req_head, *req_tail;
    pthread_t tail_thread, worker_thread;
    struct mvcc_wake tail_wake; /* ends the tail's store wait at shutdown */
    int64_t last_tick_ms;
    unsigned handled_since_trim; /* requests handled since memory was last given back */
    int64_t last_request_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drops a reference to a stream; frees it at zero. hub->mu held. */
static void stream_unref_locked(struct watch_stream *s)
{
    if (--s->refs == 0) {
        free(s->by_id);
        free(s);
    }
}

/* ---- ranges ---- */

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (al > bl) - (al < bl);
}

static int watcher_matches(const struct watcher *w, const ProtobufCBinaryData *k)
{
    int c = bytes_cmp(k->data, k->len, WATCHER_KEY(w), w->key_len);
    if (c < 0)
        return 0;
    if (w->open_end)
        return 1;
    if (w->end_len == 0)
        return c == 0;
    return bytes_cmp(k->data, k->len, WATCHER_END(w), w->end_len) < 0;
}

/* Where a watcher's delivery resumes. A synced watcher implicitly follows synced_rev, so
 * a batch without events for it costs nothing (invariant (2) and (3) hold through this). */
static int64_t effective_next(const struct watch_hub *hub, const struct watcher *w)
{
    if (w->synced && w->next_rev <= hub->synced_rev)
        return hub->synced_rev + 1;
    return w->next_rev;
}

/* ---- the index ---- */

static int end_cmp(const struct watcher *a, const struct watcher *b)
{
    if (a->open_end || b->open_end)
        return a->open_end - b->open_end;
    /* a single key's end is key + "\0" */
    const uint8_t *ae = a->end_len ? WATCHER_END(a) : WATCHER_KEY(a);
    const uint8_t *be = b->end_len ? WATCHER_END(b) : WATCHER_KEY(b);
    size_t al = a->end_len ? a->end_len : a->key_len, bl = b->end_len ? b->end_len : b->key_len;
    int c = bytes_cmp(ae, al, be, bl);
    if (c)
        return c;
    return (a->end_len == 0) - (b->end_len == 0);
}

/* Whether w's end is beyond key (so w may hold key). */
static int end_after(const struct watcher *w, const ProtobufCBinaryData *k)
{
    if (w->open_end)
        return 1;
    if (w->end_len)
        return bytes_cmp(WATCHER_END(w), w->end_len, k->data, k->len) > 0;
    return bytes_cmp(WATCHER_KEY(w), w->key_len, k->data, k->len) >= 0;
}

static int begin_sort(const void *x, const void *y)
{
    const struct watcher *a = *(struct watcher *const *)x, *b = *(struct watcher *const *)y;
    return bytes_cmp(WATCHER_KEY(a), a->key_len, WATCHER_KEY(b), b->key_len);
}

static void push_watcher(struct watcher ***v, size_t *n, size_t *cap, struct watcher *w)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = realloc(*v, *cap * sizeof(**v));
        if (!*v)
            abort();
    }
    (*v)[(*n)++] = w;
}

static void index_rebuild(struct watch_hub *hub)
{
    struct windex *ix = &hub->index;
    ix->n_exact = ix->n_ranges = 0;
    for (struct watch_stream *s = hub->streams; s; s = s->next)
        for (struct watcher *w = s->watchers; w; w = w->next_in_stream) {
            if (!w->synced)
                continue;
            if (!w->open_end && w->end_len == 0)
                push_watcher(&ix->exact, &ix->n_exact, &ix->cap_exact, w);
            else
                push_watcher(&ix->ranges, &ix->n_ranges, &ix->cap_ranges, w);
        }
    if (ix->n_exact > 1)
        qsort(ix->exact, ix->n_exact, sizeof(*ix->exact), begin_sort);
    if (ix->n_ranges > 1)
        qsort(ix->ranges, ix->n_ranges, sizeof(*ix->ranges), begin_sort);
    size_t blocks = (ix->n_ranges + INDEX_BLOCK - 1) / INDEX_BLOCK;
    if (blocks > ix->cap_blocks) {
        ix->cap_blocks = blocks * 2;
        ix->block_widest = realloc(ix->block_widest, ix->cap_blocks * sizeof(*ix->block_widest));
        if (!ix->block_widest)
            abort();
    }
    for (size_t b = 0; b < blocks; b++) {
        struct watcher *widest = ix->ranges[b * INDEX_BLOCK];
        for (size_t i = b * INDEX_BLOCK; i < ix->n_ranges && i < (b + 1) * INDEX_BLOCK; i++)
            if (end_cmp(ix->ranges[i], widest) > 0)
                widest = ix->ranges[i];
        ix->block_widest[b] = widest;
    }
    ix->dirty = 0;
}

/* First index in v[0..n) whose key is > key (or >= when inclusive is 0). */
static size_t upper_bound(struct watcher **v, size_t n, const ProtobufCBinaryData *k, int strict)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = bytes_cmp(WATCHER_KEY(v[mid]), v[mid]->key_len, k->data, k->len);
        if (strict ? c <= 0 : c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef void (*visit_fn)(struct watcher *w, void *arg);

/* Calls visit for every synced watcher whose range holds key. */
static void index_lookup(struct windex *ix, const ProtobufCBinaryData *k, visit_fn visit, void *arg)
{
    for (size_t i = upper_bound(ix->exact, ix->n_exact, k, 0);
         i < ix->n_exact &&
         bytes_cmp(WATCHER_KEY(ix->exact[i]), ix->exact[i]->key_len, k->data, k->len) == 0;
         i++)
        visit(ix->exact[i], arg);
    size_t hi = upper_bound(ix->ranges, ix->n_ranges, k, 1); /* begins <= key */
    for (size_t b = 0; b * INDEX_BLOCK < hi; b++) {
        if (!end_after(ix->block_widest[b], k))
            continue;
        for (size_t i = b * INDEX_BLOCK; i < hi && i < (b + 1) * INDEX_BLOCK; i++)
            if (watcher_matches(ix->ranges[i], k))
                visit(ix->ranges[i], arg);
    }
}

/* ---- responses ---- */

static void header_init(struct watch_hub *hub, Etcdserverpb__ResponseHeader *h, int64_t rev)
{
    etcdserverpb__response_header__init(h);
    h->cluster_id = hub->config.cluster_id;
    h->member_id = hub->config.member_id;
    h->revision = rev;
    h->raft_term = 1;
}

/* Sends a control response (created, canceled, progress); hub->mu held. A cancel for
 * compaction has header.revision 0, as etcd's. */
static void send_control(struct watch_stream *s, int64_t watch_id, int64_t rev, int created,
                         int canceled, int64_t compact_rev, const char *reason)
{
    Etcdserverpb__ResponseHeader h;
    header_init(s->hub, &h, rev);
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.header = &h;
    r.watch_id = watch_id;
    r.created = created;
    r.canceled = canceled;
    r.compact_revision = compact_rev;
    if (reason)
        r.cancel_reason = (char *)reason;
    s->sink.send(s->sink.arg, &r);
}

/* Sends events to a watcher, fragmenting as etcd does when the watcher asked for it and
 * the response is too large; hub->mu held. */
static void send_events(struct watcher *w, Mvccpb__Event **events, size_t n, int64_t rev)
{
    struct watch_hub *hub = w->stream->hub;
    Etcdserverpb__ResponseHeader h;
    header_init(hub, &h, rev);
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.header = &h;
    r.watch_id = w->id;
    r.events = events;
    r.n_events = n;
    w->sent_since_tick = 1;
    if (!w->fragment || n < 2 ||
        (int64_t)protobuf_c_message_get_packed_size(&r.base) < hub->config.fragment_bytes) {
        w->stream->sink.send(w->stream->sink.arg, &r);
        return;
    }
    size_t i = 0;
    while (i < n) {
        r.events = events + i;
        r.n_events = 0;
        r.fragment = 1;
        while (i + r.n_events < n) {
            r.n_events++;
            if (r.n_events > 1 &&
                (int64_t)protobuf_c_message_get_packed_size(&r.base) >= hub->config.fragment_bytes) {
                r.n_events--;
                break;
            }
        }
        i += r.n_events;
        if (i == n)
            r.fragment = 0;
        w->stream->sink.send(w->stream->sink.arg, &r);
    }
}

/* The event as this watcher wants it (filters, prev_kv), or NULL to skip it. */
static Mvccpb__Event *shape_event(struct watcher *w, Mvccpb__Event *e, struct arena *arena)
{
    if ((w->no_put && e->type == MVCCPB__EVENT__EVENT_TYPE__PUT) ||
        (w->no_delete && e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE))
        return NULL;
    if (w->prev_kv || !e->prev_kv)
        return e;
    Mvccpb__Event *copy = arena_alloc(arena, sizeof(*copy));
    *copy = *e;
    copy->prev_kv = NULL;
    return copy;
}

static void batch_clear(struct watcher *w)
{
    w->batch_head = w->batch_tail = NULL;
    w->batch_n = 0;
}

static void batch_push(struct watcher *w, Mvccpb__Event *e, struct arena *arena)
{
    struct event_node *n = arena_alloc(arena, sizeof(*n));
    n->event = e;
    n->next = NULL;
    if (w->batch_tail)
        w->batch_tail->next = n;
    else
        w->batch_head = n;
    w->batch_tail = n;
    w->batch_n++;
}

/* Sends the watcher's batch as one response (or fragments) and empties it; hub->mu held. */
static void batch_send(struct watcher *w, int64_t rev, struct arena *arena)
{
    if (w->batch_n) {
        Mvccpb__Event **events = arena_alloc(arena, w->batch_n * sizeof(*events));
        size_t i = 0;
        for (struct event_node *n = w->batch_head; n; n = n->next)
            events[i++] = n->event;
        send_events(w, events, i, rev);
    }
    batch_clear(w);
}

static int stream_congested(struct watch_stream *s)
{
    return s->sink.pending(s->sink.arg) > s->hub->config.max_pending_bytes;
}

/* ---- synced / unsynced ---- */

static void unsynced_add(struct watch_hub *hub, struct watcher *w)
{
    if (w->synced && w->prev_kv)
        hub->prev_kv_watchers--;
    w->next_rev = effective_next(hub, w); /* materialize before leaving synced */
    if (w->synced)
        hub->index.dirty = 1;
    w->synced = 0;
    w->prev_unsynced = NULL;
    w->next_unsynced = hub->unsynced;
    if (hub->unsynced)
        hub->unsynced->prev_unsynced = w;
    hub->unsynced = w;
    pthread_cond_signal(&hub->work_cv);
}

static void unsynced_remove(struct watch_hub *hub, struct watcher *w)
{
    if (w->prev_unsynced)
        w->prev_unsynced->next_unsynced = w->next_unsynced;
    else if (hub->unsynced == w)
        hub->unsynced = w->next_unsynced;
    if (w->next_unsynced)
        w->next_unsynced->prev_unsynced = w->prev_unsynced;
    w->next_unsynced = w->prev_unsynced = NULL;
}

static void make_synced(struct watch_hub *hub, struct watcher *w)
{
    unsynced_remove(hub, w);
    w->synced = 1;
    hub->index.dirty = 1;
    if (w->prev_kv)
        hub->prev_kv_watchers++;
}

/* ---- a stream's watchers by id ---- */

static size_t id_slot(const struct watch_stream *s, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (s->by_id_cap - 1);
}

static struct watcher *find_watcher(struct watch_stream *s, int64_t id)
{
    if (!s->by_id_cap)
        return NULL;
    for (size_t i = id_slot(s, id);; i = (i + 1) & (s->by_id_cap - 1)) {
        struct watcher *w = s->by_id[i];
        if (!w || w->id == id)
            return w;
    }
}

static void by_id_insert(struct watch_stream *s, struct watcher *w)
{
    size_t i = id_slot(s, w->id);
    while (s->by_id[i])
        i = (i + 1) & (s->by_id_cap - 1);
    s->by_id[i] = w;
}

/* Links w into its stream: the list and the id table (kept at most half full). */
static void stream_add_watcher(struct watch_stream *s, struct watcher *w)
{
    if (2 * (s->n_watchers + 1) > s->by_id_cap) {
        struct watcher **old = s->by_id;
        size_t old_cap = s->by_id_cap;
        s->by_id_cap = old_cap ? old_cap * 2 : 8;
        s->by_id = calloc(s->by_id_cap, sizeof(*s->by_id));
        if (!s->by_id)
            abort();
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                by_id_insert(s, old[i]);
        free(old);
    }
    by_id_insert(s, w);
    s->n_watchers++;
    w->prev_in_stream = NULL;
    w->next_in_stream = s->watchers;
    if (s->watchers)
        s->watchers->prev_in_stream = w;
    s->watchers = w;
}

static void stream_remove_watcher(struct watch_stream *s, struct watcher *w)
{
    size_t mask = s->by_id_cap - 1, i = id_slot(s, w->id);
    while (s->by_id[i] != w)
        i = (i + 1) & mask;
    /* Backward-shift deletion: move later members of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; s->by_id[j]; j = (j + 1) & mask) {
        size_t home = id_slot(s, s->by_id[j]->id);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->by_id[i] = s->by_id[j];
            i = j;
        }
    }
    s->by_id[i] = NULL;
    s->n_watchers--;
    if (w->prev_in_stream)
        w->prev_in_stream->next_in_stream = w->next_in_stream;
    else
        s->watchers = w->next_in_stream;
    if (w->next_in_stream)
        w->next_in_stream->prev_in_stream = w->prev_in_stream;
}

/* Unlinks and frees a watcher; hub->mu held. */
static void watcher_remove(struct watch_hub *hub, struct watcher *w)
{
    stream_remove_watcher(w->stream, w);
    if (w->synced) {
        if (w->prev_kv)
            hub->prev_kv_watchers--;
        hub->index.dirty = 1;
    } else {
        unsynced_remove(hub, w);
    }
    free(w);
}

/* Answers a progress request when every watcher of the stream is synced; hub->mu held. */
static void maybe_answer_progress(struct watch_stream *s)
{
    /* etcd answers at its current revision once every watcher is synced; here the hub must
     * first have dispatched everything up to the revision the store had at the request. */
    if (!s->progress_wanted || s->hub->synced_rev < s->progress_min_rev)
        return;
    for (struct watcher *w = s->watchers; w; w = w->next_in_stream)
        if (!w->synced)
            return;
    s->progress_wanted = 0;
    send_control(s, -1, s->hub->synced_rev, 0, 0, 0, NULL);
}

/* ---- the tail thread ---- */

struct visit {
    struct watch_hub *hub;
    Mvccpb__Event *event;
    int64_t rev;
    struct arena *arena;
    struct watcher *touched;
};

static void visit_event(struct watcher *w, void *arg)
{
    struct visit *v = arg;
    if (v->rev < effective_next(v->hub, w))
        return;
    Mvccpb__Event *shaped = shape_event(w, v->event, v->arena);
    if (!shaped)
        return;
    if (w->batch_n == 0) {
        w->next_touched = v->touched;
        v->touched = w;
    }
    batch_push(w, shaped, v->arena);
}

/* Hands a batch of events to the synced watchers through the index; hub->mu held. */
static void dispatch(struct watch_hub *hub, const struct mvcc_events *ev, struct arena *arena)
{
    if (hub->index.dirty)
        index_rebuild(hub);
    struct visit v = {hub, NULL, 0, arena, NULL};
    for (size_t i = 0; i < ev->n; i++) {
        v.event = ev->events[i];
        v.rev = v.event->kv->mod_revision;
        index_lookup(&hub->index, &v.event->kv->key, visit_event, &v);
    }
    for (struct watcher *w = v.touched; w; w = w->next_touched) {
        if (stream_congested(w->stream)) {
            unsynced_add(hub, w); /* replays from next_rev when the client reads again */
        } else {
            batch_send(w, ev->through_rev, arena);
            w->next_rev = ev->through_rev + 1;
        }
        batch_clear(w);
    }
    /* Every other synced watcher follows synced_rev implicitly (effective_next). */
    if (ev->through_rev > hub->synced_rev)
        hub->synced_rev = ev->through_rev;
    for (struct watch_stream *s = hub->streams; s; s = s->next)
        maybe_answer_progress(s);
}

static void *tail_main(void *arg)
{
    struct watch_hub *hub = arg;
    struct mvcc *m = hub->config.mvcc;
    pthread_mutex_lock(&hub->mu);
    mvcc_index_follow(m, hub->synced_rev);
    pthread_mutex_unlock(&hub->mu);
    int loading = 1; /* the key index: one load transaction per turn until loaded */
    for (;;) {
        pthread_mutex_lock(&hub->mu);
        int stop = hub->stopping;
        int64_t after = hub->synced_rev;
        int with_prev = hub->prev_kv_watchers > 0;
        pthread_mutex_unlock(&hub->mu);
        if (stop)
            return NULL;
        if (loading) {
            fdb_error_t load_error = 0;
            if (mvcc_index_load_step(m, &loading, &load_error) != 0) {
                log_msg(LOG_WARN, "watch: loading the key index failed (%d), retrying",
                        (int)load_error);
                struct timespec pause = {0, 100 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
        }
        struct arena arena = {0};
        struct mvcc_events ev;
        fdb_error_t store_error = 0;
        int err = mvcc_read_events_tail(m, after, TAIL_BATCH, with_prev, &ev, &arena, &store_error);
        if (err == MVCC_ERR_COMPACTED) {
            /* Compacted past us (a long stall): the synced watchers cannot be served. */
            pthread_mutex_lock(&hub->mu);
            for (struct watch_stream *s = hub->streams; s; s = s->next)
                for (struct watcher *w = s->watchers, *next; w; w = next) {
                    next = w->next_in_stream;
                    send_control(s, w->id, 0, 0, 1, ev.compact_rev, NULL);
                    watcher_remove(hub, w);
                }
            hub->synced_rev = ev.current_rev;
            mvcc_index_follow(m, ev.current_rev);
            loading = 1;
            pthread_mutex_unlock(&hub->mu);
        } else if (err) {
            log_msg(LOG_WARN, "watch: reading the change log failed (%d), retrying", (int)store_error);
            struct timespec pause = {0, 100 * 1000 * 1000};
            nanosleep(&pause, NULL);
        } else {
            pthread_mutex_lock(&hub->mu);
            int with_prev_now = hub->prev_kv_watchers > 0;
            if (with_prev_now && !with_prev && ev.n) {
                pthread_mutex_unlock(&hub->mu); /* a prev_kv watcher arrived: read again */
                arena_free(&arena);
                continue;
            }
            mvcc_index_apply(m, &ev);
            dispatch(hub, &ev, &arena);
            int caught_up = ev.through_rev >= ev.current_rev;
            pthread_mutex_unlock(&hub->mu);
            if (caught_up && !loading) {
                fdb_error_t werr = 0;
                if (mvcc_wait_change(m, ev.through_rev, WAIT_MS, &hub->tail_wake, &werr) != 0) {
                    struct timespec pause = {0, 100 * 1000 * 1000};
                    nanosleep(&pause, NULL);
                }
            }
        }
        arena_free(&arena);
    }
}

/* ---- the worker thread: requests, catch-up, progress ---- */

static void handle_create(struct watch_hub *hub, struct watch_stream *s,
                          const Etcdserverpb__WatchCreateRequest *c)
{
    int64_t current = 0, compacted = 0;
    fdb_error_t store_error = 0;
    int err = mvcc_revisions(hub->config.mvcc, &current, &compacted, &store_error);
    pthread_mutex_lock(&hub->mu);
    if (s->closing) {
        pthread_mutex_unlock(&hub->mu);
        return;
    }
    int64_t id = c->watch_id;
    if (err) {
        send_control(s, id, hub->synced_rev, 1, 1, 0, "etcdserver: request timed out");
        pthread_mutex_unlock(&hub->mu);
        return;
    }
    const char *refusal = NULL;
    if (c->start_revision < 0)
        refusal = ERR_COMPACTED;
    else if (c->range_end.len && !(c->range_end.len == 1 && c->range_end.data[0] == 0) &&
             bytes_cmp(c->key.data, c->key.len, c->range_end.data, c->range_end.len) >= 0)
        refusal = ERR_EMPTY_RANGE;
    else if (id != 0 && find_watcher(s, id))
        refusal = ERR_DUPLICATE_ID;
    if (refusal) {
        send_control(s, -1, current, 1, 1, 0, refusal);
        pthread_mutex_unlock(&hub->mu);
        return;
    }
    if (id == 0) { /* etcd's AutoWatchID: the lowest unused id from next_id on */
        while (find_watcher(s, s->next_id))
            s->next_id++;
        id = s->next_id++;
    }
    int open_end = c->range_end.len == 1 && c->range_end.data[0] == 0;
    size_t end_len = open_end ? 0 : c->range_end.len;
    struct watcher *w = calloc(1, sizeof(*w) + c->key.len + end_len);
    if (!w)
        abort();
    w->stream = s;
    w->id = id;
    if (c->key.len)
        memcpy(w->bytes, c->key.data, c->key.len);
    w->key_len = (uint32_t)c->key.len;
    w->open_end = open_end;
    if (end_len)
        memcpy(w->bytes + c->key.len, c->range_end.data, end_len);
    w->end_len = (uint32_t)end_len;
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
            w->no_put = 1;
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
            w->no_delete = 1;
    }
    w->prev_kv = c->prev_kv;
    w->progress_notify = c->progress_notify;
    w->fragment = c->fragment;
    w->next_rev = c->start_revision > 0 ? c->start_revision : current + 1;
    w->created_rev = current;
    /* The created response goes out before any event of the watch. */
    send_control(s, id, current, 1, 0, 0, NULL);
    if (c->start_revision > 0 && c->start_revision < compacted) {
        send_control(s, id, 0, 0, 1, compacted, NULL);
        free(w);
        pthread_mutex_unlock(&hub->mu);
        return;
    }
    stream_add_watcher(s, w);
    if (w->next_rev > hub->synced_rev)
        make_synced(hub, w);
    else
        unsynced_add(hub, w);
    pthread_mutex_unlock(&hub->mu);
}

static void handle_request(struct watch_hub *hub, struct request *r)
{
    struct watch_stream *s = r->stream;
    Etcdserverpb__WatchRequest *req = r->req;
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        handle_create(hub, s, req->create_request);
        break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
        pthread_mutex_lock(&hub->mu);
        struct watcher *w = s->closing ? NULL : find_watcher(s, req->cancel_request->watch_id);
        if (w) { /* an unknown id is ignored, as etcd does */
            send_control(s, w->id, hub->synced_rev, 0, 1, 0, NULL);
            watcher_remove(hub, w);
            maybe_answer_progress(s);
        }
        pthread_mutex_unlock(&hub->mu);
        break;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST: {
        int64_t current = 0, compacted = 0;
        fdb_error_t store_error = 0;
        if (mvcc_revisions(hub->config.mvcc, &current, &compacted, &store_error) != 0)
            current = 0; /* the store did not answer: answer at what the hub has */
        pthread_mutex_lock(&hub->mu);
        if (!s->closing) {
            s->progress_wanted = 1;
            if (current > s->progress_min_rev)
                s->progress_min_rev = current;
            maybe_answer_progress(s);
        }
        pthread_mutex_unlock(&hub->mu);
        break;
    }
    default:
        break;
    }
}

/* An unsynced watcher taking part in a catch-up read, identified again after the read. */
struct catch_up_member {
    struct watch_stream *stream;
    int64_t id;
    int64_t next_rev;
};

/* Delivers a catch-up chunk covering (after, ev->through_rev] to one member that is still
 * where it was when the read started; hub->mu held. */
static void catch_up_deliver(struct watch_hub *hub, const struct catch_up_member *m, int err,
                             const struct mvcc_events *ev, struct arena *arena)
{
    struct watch_stream *s = m->stream;
    struct watcher *w = s->closing ? NULL : find_watcher(s, m->id); /* cancelled meanwhile? */
    if (!w || w->synced || w->next_rev != m->next_rev)
        return;
    if (err == MVCC_ERR_COMPACTED) {
        if (w->next_rev < ev->compact_rev) {
            send_control(s, w->id, 0, 0, 1, ev->compact_rev, NULL);
            watcher_remove(hub, w);
        }
        return;
    }
    if (err || w->next_rev > ev->through_rev)
        return;
    for (size_t i = 0; i < ev->n; i++) {
        Mvccpb__Event *e = ev->events[i];
        if (e->kv->mod_revision >= w->next_rev && watcher_matches(w, &e->kv->key)) {
            Mvccpb__Event *shaped = shape_event(w, e, arena);
            if (shaped)
                batch_push(w, shaped, arena);
        }
    }
    batch_send(w, ev->through_rev, arena);
    w->next_rev = ev->through_rev + 1;
    if (w->next_rev > hub->synced_rev)
        make_synced(hub, w);
    maybe_answer_progress(s);
}

/* Replays one chunk of the log for the first unsynced watcher whose client reads, and with
 * the same read for every other such watcher that the chunk can advance (watchers that
 * start from one revision, as after a client reconnects, share their reads). The first
 * watcher then goes to the back, so unsynced watchers take turns. Returns 1 if it did
 * work, 0 if there was none or the store failed. */
static int catch_up_one(struct watch_hub *hub)
{
    pthread_mutex_lock(&hub->mu);
    struct watcher *first = hub->unsynced;
    while (first && stream_congested(first->stream))
        first = first->next_unsynced;
    if (!first) {
        pthread_mutex_unlock(&hub->mu);
        return 0;
    }
    if (first->next_rev > hub->synced_rev) {
        make_synced(hub, first);
        maybe_answer_progress(first->stream);
        pthread_mutex_unlock(&hub->mu);
        return 1;
    }
    int64_t after = first->next_rev - 1;
    int prev_kv = 0;
    size_t n = 0, cap = 0;
    struct catch_up_member *members = NULL;
    struct watcher *last = NULL;
    for (struct watcher *w = hub->unsynced; w; w = w->next_unsynced) {
        last = w;
        if (w->next_rev <= after || w->next_rev > hub->synced_rev || stream_congested(w->stream))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            members = realloc(members, cap * sizeof(*members));
            if (!members)
                abort();
        }
        members[n++] = (struct catch_up_member){w->stream, w->id, w->next_rev};
        w->stream->refs++; /* the stream stays valid while the lock is dropped */
        prev_kv |= w->prev_kv;
    }
    if (last != first) { /* first to the back */
        unsynced_remove(hub, first);
        last->next_unsynced = first;
        first->prev_unsynced = last;
    }
    pthread_mutex_unlock(&hub->mu);

    struct arena arena = {0};
    struct mvcc_events ev;
    fdb_error_t store_error = 0;
    int err = mvcc_read_events(hub->config.mvcc, after, CATCHUP_BATCH, prev_kv, &ev, &arena,
                               &store_error);
    if (err && err != MVCC_ERR_COMPACTED)
        log_msg(LOG_WARN, "watch: catch-up read failed (%d), retrying", (int)store_error);
    pthread_mutex_lock(&hub->mu);
    for (size_t i = 0; i < n; i++) {
        catch_up_deliver(hub, &members[i], err, &ev, &arena);
        stream_unref_locked(members[i].stream);
    }
    pthread_mutex_unlock(&hub->mu);
    free(members);
    arena_free(&arena);
    return !err || err == MVCC_ERR_COMPACTED;
}

/* Periodic progress notifications for synced watchers that asked for them; hub->mu held. */
static void progress_tick(struct watch_hub *hub)
{
    for (struct watch_stream *s = hub->streams; s; s = s->next)
        for (struct watcher *w = s->watchers; w; w = w->next_in_stream) {
            if (w->progress_notify && w->synced && !w->sent_since_tick) {
                /* (6): nothing at or below it is still to come for w, and it is never beyond
                 * the store's revision nor below what w's created response said. */
                int64_t known = hub->synced_rev > w->created_rev ? hub->synced_rev : w->created_rev;
                int64_t rev = effective_next(hub, w) - 1;
                if (rev > known)
                    rev = known;
                send_control(s, w->id, rev, 0, 0, 0, NULL);
            }
            w->sent_since_tick = 0;
        }
}

/* After TRIM_AFTER requests, once none came for TRIM_QUIET_MS, the memory freed meanwhile
 * is given back. */
#define TRIM_AFTER 1024
#define TRIM_QUIET_MS 500

static void release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void *worker_main(void *arg)
{
    struct watch_hub *hub = arg;
    for (;;) {
        pthread_mutex_lock(&hub->mu);
        if (hub->stopping) {
            pthread_mutex_unlock(&hub->mu);
            return NULL;
        }
        int64_t now = now_ms();
        if (now - hub->last_tick_ms >= hub->config.progress_interval_ms) {
            hub->last_tick_ms = now;
            progress_tick(hub);
        }
        struct request *r = hub->req_head;
        if (r) {
            hub->req_head = r->next;
            if (!hub->req_head)
                hub->req_tail = NULL;
        }
        int idle = !r && !hub->unsynced;
        if (r)
            hub->last_request_ms = now;
        if (!r && hub->handled_since_trim >= TRIM_AFTER &&
            now - hub->last_request_ms >= TRIM_QUIET_MS) {
            /* A burst of creates and cancels is over. Its messages and responses were
             * freed between long-lived watchers; give those free pages back to the OS. */
            hub->handled_since_trim = 0;
            pthread_mutex_unlock(&hub->mu);
            release_free_memory();
            continue;
        }
        if (idle) {
            int64_t wait = hub->config.progress_interval_ms - (now - hub->last_tick_ms);
            if (wait > WAIT_MS)
                wait = WAIT_MS;
            if (hub->handled_since_trim >= TRIM_AFTER && wait > TRIM_QUIET_MS)
                wait = TRIM_QUIET_MS;
            struct timespec ts = kv_deadline_ms(CLOCK_MONOTONIC, wait > 0 ? wait : 0);
            pthread_cond_timedwait(&hub->work_cv, &hub->mu, &ts);
        }
        pthread_mutex_unlock(&hub->mu);
        if (r) {
            handle_request(hub, r);
            etcdserverpb__watch_request__free_unpacked(r->req, NULL);
            pthread_mutex_lock(&hub->mu);
            hub->handled_since_trim++;
            struct watch_stream *s = r->stream;
            /* Read on once the stream's queue is short again: a stream's requests in
             * memory stay under WATCH_QUEUE_HOLD, however fast its client sends them. */
            if (--s->queued <= WATCH_QUEUE_HOLD / 4 && s->held && !s->closing) {
                s->held = 0;
                s->sink.resume(s->sink.arg);
            }
            stream_unref_locked(s);
            pthread_mutex_unlock(&hub->mu);
            free(r);
        } else if (!idle && !catch_up_one(hub)) {
            /* every unsynced watcher waits for its client to read: do not spin */
            struct timespec pause = {0, 5 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
}

/* ---- public ---- */

int watch_hub_create(const struct watch_config *config, struct watch_hub **out)
{
    struct watch_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        abort();
    hub->config = *config;
    if (hub->config.progress_interval_ms <= 0)
        hub->config.progress_interval_ms = 10 * 60 * 1000;
    if (hub->config.max_pending_bytes == 0)
        hub->config.max_pending_bytes = 16u << 20;
    if (hub->config.fragment_bytes <= 0)
        hub->config.fragment_bytes = 1572864;
    pthread_mutex_init(&hub->mu, NULL);
    hub->tail_wake = (struct mvcc_wake)MVCC_WAKE_INIT;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hub->work_cv, &attr);
    pthread_condattr_destroy(&attr);
    int64_t current = 0, compacted = 0;
    fdb_error_t store_error = 0;
    if (mvcc_revisions(config->mvcc, &current, &compacted, &store_error) != 0) {
        log_msg(LOG_ERROR, "watch: cannot read the current revision (%d)", (int)store_error);
        free(hub);
        return -1;
    }
    hub->synced_rev = current;
    hub->last_tick_ms = now_ms();
    pthread_create(&hub->tail_thread, NULL, tail_main, hub);
    pthread_create(&hub->worker_thread, NULL, worker_main, hub);
    pthread_setname_np(hub->tail_thread, "watch-tail");
    pthread_setname_np(hub->worker_thread, "watch-worker");
    *out = hub;
    return 0;
}

void watch_hub_destroy(struct watch_hub *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->mu);
    hub->stopping = 1;
    pthread_cond_broadcast(&hub->work_cv);
    pthread_mutex_unlock(&hub->mu);
    mvcc_wake(&hub->tail_wake);
    pthread_join(hub->tail_thread, NULL);
    pthread_join(hub->worker_thread, NULL);
    while (hub->req_head) {
        struct request *r = hub->req_head;
        hub->req_head = r->next;
        etcdserverpb__watch_request__free_unpacked(r->req, NULL);
        free(r);
    }
    pthread_mutex_destroy(&hub->mu);
    pthread_cond_destroy(&hub->work_cv);
    free(hub->index.exact);
    free(hub->index.ranges);
    free(hub->index.block_widest);
    free(hub);
}

struct watch_stream *watch_stream_open(struct watch_hub *hub, const struct watch_sink *sink)
{
    struct watch_stream *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->hub = hub;
    s->sink = *sink;
    s->refs = 1;
    pthread_mutex_lock(&hub->mu);
    s->next = hub->streams;
    if (hub->streams)
        hub->streams->prev = s;
    hub->streams = s;
    pthread_mutex_unlock(&hub->mu);
    return s;
}

void watch_stream_request(struct watch_stream *s, Etcdserverpb__WatchRequest *req)
{
    struct request *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->stream = s;
    r->req = req;
    struct watch_hub *hub = s->hub;
    pthread_mutex_lock(&hub->mu);
    s->refs++;
    if (++s->queued >= WATCH_QUEUE_HOLD && !s->held && s->sink.hold) {
        s->held = 1;
        s->sink.hold(s->sink.arg);
    }
    if (hub->req_tail)
        hub->req_tail->next = r;
    else
        hub->req_head = r;
    hub->req_tail = r;
    pthread_cond_signal(&hub->work_cv);
    pthread_mutex_unlock(&hub->mu);
}

void watch_stream_close(struct watch_stream *s)
{
    struct watch_hub *hub = s->hub;
    pthread_mutex_lock(&hub->mu);
    s->closing = 1;
    while (s->watchers)
        watcher_remove(hub, s->watchers);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    /* Requests still queued for this stream are dropped. */
    struct request **link = &hub->req_head, *last = NULL;
    while (*link) {
        struct request *r = *link;
        if (r->stream == s) {
            *link = r->next;
            etcdserverpb__watch_request__free_unpacked(r->req, NULL);
            free(r);
            s->refs--;
            s->queued--;
        } else {
            last = r;
            link = &r->next;
        }
    }
    hub->req_tail = last;
    stream_unref_locked(s);
    pthread_mutex_unlock(&hub->mu);
}
