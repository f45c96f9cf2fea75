/* main.c -- the etcd-fdb process: flags, the store, the gRPC server, signals.
 *
 * Start-up: parse flags -> select the store provider -> start the store's network thread
 * -> open the database -> open mvcc -> register services -> serve until SIGTERM/SIGINT,
 * then stop accepting, finish in-flight calls, close the store and exit 0. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kv/embedded.h"
#include "kv/fdb_loader.h"
#include "kv/log.h"
#include "lease/lease.h"
#include "mvcc/keys.h"
#include "server/server.h"

struct options {
    const char *name;
    const char *data_dir;
    const char *listen_client_urls;
    const char *advertise_client_urls;
    const char *cert_file, *key_file, *trusted_ca_file;
    int client_cert_auth;
    int64_t max_request_bytes;
    int max_txn_ops;
    const char *log_level;
    const char *backend;
    const char *fdb_cluster_file;
    const char *prefix;
    const char *progress_notify_interval;
};

enum {
    OPT_NAME = 256, OPT_DATA_DIR, OPT_LISTEN, OPT_ADVERTISE, OPT_CERT, OPT_KEY, OPT_CA,
    OPT_CLIENT_CERT_AUTH, OPT_MAX_REQUEST_BYTES, OPT_MAX_TXN_OPS, OPT_LOG_LEVEL, OPT_BACKEND,
    OPT_FDB_CLUSTER_FILE, OPT_PREFIX, OPT_PROGRESS_NOTIFY, OPT_HELP, OPT_VERSION,
};

static const char usage[] =
    "Usage: etcd-fdb [flags]\n"
    "Serves etcd's v3 gRPC API on an ordered transactional store with FoundationDB's\n"
    "semantics.\n"
    "\n"
    "  --name NAME                      member name (default \"default\")\n"
    "  --data-dir DIR                   embedded store directory (default \"NAME.etcd-fdb\")\n"
    "  --listen-client-urls URLS        comma-separated http:// or https:// URLs\n"
    "                                   (default \"http://localhost:2379\")\n"
    "  --advertise-client-urls URLS     URLs reported to clients (default: the listen URLs)\n"
    "  --cert-file FILE                 TLS certificate for https listeners\n"
    "  --key-file FILE                  TLS key for https listeners\n"
    "  --trusted-ca-file FILE           CA that signs client certificates\n"
    "  --client-cert-auth               refuse clients without a certificate signed by the CA\n"
    "  --max-request-bytes N            largest request accepted (default 1572864)\n"
    "  --max-txn-ops N                  most operations in one txn (default 128)\n"
    "  --log-level LEVEL                debug, info, warn or error (default info)\n"
    "  --backend embedded|fdb           store provider (default embedded)\n"
    "  --fdb-cluster-file FILE          FoundationDB cluster file (with --backend=fdb)\n"
    "  --prefix NAME                    subspace of this instance in the store (default \"\")\n"
    "  --experimental-watch-progress-notify-interval DURATION  (default 10m)\n"
    "  --help, --version\n";

static int parse_int64(const char *flag, const char *s, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "etcd-fdb: invalid value %s for %s\n", s, flag);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_flags(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"listen-client-urls", required_argument, NULL, OPT_LISTEN},
        {"advertise-client-urls", required_argument, NULL, OPT_ADVERTISE},
        {"cert-file", required_argument, NULL, OPT_CERT},
        {"key-file", required_argument, NULL, OPT_KEY},
        {"trusted-ca-file", required_argument, NULL, OPT_CA},
        {"client-cert-auth", optional_argument, NULL, OPT_CLIENT_CERT_AUTH},
        {"max-request-bytes", required_argument, NULL, OPT_MAX_REQUEST_BYTES},
        {"max-txn-ops", required_argument, NULL, OPT_MAX_TXN_OPS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"fdb-cluster-file", required_argument, NULL, OPT_FDB_CLUSTER_FILE},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"experimental-watch-progress-notify-interval", required_argument, NULL,
         OPT_PROGRESS_NOTIFY},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    int64_t v;
    while ((c = getopt_long_only(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_NAME: o->name = optarg; break;
        case OPT_DATA_DIR: o->data_dir = optarg; break;
        case OPT_LISTEN: o->listen_client_urls = optarg; break;
        case OPT_ADVERTISE: o->advertise_client_urls = optarg; break;
        case OPT_CERT: o->cert_file = optarg; break;
        case OPT_KEY: o->key_file = optarg; break;
        case OPT_CA: o->trusted_ca_file = optarg; break;
        case OPT_CLIENT_CERT_AUTH:
            o->client_cert_auth = !optarg || strcmp(optarg, "true") == 0;
            if (optarg && strcmp(optarg, "true") != 0 && strcmp(optarg, "false") != 0) {
                fprintf(stderr, "etcd-fdb: invalid value %s for --client-cert-auth\n", optarg);
                return -1;
            }
            break;
        case OPT_MAX_REQUEST_BYTES:
            if (parse_int64("--max-request-bytes", optarg, 1, &o->max_request_bytes))
                return -1;
            break;
        case OPT_MAX_TXN_OPS:
            if (parse_int64("--max-txn-ops", optarg, 1, &v))
                return -1;
            o->max_txn_ops = (int)v;
            break;
        case OPT_LOG_LEVEL:
            o->log_level = optarg;
            if (log_set_level_name(optarg) != 0) {
                fprintf(stderr, "etcd-fdb: invalid value %s for --log-level\n", optarg);
                return -1;
            }
            break;
        case OPT_BACKEND:
            o->backend = optarg;
            if (strcmp(optarg, "embedded") != 0 && strcmp(optarg, "fdb") != 0) {
                fprintf(stderr, "etcd-fdb: --backend must be embedded or fdb, not %s\n", optarg);
                return -1;
            }
            break;
        case OPT_FDB_CLUSTER_FILE: o->fdb_cluster_file = optarg; break;
        case OPT_PREFIX: o->prefix = optarg; break;
        case OPT_PROGRESS_NOTIFY: o->progress_notify_interval = optarg; break;
        case OPT_HELP:
            fputs(usage, stdout);
            exit(0);
        case OPT_VERSION:
            printf("etcd-fdb Version: %s\nAPI Version: %s\n", ETCD_FDB_VERSION, ETCD_COMPAT_VERSION);
            exit(0);
        case ':':
            fprintf(stderr, "etcd-fdb: flag needs an argument: %s\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "etcd-fdb: unknown flag: %s\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "etcd-fdb: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

static void free_urls(struct rpc_listener *l, char **urls, int n);

/* Splits a comma-separated URL list into host:port listeners. On error nothing is left
 * allocated. */
