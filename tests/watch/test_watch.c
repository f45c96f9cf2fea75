/* test_watch.c -- the watch hub on the store, below gRPC:
 *   - two hubs on two mvcc instances of one subspace (what two etcd-fdb processes on one
 *     FoundationDB have): writes made through one reach watchers on both, each event once,
 *     in order, a revision's events in one response, also under the store's faults;
 *   - many watchers replaying history from different revisions (catch-up reads shared
 *     between them) see exactly the history from their start, then live events;
 *   - a stream with thousands of watchers: ids, cancel, duplicate ids, reuse; a client that
 *     sends creates faster than the hub serves them is held, then resumed. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv/embedded.h"
#include "mvcc/mvcc.h"
#include "tests/kv/store_harness.h"
#include "tests/mvcc/mvcc_check.h"
#include "watch/watch.h"

#define DEADLINE_S 60 /* generous: a correctness bound, not a timing one */

/* ---- a sink that keeps every response ---- */

struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Etcdserverpb__WatchResponse **resps;
    size_t n, cap;
    /* a client that does not read: bytes sent since it last read, and the most seen */
    int stalled;
    size_t unread, max_unread, largest;
    /* input flow control: the hub asked to stop reading the client (held) */
    int held, holds, resumes;
};

static int collect_send(void *arg, const Etcdserverpb__WatchResponse *r)
{
    struct collector *c = arg;
    size_t len = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *buf = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    protobuf_c_message_pack(&r->base, buf);
    Etcdserverpb__WatchResponse *copy = etcdserverpb__watch_response__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(copy);
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->resps = realloc(c->resps, c->cap * sizeof(*c->resps));
        ck_assert_ptr_nonnull(c->resps);
    }
    c->resps[c->n++] = copy;
    if (c->stalled) {
        c->unread += len;
        if (c->unread > c->max_unread)
            c->max_unread = c->unread;
    }
    if (len > c->largest)
        c->largest = len;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static size_t collect_pending(void *arg)
{
    struct collector *c = arg;
    pthread_mutex_lock(&c->mu);
    size_t n = c->unread;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void collect_hold(void *arg)
{
    struct collector *c = arg;
    pthread_mutex_lock(&c->mu);
    ck_assert(!c->held);
    c->held = 1;
    c->holds++;
    pthread_mutex_unlock(&c->mu);
}

static void collect_resume(void *arg)
{
    struct collector *c = arg;
    pthread_mutex_lock(&c->mu);
    ck_assert(c->held);
    c->held = 0;
    c->resumes++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void collector_init(struct collector *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void collector_free(struct collector *c)
{
    for (size_t i = 0; i < c->n; i++)
        etcdserverpb__watch_response__free_unpacked(c->resps[i], NULL);
    free(c->resps);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

typedef int (*done_fn)(struct collector *c, void *arg); /* called with c->mu held */

/* Waits until done() holds; fails the test after DEADLINE_S. */
static void wait_until(struct collector *c, done_fn done, void *arg)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DEADLINE_S;
    pthread_mutex_lock(&c->mu);
    while (!done(c, arg)) {
        int rc = pthread_cond_timedwait(&c->cv, &c->mu, &deadline);
        ck_assert_msg(rc == 0 || done(c, arg), "watch responses did not arrive in %d s",
                      DEADLINE_S);
    }
    pthread_mutex_unlock(&c->mu);
}

static struct watch_stream *open_stream(struct watch_hub *hub, struct collector *c)
{
    struct watch_sink sink = {collect_send, collect_pending, collect_hold, collect_resume, c};
    return watch_stream_open(hub, &sink);
}

static struct watch_hub *open_hub_limited(struct mvcc *m, size_t max_pending_bytes)
{
    struct watch_config cfg = {0};
    cfg.mvcc = m;
    cfg.max_pending_bytes = max_pending_bytes;
    cfg.cluster_id = 1;
    cfg.member_id = 2;
    struct watch_hub *hub = NULL;
    ck_assert_int_eq(watch_hub_create(&cfg, &hub), 0);
    return hub;
}

static struct watch_hub *open_hub(struct mvcc *m)
{
    return open_hub_limited(m, 0);
}

/* Hands the hub a copy of r of its own, as the gRPC layer hands it each message it reads. */
static void submit(struct watch_stream *s, const Etcdserverpb__WatchRequest *r)
{
    size_t len = etcdserverpb__watch_request__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    etcdserverpb__watch_request__pack(r, buf);
    Etcdserverpb__WatchRequest *copy = etcdserverpb__watch_request__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(copy);
    watch_stream_request(s, copy);
}

static ProtobufCBinaryData B(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static void create_watch(struct watch_stream *s, int64_t id, const char *key, const char *end,
                         int64_t start_rev, int prev_kv)
{
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key = B(key);
    if (end)
        c.range_end = B(end);
    c.start_revision = start_rev;
    c.prev_kv = prev_kv;
    c.watch_id = id;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    r.create_request = &c;
    submit(s, &r);
}

static void cancel_watch(struct watch_stream *s, int64_t id)
{
    Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
    c.watch_id = id;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    r.cancel_request = &c;
    submit(s, &r);
}

static void request_progress(struct watch_stream *s)
{
    Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    r.progress_request = &p;
    submit(s, &r);
}

static int is_progress(const Etcdserverpb__WatchResponse *r)
{
    return r->watch_id == -1 && !r->created && !r->canceled && r->n_events == 0;
}

/* ---- the store's side ---- */

static int64_t current_rev(struct mvcc *m)
{
    int64_t cur = 0, compacted = 0;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_revisions(m, &cur, &compacted, &se));
    return cur;
}

/* The committed history after `after`, read back from the store's change log. */
static struct mvcc_events history(struct mvcc *m, int64_t after, struct arena *a)
{
    struct mvcc_events ev;
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_read_events(m, after, 1000000, 1, &ev, a, &se));
    return ev;
}

static int in_range(const ProtobufCBinaryData *k, const char *key, const char *end)
{
    size_t kl = strlen(key);
    int c = memcmp(k->data, key, k->len < kl ? k->len : kl);
    if (c < 0 || (c == 0 && k->len < kl))
        return 0;
    if (!end)
        return k->len == kl && c == 0;
    size_t el = strlen(end);
    c = memcmp(k->data, end, k->len < el ? k->len : el);
    return c < 0 || (c == 0 && k->len < el);
}

static int bytes_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Checks that watch id's events on c are exactly the history's events in [key, end) from
 * start_rev: same order, none missing, none twice, each revision in one response (guarantees
 * 1-4 of watch.c). Returns the number of events checked. */
static size_t check_watch(struct collector *c, int64_t id, const struct mvcc_events *hist,
                          const char *key, const char *end, int64_t start_rev, int prev_kv)
{
    size_t h = 0, seen = 0;
    int64_t last_rev_of_prev_resp = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) {
        const Etcdserverpb__WatchResponse *r = c->resps[i];
        if (r->watch_id != id || r->n_events == 0)
            continue;
        ck_assert_msg(r->events[0]->kv->mod_revision > last_rev_of_prev_resp,
                      "watch %lld: revision %lld split over two responses or reordered",
                      (long long)id, (long long)r->events[0]->kv->mod_revision);
        for (size_t j = 0; j < r->n_events; j++) {
            const Mvccpb__Event *e = r->events[j];
            while (h < hist->n &&
                   (hist->events[h]->kv->mod_revision < start_rev ||
                    !in_range(&hist->events[h]->kv->key, key, end)))
                h++;
            ck_assert_msg(h < hist->n, "watch %lld: event at %lld not in the history",
                          (long long)id, (long long)e->kv->mod_revision);
            const Mvccpb__Event *want = hist->events[h++];
            ck_assert_msg(e->type == want->type && e->kv->mod_revision == want->kv->mod_revision &&
                              bytes_eq(&e->kv->key, &want->kv->key) &&
                              bytes_eq(&e->kv->value, &want->kv->value),
                          "watch %lld: event %zu differs from the history (rev %lld vs %lld)",
                          (long long)id, seen, (long long)e->kv->mod_revision,
                          (long long)want->kv->mod_revision);
            ck_assert_int_eq(e->kv->version, want->kv->version);
            ck_assert_int_eq(e->kv->create_revision, want->kv->create_revision);
            if (prev_kv)
                ck_assert_msg((e->prev_kv != NULL) == (want->prev_kv != NULL) &&
                                  (!e->prev_kv || e->prev_kv->mod_revision ==
                                                      want->prev_kv->mod_revision),
                              "watch %lld: prev_kv differs at rev %lld", (long long)id,
                              (long long)e->kv->mod_revision);
            else
                ck_assert_ptr_null(e->prev_kv);
            seen++;
        }
        last_rev_of_prev_resp = r->events[r->n_events - 1]->kv->mod_revision;
    }
    pthread_mutex_unlock(&c->mu);
    while (h < hist->n && (hist->events[h]->kv->mod_revision < start_rev ||
                           !in_range(&hist->events[h]->kv->key, key, end)))
        h++;
    ck_assert_msg(h == hist->n, "watch %lld: %zu events delivered, history has more",
                  (long long)id, seen);
    return seen;
}

/* Done when watch id has delivered an event at revision >= *(int64_t *)arg. */
struct upto {
    int64_t id, rev;
};

static int reached(struct collector *c, void *arg)
{
    const struct upto *u = arg;
    for (size_t i = c->n; i-- > 0;) {
        const Etcdserverpb__WatchResponse *r = c->resps[i];
        if (r->watch_id == u->id && r->n_events &&
            r->events[r->n_events - 1]->kv->mod_revision >= u->rev)
            return 1;
    }
    return 0;
}

static int progress_count(struct collector *c)
{
    int n = 0;
    for (size_t i = 0; i < c->n; i++)
        n += is_progress(c->resps[i]);
    return n;
}

struct progress_wait {
    int count;
};

static int got_progress(struct collector *c, void *arg)
{
    return progress_count(c) >= ((struct progress_wait *)arg)->count;
}

/* Requests progress and waits for its answer: every event written before is then
 * delivered (guarantee 6). */
static void sync_stream(struct watch_stream *s, struct collector *c)
{
    pthread_mutex_lock(&c->mu);
    struct progress_wait w = {progress_count(c) + 1};
    pthread_mutex_unlock(&c->mu);
    request_progress(s);
    wait_until(c, got_progress, &w);
}

/* ---- writers ---- */

struct writer {
    struct mvcc *m;
    unsigned seed;
    int ops;
    int acked;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < w->ops; i++) {
        char key[32], key2[32], val[32];
        snprintf(key, sizeof(key), "k/%02d", rand_r(&w->seed) % 40);
        snprintf(key2, sizeof(key2), "k/%02d", rand_r(&w->seed) % 40);
        snprintf(val, sizeof(val), "v%u-%d", w->seed, i);
        struct arena a = {0};
        fdb_error_t se = 0;
        int op = rand_r(&w->seed) % 10, err;
        if (op < 6) {
            Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
            p.key = B(key);
            p.value = B(val);
            Etcdserverpb__PutResponse resp;
            err = mvcc_put(w->m, &p, &resp, &a, &se);
        } else if (op < 8) {
            Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
            d.key = B(key);
            if (op == 7)
                d.range_end = B(key2); /* empty when key2 <= key: deletes nothing */
            Etcdserverpb__DeleteRangeResponse resp;
            err = mvcc_delete_range(w->m, &d, &resp, &a, &se);
        } else {
            /* two puts in one revision */
            Etcdserverpb__PutRequest p1 = ETCDSERVERPB__PUT_REQUEST__INIT, p2 = p1;
            p1.key = B(key);
            p1.value = B(val);
            p2.key = B("k/zz");
            p2.value = B(val);
            Etcdserverpb__RequestOp o1 = ETCDSERVERPB__REQUEST_OP__INIT, o2 = o1;
            o1.request_case = o2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            o1.request_put = &p1;
            o2.request_put = &p2;
            Etcdserverpb__RequestOp *ops[2] = {&o1, &o2};
            Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
            int same = strcmp(key, "k/zz") == 0;
            t.success = ops;
            t.n_success = same ? 1 : 2;
            Etcdserverpb__TxnResponse resp;
            err = mvcc_txn(w->m, &t, &resp, &a, &se);
        }
        if (!err)
            w->acked++;
        arena_free(&a);
    }
    return NULL;
}

