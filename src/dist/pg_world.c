/* pg_world.c — init_process_group and destroy_process_group: reading torchrun's
 * environment or the init_method URL, reaching (or hosting) the rendezvous store, the
 * default group, new_group, and the rank runtime's chunk hooks.
 *
 * Who hosts the store: the driver does, at MASTER_ADDR:MASTER_PORT. Under an outside
 * launcher nobody does, so rank 0 tries to start a server on that address first (as
 * PyTorch's TCPStore does for its master) and simply connects when the port is taken.
 * A server this process started lives until the process exits, so that init after
 * destroy finds it again. Each init takes a new generation number from the store, and
 * every key of that generation carries it, so nothing of an earlier world is mistaken
 * for this one's. */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/interrupt.h"
#include "build_config.h"
#include "dist/fingerprint.h"
#include "dist/pg_internal.h"
#include "tensor/device.h"

pg_world pg_W;
static store_server *hosted_server; /* started by this process; lives until exit */

static pthread_mutex_t activity_lock = PTHREAD_MUTEX_INITIALIZER;
static char activity[160];
static char activity_copy[160];
static char last_activity[160], last_copy[160];

void pg_set_activity(const char *text) {
    pthread_mutex_lock(&activity_lock);
    snprintf(activity, sizeof activity, "%s", text ? text : "");
    if (text && *text) snprintf(last_activity, sizeof last_activity, "%s", text);
    pthread_mutex_unlock(&activity_lock);
}

const char *pg_last_activity(void) {
    pthread_mutex_lock(&activity_lock);
    memcpy(last_copy, last_activity, sizeof last_activity);
    pthread_mutex_unlock(&activity_lock);
    return last_copy[0] ? last_copy : NULL;
}

const char *pg_current_activity(void) {
    pthread_mutex_lock(&activity_lock);
    memcpy(activity_copy, activity, sizeof activity);
    pthread_mutex_unlock(&activity_lock);
    return activity_copy[0] ? activity_copy : NULL;
}

double pg_now(void) {
    return (double)ddp_now_ms() / 1000.0;
}

/* ---- environment ---------------------------------------------------------------- */

static bool parse_int(const char *s, int *out) {
    if (!s || !*s) return false;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 1 << 20) return false;
    *out = (int)v;
    return true;
}

static ddp_status env_int(const char *name, int *out) {
    const char *v = getenv(name);
    if (!v)
        return DDP_FAIL(DDP_ERR_ARG,
                        "init_process_group: environment variable %s is not set (env:// reads "
                        "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, as torchrun sets them; "
                        "or pass rank= and world_size=)",
                        name);
    if (!parse_int(v, out))
        return DDP_FAIL(DDP_ERR_ARG, "init_process_group: %s='%s' is not a number", name, v);
    return DDP_OK;
}

static void read_watchdog_settings(void) {
    const char *t = getenv("DDPLAB_COLLECTIVE_TIMEOUT");
    double v = t ? strtod(t, NULL) : 0;
    pg_W.timeout = v > 0 ? v : 5.0;
    const char *c = getenv("DDPLAB_COLLECTIVE_CHECK");
    pg_W.check = !(c && strcmp(c, "0") == 0);
}

/* ---- reaching the store ----------------------------------------------------------- */

/* Rank 0 hosts the store when nobody else does yet, then everyone connects. */
static ddp_status connect_tcp(const char *host, int port, int rank, double timeout) {
    if (rank == 0 && !hosted_server) {
        store_server *s;
        if (store_server_start(host, port, &s) == DDP_OK) hosted_server = s;
        /* DDP_ERR_IO: the port is taken, i.e. the driver (or an earlier world) hosts it */
    }
    return store_connect(host, port, timeout, &pg_W.store);
}