static int parse_urls(const char *list, struct rpc_listener **out, char ***urls, int *n)
{
    char *copy = strdup(list);
    int cap = 8;
    struct rpc_listener *l = calloc((size_t)cap, sizeof(*l));
    char **u = calloc((size_t)cap + 1, sizeof(*u));
    if (!copy || !l || !u)
        abort();
    int count = 0, bad = 0;
    char *save = NULL;
    for (char *url = strtok_r(copy, ",", &save); url && !bad; url = strtok_r(NULL, ",", &save)) {
        int tls = strncmp(url, "https://", 8) == 0;
        const char *rest = tls ? url + 8 : strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
        if (!rest) {
            fprintf(stderr, "etcd-fdb: URL must start with http:// or https://: %s\n", url);
            bad = 1;
        } else if (!*rest || strchr(rest, '/') || !strchr(rest, ':')) {
            fprintf(stderr, "etcd-fdb: URL needs host:port and no path: %s\n", url);
            bad = 1;
        } else if (count == cap) {
            fprintf(stderr, "etcd-fdb: too many URLs\n");
            bad = 1;
        } else {
            l[count].address = strdup(rest);
            l[count].tls = tls;
            u[count] = strdup(url);
            count++;
        }
    }
    free(copy);
    if (!bad && count == 0) {
        fprintf(stderr, "etcd-fdb: no URL given\n");
        bad = 1;
    }
    if (bad) {
        free_urls(l, u, count);
        return -1;
    }
    *out = l;
    *urls = u;
    *n = count;
    return 0;
}

/* Parses a Go-style duration ("500ms", "5s", "10m", "1h", "1m30s") into milliseconds. */
static int parse_duration_ms(const char *s, int64_t *out)
{
    int64_t total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0)
            return -1;
        double unit;
        if (strncmp(end, "ms", 2) == 0) {
            unit = 1;
            end += 2;
        } else if (*end == 's') {
            unit = 1000;
            end++;
        } else if (*end == 'm') {
            unit = 60000;
            end++;
        } else if (*end == 'h') {
            unit = 3600000;
            end++;
        } else {
            return -1;
        }
        total += (int64_t)(v * unit);
        p = end;
    }
    if (total <= 0)
        return -1;
    *out = total;
    return 0;
}

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = b; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h ? h : 1;
}