struct writers {
    pthread_t th[8];
    struct writer w[8];
    int n;
};

/* Starts n writers (at most 8) of ops writes each; seed varies their keys. */
static void writers_start(struct writers *ws, struct mvcc *m, int n, int ops, unsigned seed)
{
    ws->n = n;
    for (int i = 0; i < n; i++) {
        ws->w[i] = (struct writer){m, seed + (unsigned)i, ops, 0};
        pthread_create(&ws->th[i], NULL, writer_main, &ws->w[i]);
    }
}

static void writers_join(struct writers *ws)
{
    for (int i = 0; i < ws->n; i++) {
        pthread_join(ws->th[i], NULL);
        ck_assert_int_gt(ws->w[i].acked, 0);
    }
}

static void run_writers(struct mvcc *m, int n, int ops)
{
    struct writers ws;
    writers_start(&ws, m, n, ops, 1000u);
    writers_join(&ws);
}

/* ---- tests ---- */

static void two_processes(int faults)
{
    char prefix[64];
    fresh_prefix("watch-two", prefix, sizeof(prefix));
    struct mvcc *ma = mvcc_open_on(prefix), *mb = mvcc_open_on(prefix);
    struct watch_hub *ha = open_hub(ma), *hb = open_hub(mb);
    struct collector ca, cb;
    collector_init(&ca);
    collector_init(&cb);
    struct watch_stream *sa = open_stream(ha, &ca), *sb = open_stream(hb, &cb);
    int64_t start = current_rev(ma) + 1;
    create_watch(sa, 1, "k/", "k0", 0, 1);
    create_watch(sb, 1, "k/", "k0", 0, 0);
    create_watch(sb, 2, "k/05", NULL, 0, 1);
    create_watch(sb, 3, "k/10", "k/20", 0, 0);
    sync_stream(sa, &ca); /* the watches exist before the first write */
    sync_stream(sb, &cb);

    if (faults && H.embedded)
        embedded_set_faults(H.db, 77, 100);
    run_writers(ma, 4, 150); /* all writes through "process" A */
    if (faults && H.embedded)
        embedded_set_faults(H.db, 0, 0);
    int64_t last = current_rev(ma);
    ck_assert_int_ge(last, start);

    struct upto ua = {1, last}, ub = {1, last};
    wait_until(&ca, reached, &ua);
    wait_until(&cb, reached, &ub);
    sync_stream(sb, &cb);

    struct arena a = {0};
    struct mvcc_events hist = history(ma, start - 1, &a);
    size_t na = check_watch(&ca, 1, &hist, "k/", "k0", start, 1);
    size_t nb = check_watch(&cb, 1, &hist, "k/", "k0", start, 0);
    ck_assert_uint_eq(na, nb);
    ck_assert_uint_eq(na, hist.n); /* every write was under k/ */
    check_watch(&cb, 2, &hist, "k/05", NULL, start, 1);
    check_watch(&cb, 3, &hist, "k/10", "k/20", start, 0);
    arena_free(&a);

    watch_stream_close(sa);
    watch_stream_close(sb);
    watch_hub_destroy(ha);
    watch_hub_destroy(hb);
    collector_free(&ca);
    collector_free(&cb);
    mvcc_close(ma);
    mvcc_close(mb);
}