/* Writes "port token" to path atomically (a temporary file renamed over it). */
static ddp_status write_rendezvous_file(const char *path, int port, const char *token) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%d %s\n", port, token) > 0;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        int err = errno;
        unlink(tmp);
        return DDP_FAIL(DDP_ERR_IO, "init_process_group: cannot write '%s': %s", path,
                        strerror(err));
    }
    return DDP_OK;
}

/* Whether the store we reached holds `token` (and so is the one rank 0 published, not a
 * stranger that took over a stale file's port). */
static bool store_has_token(const char *token) {
    char *v = NULL;
    size_t len = 0;
    bool ok =
        store_get(pg_W.store, "ddp/file_token", 0.5, &v, &len) == DDP_OK && strcmp(v, token) == 0;
    free(v);
    return ok;
}

/* file:///path: rank 0 hosts a store on loopback and writes "port token" into the file;
 * the others read it, connect, and check the token (retrying while the file is missing
 * or stale, as a file left by an earlier run may be). */
static ddp_status connect_file(const char *path, int rank, double timeout) {
    if (rank == 0) {
        if (!hosted_server) DDP_CHECK(store_server_start("127.0.0.1", 0, &hosted_server));
        int port = store_server_port(hosted_server);
        unsigned char raw[16];
        char token[33];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(token, sizeof token, raw, sizeof raw);
        DDP_CHECK(store_connect("127.0.0.1", port, timeout, &pg_W.store));
        ddp_status s = store_set(pg_W.store, "ddp/file_token", token, strlen(token));
        if (s == DDP_OK) s = write_rendezvous_file(path, port, token);
        if (s != DDP_OK) {
            store_close(pg_W.store);
            pg_W.store = NULL;
        }
        return s;
    }
    double until = pg_now() + timeout;
    for (;;) {
        FILE *f = fopen(path, "r");
        int port = 0;
        char token[64] = "";
        if (f) {
            if (fscanf(f, "%d %63s", &port, token) != 2) port = 0;
            fclose(f);
        }
        if (port > 0 && store_connect("127.0.0.1", port, 0.3, &pg_W.store) == DDP_OK) {
            if (store_has_token(token)) return DDP_OK;
            store_close(pg_W.store);
            pg_W.store = NULL;
        }
        if (pg_now() >= until)
            return DDP_FAIL(DDP_ERR_TIMEOUT,
                            "init_process_group: rank 0 did not publish the rendezvous in '%s' "
                            "within %.1f s",
                            path, timeout);
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
        if (ddp_interrupt_pending())
            return DDP_FAIL(DDP_ERR_INTERRUPTED, "init_process_group: interrupted");
    }
}

/* Parses init_method and connects to the store. */
static ddp_status reach_store(const char *init_method, int rank, double timeout) {
    const char *m = init_method ? init_method : "env://";
    if (strcmp(m, "env://") == 0) {
        const char *addr = getenv("MASTER_ADDR");
        int port;
        if (!addr)
            return DDP_FAIL(DDP_ERR_ARG, "init_process_group: environment variable MASTER_ADDR "
                                         "is not set (env:// reads it, as torchrun sets it)");
        DDP_CHECK(env_int("MASTER_PORT", &port));
        snprintf(pg_W.host, sizeof pg_W.host, "%s", addr);
        return connect_tcp(addr, port, rank, timeout);
    }
    if (strncmp(m, "tcp://", 6) == 0) {
        const char *hp = m + 6;
        const char *colon = strrchr(hp, ':');
        int port;
        if (!colon || colon == hp || !parse_int(colon + 1, &port) || port > 65535)
            return DDP_FAIL(DDP_ERR_ARG,
                            "init_process_group: init_method '%s' should read tcp://host:port", m);
        snprintf(pg_W.host, sizeof pg_W.host, "%.*s", (int)(colon - hp), hp);
        return connect_tcp(pg_W.host, port, rank, timeout);
    }
    if (strncmp(m, "file://", 7) == 0) {
        if (m[7] == '\0')
            return DDP_FAIL(DDP_ERR_ARG, "init_process_group: init_method '%s' names no file", m);
        snprintf(pg_W.host, sizeof pg_W.host, "127.0.0.1");
        return connect_file(m + 7, rank, timeout);
    }
    return DDP_FAIL(DDP_ERR_ARG,
                    "init_process_group: init_method '%s' is not one of env://, tcp://host:port "
                    "or file:///path",
                    m);
}