Etcdserverpb__ResponseHeader *server_header(struct server *s, struct rpc_call *call,
                                            int64_t revision)
{
    Etcdserverpb__ResponseHeader *h = arena_alloc(rpc_call_arena(call), sizeof(*h));
    etcdserverpb__response_header__init(h);
    h->revision = revision;
    server_fill_header(s, h);
    return h;
}

void server_fill_header(struct server *s, Etcdserverpb__ResponseHeader *h)
{
    if (!h)
        return;
    h->cluster_id = s->cluster_id;
    h->member_id = s->member_id;
    h->raft_term = 1;
}

static void *network_main(void *arg)
{
    const struct kv_api *api = arg;
    fdb_error_t err = api->run_network();
    if (err)
        log_msg(LOG_ERROR, "store network stopped: %s", api->get_error(err));
    return NULL;
}

/* Everything the process starts, so that every exit path releases exactly what it made. */
struct process {
    struct rpc_listener *listeners, *adv;
    char **listen_urls, **client_urls;
    int n_listeners, n_adv;
    const struct kv_api *api;
    int network_started;
    pthread_t network;
    FDBDatabase *db;
    struct server srv;
    struct rpc_server *rpc;
    int serving;
};

static void free_urls(struct rpc_listener *l, char **urls, int n)
{
    for (int i = 0; l && i < n; i++) {
        free((char *)l[i].address);
        free(urls[i]);
    }
    free(l);
    free(urls);
}

/* Stops and frees, in reverse order of start, whatever p holds. */
static void process_stop(struct process *p)
{
    if (p->rpc) {
        if (p->serving)
            rpc_server_shutdown(p->rpc);
        rpc_server_destroy(p->rpc);
    }
    watch_hub_destroy(p->srv.watch);
    lease_mgr_destroy(p->srv.lease);
    mvcc_close(p->srv.mvcc);
    if (p->db)
        p->api->database_destroy(p->db);
    if (p->network_started) {
        p->api->stop_network();
        pthread_join(p->network, NULL);
    }
    free_urls(p->listeners, p->listen_urls, p->n_listeners);
    free_urls(p->adv, p->client_urls, p->n_adv);
}

/* Starts the store, the data model, the services and the gRPC server. Returns 0, or the exit
 * code after printing why (then process_stop releases what was started). */