START_TEST(test_writes_through_one_process_reach_watchers_of_another)
{
    two_processes(0);
}
END_TEST

START_TEST(test_two_processes_under_store_faults)
{
    SKIP_IF_NOT_EMBEDDED();
    two_processes(1);
}
END_TEST

START_TEST(test_replay_from_many_revisions_then_live)
{
    char prefix[64];
    fresh_prefix("watch-replay", prefix, sizeof(prefix));
    struct mvcc *m = mvcc_open_on(prefix);
    int64_t first = current_rev(m) + 1;
    run_writers(m, 4, 600); /* about 2,400 revisions: several catch-up chunks */
    int64_t mid = current_rev(m);
    struct arena ha = {0};
    struct mvcc_events early = history(m, first - 1, &ha);
    ck_assert_uint_gt(early.n, 2000);

    struct watch_hub *hub = open_hub(m);
    struct collector c;
    collector_init(&c);
    struct watch_stream *s = open_stream(hub, &c);
    /* 40 watchers: groups sharing a start revision, and scattered ones */
    enum { N = 40 };
    int64_t starts[N];
    const char *keys[N], *ends[N];
    for (int i = 0; i < N; i++) {
        starts[i] = i < 20 ? early.events[(i % 4) * 500]->kv->mod_revision
                           : early.events[(size_t)i * 53 % early.n]->kv->mod_revision;
        keys[i] = i % 3 == 0 ? "k/" : i % 3 == 1 ? "k/05" : "k/10";
        ends[i] = i % 3 == 0 ? "k0" : i % 3 == 1 ? NULL : "k/30";
        create_watch(s, 100 + i, keys[i], ends[i], starts[i], i % 2);
    }
    sync_stream(s, &c); /* every watcher has caught up */
    run_writers(m, 2, 100); /* then live */
    int64_t last = current_rev(m);
    ck_assert_int_gt(last, mid);
    struct upto u = {100, last};
    wait_until(&c, reached, &u);
    sync_stream(s, &c);

    struct arena a = {0};
    struct mvcc_events hist = history(m, first - 1, &a);
    for (int i = 0; i < N; i++)
        check_watch(&c, 100 + i, &hist, keys[i], ends[i], starts[i], i % 2);
    arena_free(&a);
    arena_free(&ha);
    watch_stream_close(s);
    watch_hub_destroy(hub);
    collector_free(&c);
    mvcc_close(m);
}
END_TEST