/* ---- groups ----------------------------------------------------------------------- */

static ddp_status pg_connect_as(process_group *g, double rendezvous_timeout, const char *abort_key);

static process_group *group_new(int id, const int *ranks, int n) {
    process_group *g = ddp_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->refcount = 1;
    g->world_gen = pg_W.gen;
    g->backend = pg_W.backend;
    g->epoch = pg_W.epoch;
    g->id = id;
    g->size = n;
    g->my = -1;
    g->ranks = ddp_malloc(sizeof(int) * (size_t)n);
    g->p2p_sent = ddp_calloc((size_t)n, sizeof(uint64_t));
    g->p2p_recv = ddp_calloc((size_t)n, sizeof(uint64_t));
    if (!g->ranks || !g->p2p_sent || !g->p2p_recv) {
        pg_group_clear(g);
        free(g);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        g->ranks[i] = ranks ? ranks[i] : i;
        if (g->ranks[i] == pg_W.rank) g->my = i;
    }
    return g;
}

void pg_group_clear(process_group *g) {
    pg_scratch_release(g);
    comm_destroy(g->comm);
    g->comm = NULL;
    free(g->ranks);
    free(g->p2p_sent);
    free(g->p2p_recv);
    g->ranks = NULL;
    g->p2p_sent = g->p2p_recv = NULL;
}

ddp_status pg_connect(process_group *g, double rendezvous_timeout) {
    return pg_connect_as(g, rendezvous_timeout, NULL);
}

/* pg_connect with an abort key (comm_init_options) for init_process_group. */
static ddp_status pg_connect_as(process_group *g, double rendezvous_timeout,
                                const char *abort_key) {
    pg_worker_drain(); /* a queued all_reduce may still use the old communicator */
    comm_destroy(g->comm);
    g->comm = NULL;
    /* NCCL gets a communicator even alone, so that one rank runs its collectives */
    if (g->my < 0 || (g->size == 1 && g->backend != COMM_BACKEND_NCCL)) return DDP_OK;
    char prefix[96];
    snprintf(prefix, sizeof prefix, "pg/%llu/%d/comm%d/", (unsigned long long)g->world_gen, g->id,
             g->comm_gen);
    comm_init_options o = {.store = pg_W.store,
                           .prefix = prefix,
                           .iface_host = pg_W.host,
                           .rank = g->my,
                           .size = g->size,
                           .timeout_s = pg_W.timeout,
                           .rendezvous_timeout_s = rendezvous_timeout,
                           .abort_key = abort_key};
    ddp_status s = g->backend == COMM_BACKEND_NCCL ? comm_nccl_init(&o, &g->comm)
                                                   : comm_gloo_init(&o, &g->comm);
    /* in a CUDA build, Gloo takes CUDA tensors too, through host memory (asking nothing of
     * CUDA here: a CPU session on a GPU machine must not start it) */
    if (s == DDP_OK && g->backend == COMM_BACKEND_GLOO && cuda_built())
        s = comm_staged_new(g->comm, g->size, &g->comm);
    if (s != DDP_OK) g->comm = NULL;
    g->broken = s != DDP_OK;
    return s;
}

/* The store key under which a member publishes the communicator generation g's members
 * should rebuild to (with the check off). */
static void rebuild_key(char *out, size_t len, const process_group *g) {
    snprintf(out, len, "pg/%llu/%d/rebuild", (unsigned long long)g->world_gen, g->id);
}

void pg_mark_broken(process_group *g) {
    g->broken = true;
    if (pg_W.check || !pg_W.store || g->my < 0 || g->size == 1) return;
    char key[96], value[32];
    rebuild_key(key, sizeof key, g);
    snprintf(value, sizeof value, "%d", g->comm_gen + 1);
    (void)store_set(pg_W.store, key, value, strlen(value)); /* best effort */
}