static int process_start(struct process *p, const struct options *o, struct kv_api *loaded)
{
    if (parse_urls(o->listen_client_urls, &p->listeners, &p->listen_urls, &p->n_listeners) != 0 ||
        parse_urls(o->advertise_client_urls, &p->adv, &p->client_urls, &p->n_adv) != 0)
        return 2;
    for (int i = 0; i < p->n_listeners; i++)
        if (p->listeners[i].tls && (!o->cert_file || !o->key_file)) {
            fprintf(stderr, "etcd-fdb: https listener %s needs --cert-file and --key-file\n",
                    p->listen_urls[i]);
            return 2;
        }
    if (o->client_cert_auth && !o->trusted_ca_file) {
        fprintf(stderr, "etcd-fdb: --client-cert-auth needs --trusted-ca-file\n");
        return 2;
    }
    int64_t progress_ms = 10 * 60 * 1000;
    if (o->progress_notify_interval && parse_duration_ms(o->progress_notify_interval, &progress_ms)) {
        fprintf(stderr, "etcd-fdb: invalid duration %s for "
                        "--experimental-watch-progress-notify-interval\n",
                o->progress_notify_interval);
        return 2;
    }

    const char *db_path;
    if (strcmp(o->backend, "fdb") == 0) {
        char msg[512];
        if (fdb_loader_open(NULL, loaded, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "etcd-fdb: %s\n", msg);
            return 1;
        }
        p->api = loaded;
        db_path = o->fdb_cluster_file; /* NULL: FoundationDB's default cluster file */
    } else {
        p->api = embedded_api();
        if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "etcd-fdb: cannot create --data-dir %s: %s\n", o->data_dir,
                    strerror(errno));
            return 1;
        }
        db_path = o->data_dir;
    }
    const struct kv_api *api = p->api;
    fdb_error_t err = api->select_api_version(KV_API_VERSION);
    if (!err && strcmp(o->backend, "fdb") != 0) {
        char knob[64];
        int n = snprintf(knob, sizeof(knob), "memtable_insert_hint_prefix_bytes=%zu",
                         keys_space_prefix_len(o->prefix));
        err = api->network_set_option(FDB_NET_OPTION_KNOB, (const uint8_t *)knob, n);
    }
    if (!err)
        err = api->setup_network();
    if (err) {
        fprintf(stderr, "etcd-fdb: store: %s\n", api->get_error(err));
        return 1;
    }
    pthread_create(&p->network, NULL, network_main, (void *)api);
    pthread_setname_np(p->network, "kv-network");
    p->network_started = 1;
    err = api->create_database(db_path, &p->db);
    if (err) {
        p->db = NULL;
        fprintf(stderr, "etcd-fdb: cannot open the store%s%s\n",
                strcmp(api->name, "embedded") ? ": " : " (see the message above)",
                strcmp(api->name, "embedded") ? api->get_error(err) : "");
        return 1;
    }
    struct server *srv = &p->srv;
    struct mvcc_config mc = {api, p->db, o->prefix, o->max_txn_ops};
    if (mvcc_open(&mc, &srv->mvcc) != 0) {
        fprintf(stderr, "etcd-fdb: cannot open the data model\n");
        return 1;
    }
    srv->api = api;
    srv->db = p->db;
    srv->name = o->name;
    srv->data_dir = o->data_dir;
    srv->client_urls = p->client_urls;
    srv->n_client_urls = p->n_adv;
    srv->cluster_id = fnv1a("etcd-fdb cluster", o->prefix);
    srv->member_id = fnv1a(o->name, o->advertise_client_urls);
    srv->max_request_bytes = o->max_request_bytes;
    struct watch_config wc = {srv->mvcc, progress_ms, o->max_request_bytes, 0, srv->cluster_id,
                              srv->member_id};
    if (watch_hub_create(&wc, &srv->watch) != 0) {
        srv->watch = NULL;
        fprintf(stderr, "etcd-fdb: cannot start the watch hub\n");
        return 1;
    }
    struct rpc_config rc = {0};
    rc.listeners = p->listeners;
    rc.n_listeners = p->n_listeners;
    rc.cert_file = o->cert_file;
    rc.key_file = o->key_file;
    rc.trusted_ca_file = o->trusted_ca_file;
    rc.client_cert_auth = o->client_cert_auth;
    rc.max_receive_bytes = o->max_request_bytes + 512 * 1024; /* etcd's gRPC overhead */
    if (rpc_server_create(&rc, &p->rpc) != 0) {
        p->rpc = NULL;
        return 1;
    }
    srv->rpc = p->rpc;
    if (lease_mgr_create(srv->mvcc, &srv->lease) != 0) {
        srv->lease = NULL;
        fprintf(stderr, "etcd-fdb: cannot start lease expiry\n");
        return 1;
    }
    kv_service_register(srv, p->rpc);
    lease_service_register(srv, p->rpc);
    maintenance_service_register(srv, p->rpc);
    watch_service_register(srv, p->rpc);
    if (rpc_server_start(p->rpc) != 0) {
        fprintf(stderr, "etcd-fdb: cannot start serving (see the log above)\n");
        return 1;
    }
    p->serving = 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    o.name = "default";
    o.listen_client_urls = "http://localhost:2379";
    o.max_request_bytes = 1572864;
    o.max_txn_ops = 128;
    o.backend = "embedded";
    o.prefix = "";
    if (parse_flags(argc, argv, &o) != 0) {
        fprintf(stderr, "Run 'etcd-fdb --help' for the flags.\n");
        return 2;
    }
    char default_dir[512];
    if (!o.data_dir) {
        snprintf(default_dir, sizeof(default_dir), "%s.etcd-fdb", o.name);
        o.data_dir = default_dir;
    }
    if (!o.advertise_client_urls)
        o.advertise_client_urls = o.listen_client_urls;

    /* Signals are taken by sigwait() in this thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct process p;
    memset(&p, 0, sizeof(p));
    struct kv_api loaded;
    int rc = process_start(&p, &o, &loaded);
    if (rc) {
        process_stop(&p);
        return rc;
    }
    log_msg(LOG_INFO, "etcd-fdb %s ready: name=%s backend=%s data-dir=%s prefix=\"%s\"",
            ETCD_FDB_VERSION, o.name, p.api->name, strcmp(o.backend, "fdb") ? o.data_dir : "-",
            o.prefix);
    int sig;
    sigwait(&sigs, &sig);
    log_msg(LOG_INFO, "received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    process_stop(&p);
    log_msg(LOG_INFO, "stopped");
    return 0;
}