struct created_wait {
    size_t count;
};

static int got_created(struct collector *c, void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        n += c->resps[i]->created;
    return n >= ((struct created_wait *)arg)->count;
}

static const Etcdserverpb__WatchResponse *last_created(struct collector *c)
{
    const Etcdserverpb__WatchResponse *r = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (c->resps[i]->created)
            r = c->resps[i];
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Events of each watch id on c, counted into counts[id] for ids < n. */
static void count_events(struct collector *c, int *counts, int n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (c->resps[i]->n_events && c->resps[i]->watch_id >= 0 && c->resps[i]->watch_id < n)
            counts[c->resps[i]->watch_id] += (int)c->resps[i]->n_events;
    pthread_mutex_unlock(&c->mu);
}

static void put_key(struct mvcc *m, const char *key)
{
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(key);
    p.value = B("x");
    Etcdserverpb__PutResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_put(m, &p, &resp, &a, &se));
    arena_free(&a);
}

START_TEST(test_thousands_of_watchers_on_one_stream)
{
    enum { N = 3000 };
    char prefix[64];
    fresh_prefix("watch-ids", prefix, sizeof(prefix));
    struct mvcc *m = mvcc_open_on(prefix);
    struct watch_hub *hub = open_hub(m);
    struct collector c;
    collector_init(&c);
    struct watch_stream *s = open_stream(hub, &c);
    char key[32];
    /* The client sends as fast as it can, and stops while the hub holds its input, as the
     * gRPC layer stops reading: what waits in the hub stays under WATCH_QUEUE_HOLD. */
    size_t most_waiting = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&c.mu);
        while (c.held)
            pthread_cond_wait(&c.cv, &c.mu);
        size_t waiting = (size_t)i - c.n;
        if (waiting > most_waiting)
            most_waiting = waiting;
        pthread_mutex_unlock(&c.mu);
        snprintf(key, sizeof(key), "w/%05d", i);
        create_watch(s, 0, key, NULL, 0, 0); /* the server picks the id */
    }
    struct created_wait cw = {N};
    wait_until(&c, got_created, &cw);
    pthread_mutex_lock(&c.mu);
    ck_assert_int_gt(c.holds, 0); /* each create reads the store: the client is faster */
    ck_assert_int_eq(c.resumes, c.holds);
    ck_assert_uint_lt(most_waiting, WATCH_QUEUE_HOLD);
    pthread_mutex_unlock(&c.mu);
    /* etcd's AutoWatchID: 0, 1, 2, ... in creation order */
    pthread_mutex_lock(&c.mu);
    for (size_t i = 0; i < c.n; i++) {
        ck_assert(c.resps[i]->created && !c.resps[i]->canceled);
        ck_assert_int_eq(c.resps[i]->watch_id, (int64_t)i);
    }
    pthread_mutex_unlock(&c.mu);

    for (int i = 0; i < N; i += 2)
        cancel_watch(s, i);
    cancel_watch(s, 999999); /* unknown: ignored, no response */
    create_watch(s, 1, "dup", NULL, 0, 0); /* id 1 is in use */
    cw.count = N + 1;
    wait_until(&c, got_created, &cw);
    const Etcdserverpb__WatchResponse *dup = last_created(&c);
    ck_assert_int_eq(dup->watch_id, -1);
    ck_assert(dup->canceled);
    ck_assert_str_eq(dup->cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream");
    create_watch(s, 2, "w/00002", NULL, 0, 0); /* id 2 was canceled: free again */
    cw.count = N + 2;
    wait_until(&c, got_created, &cw);
    const Etcdserverpb__WatchResponse *again = last_created(&c);
    ck_assert_int_eq(again->watch_id, 2);
    ck_assert(!again->canceled);

    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "w/%05d", i * 73 % N);
        put_key(m, key);
    }
    sync_stream(s, &c);
    static int counts[N];
    count_events(&c, counts, N);
    int canceled_responses = 0;
    pthread_mutex_lock(&c.mu);
    for (size_t i = 0; i < c.n; i++)
        canceled_responses += c.resps[i]->canceled && !c.resps[i]->created;
    pthread_mutex_unlock(&c.mu);
    ck_assert_int_eq(canceled_responses, N / 2); /* one per real cancel, none for 999999 */
    for (int i = 0; i < 40; i++) {
        int w = i * 73 % N;
        int want = (w % 2 == 1 || w == 2) ? 1 : 0; /* odd ids live, 2 re-created */
        ck_assert_msg(counts[w] == want, "watch %d got %d events, want %d", w, counts[w], want);
    }
    watch_stream_close(s);
    watch_hub_destroy(hub);
    collector_free(&c);
    mvcc_close(m);
}
END_TEST