void pg_adopt_rebuild(process_group *g) {
    if (!pg_W.store || g->my < 0 || g->size == 1) return;
    char key[96];
    rebuild_key(key, sizeof key, g);
    const char *keys[1] = {key};
    char *v[1] = {NULL};
    size_t len[1];
    if (store_multi_wait(pg_W.store, keys, 1, 0, v, len) != DDP_OK || !v[0]) return;
    int gen = atoi(v[0]);
    free(v[0]);
    if (gen > g->comm_gen) {
        g->broken = true;
        g->comm_gen = gen - 1; /* pg_ready moves every member to gen */
    }
}

process_group *pg_retain(process_group *g) {
    if (g) g->refcount++;
    return g;
}

void pg_release(process_group *g) {
    if (!g || --g->refcount > 0) return;
    for (process_group **p = &pg_W.live; *p; p = &(*p)->next_live) {
        if (*p == g) {
            *p = g->next_live;
            break;
        }
    }
    pg_group_clear(g);
    free(g);
}

bool pg_is_member(const process_group *g) {
    return g->my >= 0;
}

int pg_rank(const process_group *g) {
    return g->my;
}

int pg_size(const process_group *g) {
    return g->size;
}

int pg_global_rank(const process_group *g, int r) {
    return r >= 0 && r < g->size && g->ranks ? g->ranks[r] : -1;
}

int pg_group_rank_of(const process_group *g, int global) {
    for (int i = 0; g->ranks && i < g->size; i++)
        if (g->ranks[i] == global) return i;
    return -1;
}

const char *pg_backend(const process_group *g) {
    return comm_backend_str(g->backend);
}

bool pg_is_alive(const process_group *g) {
    return pg_W.initialized && g->epoch == pg_W.epoch && g->ranks;
}

void pg_sync_chunk(process_group *g) {
    if (g->chunk_seen == pg_W.chunk_id) return;
    g->chunk_seen = pg_W.chunk_id;
    g->chunk_seq = 0;
    for (int i = 0; i < g->size; i++) g->p2p_sent[i] = g->p2p_recv[i] = 0;
}

/* ---- init / destroy --------------------------------------------------------------- */

/* Parses the backend name into *out and checks that this build and machine can run it.
 * rank < 0: not known yet. */
static ddp_status check_backend(const char *backend, int rank, comm_backend *out) {
    if (!comm_backend_parse(backend, out))
        return DDP_FAIL(DDP_ERR_ARG,
                        "init_process_group: unknown backend '%s' (use \"gloo\", or \"nccl\" "
                        "for CUDA tensors)",
                        backend);
    if (*out != COMM_BACKEND_NCCL) return DDP_OK;
    if (!DDP_HAVE_CUDA)
        return DDP_FAIL(DDP_ERR_UNSUPPORTED, "init_process_group: this build has no CUDA "
                                             "support, so no NCCL; use backend=\"gloo\" (CPU "
                                             "tensors)");
    if (!DDP_HAVE_NCCL)
        return DDP_FAIL(DDP_ERR_UNSUPPORTED, "init_process_group: this build has CUDA but no "
                                             "NCCL; use backend=\"gloo\"");
    if (cuda_device_count() == 0) {
        if (rank < 0)
            return DDP_FAIL(DDP_ERR_UNSUPPORTED, "nccl: no GPU visible to this rank; use "
                                                 "backend=\"gloo\" (CPU tensors)");
        return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                        "nccl: no GPU visible to rank %d; use backend=\"gloo\" (CPU tensors)",
                        rank);
    }
    /* NCCL refuses two ranks on one GPU: with more ranks on this machine than GPUs, Gloo
     * stands in (it takes CUDA tensors through host memory); the bindings say so */
    const char *local = getenv("LOCAL_WORLD_SIZE");
    if (local && atoi(local) > cuda_device_count()) *out = COMM_BACKEND_GLOO;
    return DDP_OK;
}

/* Where a rank whose init_process_group failed leaves its reason for the others of the
 * same generation, so they fail at once instead of waiting out the rendezvous. */
static void init_failed_key(char *out, size_t len, uint64_t gen) {
    snprintf(out, len, "ddp/init_failed/%llu", (unsigned long long)gen);
}

/* How many ranks arrived at generation gen's rendezvous; INIT_CLOSED is added once it
 * failed, so that later arrivals skip it (pg_init). */
#define INIT_CLOSED ((int64_t)1 << 40)
static void init_arrived_key(char *out, size_t len, uint64_t gen) {
    snprintf(out, len, "ddp/init_arrived/%llu", (unsigned long long)gen);
}

/* Closes generation gen's rendezvous after a failure in it. Best effort. */
static void close_init_generation(uint64_t gen) {
    char key[64];
    int64_t n;
    init_arrived_key(key, sizeof key, gen);
    (void)store_add(pg_W.store, key, INIT_CLOSED, &n);
}

/* Best effort: publishes "rank r failed to initialise: <why>" under gen's key unless
 * another rank's reason is there already (then that one is the cause and ours its echo).
 * Returns `code` with `why` as the last error again, for the caller to return. */
static ddp_status publish_init_failure(uint64_t gen, int rank, ddp_status code, const char *why) {
    char key[64], value[1024];
    init_failed_key(key, sizeof key, gen);
    bool present = true;
    if (store_check(pg_W.store, key, &present) == DDP_OK && !present) {
        const char *prefix = "init_process_group: ";
        const char *reason = strncmp(why, prefix, strlen(prefix)) == 0 ? why + strlen(prefix) : why;
        snprintf(value, sizeof value, "init_process_group: rank %d failed to initialise: %s", rank,
                 reason);
        (void)store_set(pg_W.store, key, value, strlen(value));
    }
    return ddp_fail_at(__FILE__, __LINE__, code, "%s", why);
}

/* The checks init_process_group can make on its own; DDP_OK or a failure to publish. */
static ddp_status check_local(const pg_init_options *o, int rank, int size) {
    DDP_CHECK(check_backend(o->backend, rank, &pg_W.backend));
    if (rank >= size)
        return DDP_FAIL(DDP_ERR_ARG, "init_process_group: rank %d is not in a world of %d", rank,
                        size);
    return pg_check_running("init_process_group", NULL, size,
                            "every rank must call init_process_group");
}

static ddp_status init_world(const pg_init_options *o);

/* The rendezvous can wait for the slowest rank for a long time: it is the rank's activity
 * meanwhile, so that the status line of a quiet chunk says who waits in it. */
ddp_status pg_init(const pg_init_options *o) {
    if (pg_W.initialized)
        return DDP_FAIL(DDP_ERR_STATE, "trying to initialize the default process group twice!");
    pg_set_activity("in init_process_group");
    ddp_status s = init_world(o);
    pg_set_activity(NULL);
    return s;
}