START_TEST(test_client_that_stops_reading_is_bounded_then_catches_up)
{
    char prefix[64];
    fresh_prefix("watch-slow", prefix, sizeof(prefix));
    struct mvcc *m = mvcc_open_on(prefix);
    enum { LIMIT = 8 << 10 };
    struct watch_hub *hub = open_hub_limited(m, LIMIT);
    struct collector c;
    collector_init(&c);
    struct watch_stream *s = open_stream(hub, &c);
    int64_t start = current_rev(m) + 1;
    create_watch(s, 1, "k/", "k0", 0, 1);
    create_watch(s, 2, "k/07", NULL, 0, 0);
    sync_stream(s, &c);
    pthread_mutex_lock(&c.mu);
    c.stalled = 1; /* from now on the client reads nothing */
    pthread_mutex_unlock(&c.mu);
    run_writers(m, 4, 300);
    int64_t last = current_rev(m);
    /* Let the hub try to deliver everything it can to the stalled client. */
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&c.mu);
    size_t queued = c.max_unread, largest = c.largest;
    c.stalled = 0;
    c.unread = 0; /* the client reads everything queued */
    pthread_mutex_unlock(&c.mu);
    /* What waits for the client stays within the limit plus one response per watcher. */
    ck_assert_msg(queued <= LIMIT + 2 * largest, "%zu bytes queued for a stalled client", queued);
    struct upto u = {1, last};
    wait_until(&c, reached, &u);
    sync_stream(s, &c);
    struct arena a = {0};
    struct mvcc_events hist = history(m, start - 1, &a);
    ck_assert_uint_eq(check_watch(&c, 1, &hist, "k/", "k0", start, 1), hist.n);
    check_watch(&c, 2, &hist, "k/07", NULL, start, 0);
    size_t history_bytes = 0;
    for (size_t i = 0; i < hist.n; i++)
        history_bytes += mvccpb__event__get_packed_size(hist.events[i]);
    ck_assert_uint_gt(history_bytes, 4 * LIMIT); /* much more than the limit was written */
    arena_free(&a);
    watch_stream_close(s);
    watch_hub_destroy(hub);
    collector_free(&c);
    mvcc_close(m);
}
END_TEST