static ddp_status init_world(const pg_init_options *o) {
    int rank = o->rank, size = o->world_size;
    if (rank < 0 || size < 0) {
        ddp_status e = rank < 0 ? env_int("RANK", &rank) : DDP_OK;
        if (e == DDP_OK && size < 0) e = env_int("WORLD_SIZE", &size);
        if (e != DDP_OK) {
            /* without a rank nobody can be told; a bad backend is the first thing to say */
            comm_backend b;
            DDP_CHECK(check_backend(o->backend, -1, &b));
            return e;
        }
    }
    if (size < 1)
        return DDP_FAIL(DDP_ERR_ARG, "init_process_group: a world of %d ranks is empty", size);
    read_watchdog_settings();
    pg_W.rendezvous_timeout = o->timeout_s > 0 ? o->timeout_s : 60.0;
    pg_W.rank = rank;
    pg_W.size = size;
    /* A rank that fails still joins the store and takes its generation number, so that
     * the others learn why at once and the next init of everyone agrees on the numbers. */
    ddp_status local = check_local(o, rank, size);
    char local_msg[1024] = "";
    if (local != DDP_OK) snprintf(local_msg, sizeof local_msg, "%s", ddp_last_error());
    if (local == DDP_ERR_STATE) return local; /* :on left ranks out: they are not waiting */
    ddp_status s =
        reach_store(o->init_method, rank,
                    local != DDP_OK && pg_W.rendezvous_timeout > 5 ? 5.0 : pg_W.rendezvous_timeout);
    if (s != DDP_OK) {
        if (local != DDP_OK) return ddp_fail_at(__FILE__, __LINE__, local, "%s", local_msg);
        return s;
    }
    /* The generation is how many times this rank has called init_process_group on this
     * store: the k-th init of every rank meets the k-th of the others, even when a rank
     * whose init failed comes back for its next one before the slow ones made their
     * first (one global count would then hand out mixed numbers). */
    int64_t count;
    char counter[64];
    snprintf(counter, sizeof counter, "ddp/init/r%d", rank);
    s = store_add(pg_W.store, counter, 1, &count);
    if (s != DDP_OK) goto fail;
    pg_W.gen = (uint64_t)count;
    /* A generation whose rendezvous a rank gave up on (it timed out waiting, or Ctrl-C)
     * is closed: a rank that arrives at it later moves on to the next one, where the
     * ranks that gave up come back for their next init. So a generation only ever catches
     * up with the others', and one failed init leaves nothing behind that blocks the next. */
    for (int skipped = 0;; skipped++) {
        char arrived[64];
        int64_t n;
        init_arrived_key(arrived, sizeof arrived, pg_W.gen);
        s = store_add(pg_W.store, arrived, 1, &n);
        if (s != DDP_OK) goto fail;
        if (n < INIT_CLOSED || skipped >= 1000) break;
        pg_W.gen++;
        s = store_add(pg_W.store, counter, 1, &count);
        if (s != DDP_OK) goto fail;
    }
    if (local != DDP_OK) {
        s = publish_init_failure(pg_W.gen, rank, local, local_msg);
        goto fail;
    }
    pg_W.next_group_id = 1;
    pg_W.epoch++;
    process_group *g = group_new(0, NULL, size);
    if (!g) {
        s = DDP_FAIL(DDP_ERR_NOMEM, "init_process_group: out of memory");
        goto fail;
    }
    char abort_key[64];
    init_failed_key(abort_key, sizeof abort_key, pg_W.gen);
    s = pg_connect_as(g, pg_W.rendezvous_timeout, abort_key);
    if (s != DDP_OK) {
        pg_group_clear(g);
        free(g);
        /* interrupted too: the others waiting in this generation stop at once, and
         * whoever comes later skips it */
        char why[1024];
        snprintf(why, sizeof why, "%s", ddp_last_error());
        /* A rank that gave up waiting (the timeout, Ctrl-C) closes the generation: the
         * ranks that never came skip it. A local failure (every rank makes the same
         * check) or another rank's failure leaves it open, so that every rank's k-th
         * init still meets the others' k-th. */
        if (s == DDP_ERR_TIMEOUT || s == DDP_ERR_INTERRUPTED) close_init_generation(pg_W.gen);
        s = publish_init_failure(pg_W.gen, rank, s, why);
        goto fail;
    }
    g->next_live = pg_W.live;
    pg_W.live = g;
    pg_W.default_group = g;
    pg_W.initialized = true;
    return DDP_OK;
fail:
    store_close(pg_W.store);
    pg_W.store = NULL;
    return s;
}

bool pg_is_initialized(void) {
    return pg_W.initialized;
}

ddp_status pg_default(process_group **out) {
    *out = NULL;
    if (!pg_W.initialized)
        return DDP_FAIL(DDP_ERR_STATE, "Default process group has not been initialized, please "
                                       "make sure to call init_process_group.");
    *out = pg_W.default_group;
    return DDP_OK;
}

ddp_status pg_destroy(void) {
    if (!pg_W.initialized)
        return DDP_FAIL(DDP_ERR_STATE, "Default process group has not been initialized, please "
                                       "make sure to call init_process_group.");
    pg_worker_drain(); /* queued all_reduces finish on the communicators first */
    /* groups that Lua still holds stay allocated but lose their communicators */
    for (process_group *g = pg_W.live; g; g = g->next_live) {
        comm_destroy(g->comm);
        g->comm = NULL;
        pg_scratch_release(g);
    }
    process_group *d = pg_W.default_group;
    if (d && pg_W.store) { /* the others' next collective fails at once, naming this */
        char key[64];
        snprintf(key, sizeof key, "pg/%llu/gone/%d", (unsigned long long)d->world_gen,
                 d->ranks[d->my]);
        const char *why = "called dist.destroy_process_group() and left";
        (void)store_set(pg_W.store, key, why, strlen(why));
    }
    pg_W.default_group = NULL;
    pg_W.initialized = false;
    pg_release(d);
    /* groups still referenced from Lua are no longer live: chunk_end skips them */
    pg_W.live = NULL;
    /* interrupted calls still running keep their own connections until they return */
    pg_worker_reap();
    pg_worker_stop_idle();
    store_close(pg_W.store);
    pg_W.store = NULL;
    pg_set_activity(NULL);
    return DDP_OK;
}

/* "new_group(ranks=0,1)" for the sorted list (NULL: every rank); a long list is cut and
 * ends with a hash of the whole, so two different lists never read the same. */
static void new_group_fingerprint(char *out, size_t len, const int *sorted, int n) {
    if (!sorted) {
        snprintf(out, len, "new_group(all %d ranks)", n);
        return;
    }
    char list[FP_MAX];
    fp_rank_list(list, sizeof list, sorted, n);
    const char *words = strchr(list, ' ') ? strchr(list, ' ') + 1 : list;
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)sorted[i]) * 16777619u;
    if (strlen(words) < 120)
        snprintf(out, len, "new_group(ranks=%s)", words);
    else
        snprintf(out, len, "new_group(ranks=%.100s..., %d ranks, #%08x)", words, n, h);
}

ddp_status pg_new_group(const int *ranks, int n, process_group **out) {
    *out = NULL;
    process_group *d;
    DDP_CHECK(pg_default(&d));
    if (n == 0) {
        ranks = NULL;
        n = pg_W.size;
    }
    for (int i = 0; ranks && i < n; i++) {
        if (ranks[i] < 0 || ranks[i] >= pg_W.size)
            return DDP_FAIL(DDP_ERR_ARG, "new_group: rank %d is not in the world (0..%d)", ranks[i],
                            pg_W.size - 1);
        for (int j = 0; j < i; j++)
            if (ranks[j] == ranks[i])
                return DDP_FAIL(DDP_ERR_ARG, "new_group: rank %d is listed twice", ranks[i]);
    }
    DDP_CHECK(pg_check_running("new_group", NULL, pg_W.size,
                               "every rank must call new_group, as in PyTorch"));
    /* PyTorch sorts the list: group rank i is the i-th smallest global rank, whatever
     * order each caller wrote (and so every member agrees on who is who) */
    int *sorted = NULL;
    if (ranks) {
        sorted = ddp_malloc(sizeof(int) * (size_t)n);
        if (!sorted) return DDP_FAIL(DDP_ERR_NOMEM, "new_group: out of memory");
        for (int i = 0; i < n; i++) {
            int v = ranks[i], j = i;
            for (; j > 0 && sorted[j - 1] > v; j--) sorted[j] = sorted[j - 1];
            sorted[j] = v;
        }
    }
    /* every rank must pass the same set (4 ranks, {0,1} on ranks 0,1 and {2,3} on ranks
     * 2,3 is a classic slip): agree on it first, or the rendezvous below would pair up
     * ranks that meant different groups */
    char fp[FP_MAX];
    new_group_fingerprint(fp, sizeof fp, sorted, n);
    ddp_status agreed = pg_agree(d, "new_group", fp);
    if (agreed != DDP_OK) {
        free(sorted);
        return agreed;
    }
    process_group *g = group_new(pg_W.next_group_id++, sorted, n);
    free(sorted);
    if (!g) return DDP_FAIL(DDP_ERR_NOMEM, "new_group: out of memory");
    char act[200]; /* the group's own rendezvous: the status line says who waits in it */
    snprintf(act, sizeof act, "in %s", fp);
    pg_set_activity(act);
    ddp_status s = pg_connect(g, pg_W.rendezvous_timeout);
    pg_set_activity(NULL);
    if (s != DDP_OK) {
        pg_group_clear(g);
        free(g);
        return s;
    }
    g->next_live = pg_W.live;
    pg_W.live = g;
    *out = g;
    return DDP_OK;
}