/* A Range's count and the revision it was read at. limit 1 or count_only: the key index
 * counts (once loaded); limit 0: the whole range is read. */
static int64_t range_count(struct mvcc *m, const ProtobufCBinaryData *key,
                           const ProtobufCBinaryData *end, int64_t limit, int count_only,
                           int64_t rev, int64_t *at)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = *key;
    r.range_end = *end;
    r.limit = limit;
    r.count_only = count_only;
    r.revision = rev;
    Etcdserverpb__RangeResponse resp;
    struct arena a = {0};
    fdb_error_t se = 0;
    MVCC_OK_(mvcc_range(m, &r, &resp, &a, &se));
    if (!count_only)
        ck_assert_int_eq(resp.more, limit > 0 && resp.count > limit);
    int64_t count = resp.count;
    *at = resp.header->revision;
    arena_free(&a);
    return count;
}

START_TEST(test_range_counts_from_the_key_index_match_a_scan)
{
    enum { PRELOAD = 25000, BATCH = 100 }; /* more keys than one index load transaction */
    char prefix[64];
    fresh_prefix("watch-count", prefix, sizeof(prefix));
    struct mvcc *m = mvcc_open_on(prefix);
    for (int i = 0; i < PRELOAD; i += BATCH) {
        Etcdserverpb__PutRequest p[BATCH];
        Etcdserverpb__RequestOp o[BATCH], *ops[BATCH];
        char keys[BATCH][16];
        for (int j = 0; j < BATCH; j++) {
            snprintf(keys[j], sizeof(keys[j]), "k/%05d", i + j);
            p[j] = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
            p[j].key = B(keys[j]);
            p[j].value = B("v");
            o[j] = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
            o[j].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            o[j].request_put = &p[j];
            ops[j] = &o[j];
        }
        Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
        t.success = ops;
        t.n_success = BATCH;
        Etcdserverpb__TxnResponse resp;
        struct arena a = {0};
        fdb_error_t se = 0;
        MVCC_OK_(mvcc_txn(m, &t, &resp, &a, &se));
        arena_free(&a);
    }
    /* The index loads while writers create and delete keys among the preloaded ones. */
    struct writers ws;
    writers_start(&ws, m, 4, 300, 2000u);
    struct watch_hub *hub = open_hub(m);
    writers_join(&ws);
    static const uint8_t zero = 0;
    const ProtobufCBinaryData all = {1, (uint8_t *)&zero};
    int64_t n = 0;
    int ready = 0;
    for (int i = 0; i < 2000 && !ready; i++) {
        ready = mvcc_index_count(m, &all, &all, current_rev(m), &n) == 0;
        if (!ready)
            usleep(10 * 1000);
    }
    ck_assert_msg(ready, "the key index did not load");

    const char *ranges[][2] = {{"k/", "k0"}, {"k/1", "k/3"}, {"k/00020", NULL},
                               {"k/3", "k/1"}, {"a", "z"}, {"k/zz", "k/zz\x01"}};
    writers_start(&ws, m, 4, 300, 3000u);
    int indexed = 0;
    for (int round = 0; round < 30; round++)
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
            ProtobufCBinaryData key = B(ranges[i][0]);
            ProtobufCBinaryData end = ranges[i][1] ? B(ranges[i][1]) : all;
            int64_t at, at_read, at_count;
            int64_t counted = range_count(m, &key, &end, 1, 0, 0, &at);
            int64_t read = range_count(m, &key, &end, 0, 0, at, &at_read);
            ck_assert_int_eq(counted, read);
            /* a next page at that revision, as kube-apiserver's continue reads it */
            ck_assert_int_eq(range_count(m, &key, &end, 1, 0, at, &at_read), read);
            int64_t count_only = range_count(m, &key, &end, 0, 1, 0, &at_count);
            ck_assert_int_eq(count_only, range_count(m, &key, &end, 0, 0, at_count, &at_read));
            int64_t from_index;
            if (mvcc_index_count(m, &key, &end, at, &from_index) == 0) {
                ck_assert_int_eq(from_index, read); /* at an older revision: the ring */
                indexed++;
            }
        }
    writers_join(&ws);
    ck_assert_int_gt(indexed, 0);
    watch_hub_destroy(hub);
    mvcc_close(m);
}
END_TEST

int main(void)
{
    harness_start();
    Suite *s = suite_create("watch");
    TCase *tc = tcase_create("hub");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_writes_through_one_process_reach_watchers_of_another);
    tcase_add_test(tc, test_two_processes_under_store_faults);
    tcase_add_test(tc, test_replay_from_many_revisions_then_live);
    tcase_add_test(tc, test_thousands_of_watchers_on_one_stream);
    tcase_add_test(tc, test_client_that_stops_reading_is_bounded_then_catches_up);
    tcase_add_test(tc, test_range_counts_from_the_key_index_match_a_scan);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    harness_stop();
    return failed ? 1 : 0;
}