/* ---- hooks ------------------------------------------------------------------------ */

void pg_chunk_begin(uint64_t chunk_id) {
    pg_W.chunk_id = chunk_id;
    pg_W.running_n = 0; /* every rank, until the runtime says otherwise */
    pg_set_activity(NULL);
}

void pg_chunk_set_participants(const bool *running, int world_size) {
    pg_W.running_n = 0;
    if (!running || world_size <= 0) return;
    bool *copy = realloc(pg_W.running, sizeof(bool) * (size_t)world_size);
    if (!copy) return;
    memcpy(copy, running, sizeof(bool) * (size_t)world_size);
    pg_W.running = copy;
    pg_W.running_n = world_size;
}

ddp_status pg_check_running(const char *op, const int *ranks, int n, const char *why) {
    if (pg_W.running_n == 0) return DDP_OK;
    int *absent = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    int *sent = malloc(sizeof(int) * (size_t)pg_W.running_n);
    if (!absent || !sent) {
        free(absent);
        free(sent);
        return DDP_OK; /* cannot say: let the fingerprint check and watchdog handle it */
    }
    int na = 0, ns = 0;
    for (int i = 0; i < n; i++) {
        int r = ranks ? ranks[i] : i;
        /* a rank the runtime does not know (another world) is not ours to judge */
        if (r >= 0 && r < pg_W.running_n && !pg_W.running[r]) absent[na++] = r;
    }
    for (int r = 0; r < pg_W.running_n; r++)
        if (pg_W.running[r]) sent[ns++] = r;
    ddp_status s = DDP_OK;
    if (na > 0) {
        char who[256], to[256];
        fp_rank_list(who, sizeof who, absent, na);
        fp_rank_list(to, sizeof to, sent, ns);
        s = DDP_FAIL(DDP_ERR_STATE,
                     "%s: %s %s not running this chunk (it was sent to %s with :on); %s: use "
                     ":on all",
                     op, who, na == 1 ? "is" : "are", to, why);
    }
    free(absent);
    free(sent);
    return s;
}

void pg_chunk_end(void) {
    pg_set_activity(NULL);
    pg_worker_reap();
    if (!pg_W.initialized) return;
    for (process_group *g = pg_W.live; g; g = g->next_live) pg_scratch_release(g);
    if (!pg_W.check) return;
    for (process_group *g = pg_W.live; g; g = g->next_live) {
        if (g->my < 0 || g->size == 1) continue;
        pg_sync_chunk(g);
        char key[128], value[32];
        pg_key_done(key, sizeof key, g, pg_W.chunk_id, g->my);
        snprintf(value, sizeof value, "%llu", (unsigned long long)g->chunk_seq);
        store_set(pg_W.store, key, value, strlen(value)); /* best effort: cannot fail here */
    }
}
