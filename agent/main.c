/* SPDX-License-Identifier: MPL-2.0 */
/*
 * byok-agent: process set-up (hardening, limits, signals) and the event loop.
 *   byok-agent -c FILE                 run
 *   byok-agent --check-config -c FILE  validate the config and exit
 * SIGHUP reloads the config (an invalid one is logged and ignored); SIGTERM
 * and SIGINT stop accepting, let in-flight requests finish, then send usage
 * until Vault has acknowledged all of it, and exit; all within
 * drain_timeout_s.
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/budget.h"
#include "agent/config.h"
#include "agent/cooldown.h"
#include "agent/health.h"
#include "agent/latency.h"
#include "agent/ctx.h"
#include "agent/jalloc.h"
#include "agent/keycache.h"
#include "agent/logbuf.h"
#include "agent/metrics.h"
#include "agent/ratelease.h"
#include "agent/ratelimit.h"
#include "agent/sdnotify.h"
#include "agent/server.h"
#include "agent/upstream.h"
#include "agent/usage.h"
#include "agent/vault.h"
#include "common/log.h"
#include "common/secret.h"

#define AGENT_DRAIN_TICK_MS 50
/* During the drain, how often usage is sent again (a failed batch re-sent). */
#define AGENT_DRAIN_FLUSH_S 0.25

static struct agent_ctx agent;
/* The secure heap for keys and the Vault token, sized at start from keycache.max_entries. */
static size_t agent_heap_bytes;
/* usage.journal_dir as the agent started with it (a reload cannot move the journal). */
static char agent_journal_dir[CONFIG_MAX_STR + 1];
static const char *agent_config_path;
static struct event *agent_drain_timer;
static double agent_drain_deadline;
static double agent_drain_next_flush;

static void agent_usage_text(FILE *f)
{
    fprintf(f, "usage: byok-agent -c FILE [--check-config]\n"
               "       byok-agent --version\n");
}

static void agent_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * The secure heap is locked in memory where RLIMIT_MEMLOCK allows (OpenSSL
 * falls back to an unlocked one otherwise): the soft limit is raised to the
 * hard one before the heap is made.
 */
static void agent_raise_memlock(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_MEMLOCK, &rl);
    }
}

/*
 * A heap OpenSSL could not lock (or keep out of core files) is said once at
 * start, with the likely reason: RLIMIT_MEMLOCK below the heap, else a refused
 * mlock or madvise (a seccomp filter, a container without the right).
 */
static void agent_warn_unlocked(size_t heap)
{
    if (secret_heap_locked()) {
        return;
    }
    struct rlimit rl;
    char h[32], lim[32];
    snprintf(h, sizeof(h), "%zu", heap);
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < heap) {
        snprintf(lim, sizeof(lim), "%llu", (unsigned long long)rl.rlim_cur);
        log_kv(LOGL_WARN,
               "secure heap larger than RLIMIT_MEMLOCK: keys may not be locked in memory",
               "secure_heap_bytes", h, "memlock_bytes", lim, NULL);
        return;
    }
    log_kv(LOGL_WARN,
           "secure heap not locked in memory (mlock or madvise refused): keys may reach swap or "
           "a core file",
           "secure_heap_bytes", h, NULL);
}

/*
 * The kernel's struct sched_attr, first version (48 bytes): glibc 2.36 has
 * no sched_setattr wrapper.
 */
struct agent_sched_attr {
    uint32_t size;
    uint32_t policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime; /* for SCHED_OTHER/BATCH/IDLE since Linux 6.12: the task's slice, ns */
    uint64_t deadline;
    uint64_t period;
};

/*
 * sched_slice_us: the agent asks the kernel (EEVDF, Linux 6.12+) for a short
 * time slice. A task with a shorter slice gets an earlier virtual deadline:
 * woken by an app's request or a provider's bytes it runs at once instead of
 * waiting for the task on its CPU, and a provider woken by the agent's
 * request does not push the agent off its CPU until the provider has written
 * its whole answer. Its share of the CPU is unchanged. The policy and nice
 * value are kept as they are (a unit's Nice= or CPUSchedulingPolicy=); a
 * real-time or deadline policy is left alone. 0 restores the kernel's default
 * slice. Older kernels ignore the field for these policies: logged at info.
 */
static void agent_apply_slice(const struct config *cfg)
{
    static long applied = -1;
    if (cfg->sched_slice_us == applied) {
        return;
    }
    /* Tried once per value: a refusal is said at start and at a reload that changes it. */
    applied = cfg->sched_slice_us;
    struct agent_sched_attr a;
    memset(&a, 0, sizeof(a));
    if (syscall(SYS_sched_getattr, 0, &a, (unsigned)sizeof(a), 0U) != 0) {
        log_kv(LOGL_WARN, "cannot read the scheduler attributes; sched_slice_us not applied",
               "error", strerror(errno), NULL);
        return;
    }
    if (a.policy != SCHED_OTHER && a.policy != SCHED_BATCH && a.policy != SCHED_IDLE) {
        log_kv(LOGL_INFO, "not a fair-scheduled process; sched_slice_us not applied", NULL);
        return;
    }
    a.size = (uint32_t)sizeof(a);
    a.runtime = (uint64_t)cfg->sched_slice_us * 1000U;
    if (syscall(SYS_sched_setattr, 0, &a, 0U) != 0) {
        log_kv(LOGL_WARN, "cannot set the scheduler slice; sched_slice_us not applied", "error",
               strerror(errno), NULL);
        return;
    }
    if (cfg->sched_slice_us == 0) {
        return;
    }
    struct agent_sched_attr b;
    memset(&b, 0, sizeof(b));
    if (syscall(SYS_sched_getattr, 0, &b, (unsigned)sizeof(b), 0U) == 0 && b.runtime != a.runtime) {
        log_kv(LOGL_INFO,
               "the kernel keeps no per-task slice (Linux 6.12+); sched_slice_us has no "
               "effect",
               NULL);
        return;
    }
    char us[24];
    snprintf(us, sizeof(us), "%ld", cfg->sched_slice_us);
    log_kv(LOGL_DEBUG, "scheduler slice set", "slice_us", us, NULL);
}

#define AGENT_CLEARTEXT_WARNING                                                                    \
    "vault.address is http:// to a host that is not loopback: the Vault token and provider keys "  \
    "cross the network unencrypted"

static void agent_warn_cleartext(const struct config *cfg)
{
    if (config_vault_cleartext(cfg)) {
        log_kv(LOGL_WARN, AGENT_CLEARTEXT_WARNING, "address", cfg->vault.address, NULL);
    }
}

/* Tells systemd (Type=notify) that the agent serves, with what it is doing. */
static void agent_notify_ready(const char *status)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    enum err e = sdnotify(msg);
    if (e != ERR_OK) {
        log_kv(LOGL_WARN, "cannot notify systemd", "error",
               e == ERR_IO ? strerror(errno) : err_str(e), NULL);
    }
}

/* "serving N listeners" for systemctl status. */
static void agent_notify_serving(const struct config *cfg)
{
    char status[64];
    snprintf(status, sizeof(status), "serving %zu listener%s", cfg->n_listeners,
             cfg->n_listeners == 1 ? "" : "s");
    agent_notify_ready(status);
}

/* Returns false (logged) when the running config is kept. */
static bool agent_reload_apply(void)
{
    char err[CONFIG_ERR_LEN];
    struct config *cfg = NULL;
    if (config_load(agent_config_path, &cfg, err) != ERR_OK ||
        config_check_host(cfg, err) != ERR_OK) {
        log_kv(LOGL_ERROR, "reload failed; keeping the running config", "error", err, NULL);
        config_unref(&cfg);
        return false;
    }
    if (config_check_heap(cfg, agent_heap_bytes, err) != ERR_OK) {
        log_kv(LOGL_ERROR, "reload failed; keeping the running config", "error", err, NULL);
        config_unref(&cfg);
        return false;
    }
    char serr[512];
    if (server_apply(agent.server, cfg, serr, sizeof(serr)) != ERR_OK) {
        log_kv(LOGL_ERROR, "reload failed; keeping the running config", "error", serr, NULL);
        config_unref(&cfg);
        return false;
    }
    /* CA files may have been replaced in place: new connections read them again. */
    upstream_ca_reread(agent.up);
    upstream_ca_reread(agent.vault_up);
    upstream_set_max_host_connections(agent.up, cfg->upstream.max_host_connections);
    upstream_set_max_host_connections(agent.vault_up, cfg->upstream.max_host_connections);
    vault_set_config(agent.vault, cfg);
    keycache_set_config(agent.keys, cfg);
    const char *jold = agent_journal_dir[0] != '\0' ? agent_journal_dir : NULL,
               *jnew = cfg->usage.journal_dir;
    if ((jold == NULL) != (jnew == NULL) || (jold != NULL && strcmp(jold, jnew) != 0)) {
        log_kv(LOGL_WARN, "usage.journal_dir changes at the next start only", "running",
               jold != NULL ? jold : "(none)", NULL);
    }
    usage_set_config(agent.usage, cfg);
    budget_set_config(agent.budget, cfg);
    ratelease_set_config(agent.ratelease, cfg);
    /* Cooldowns are the providers' word and outlive a reload, within its retry_after_max_s. */
    cooldown_cap(agent.cool, server_now(), cfg->upstream.retry_after_max_s);
    /* Rate-limit buckets are kept as they are: their limits come from Vault, not the config. */
    /* Provider health is the providers' state: kept, within the new period (0 failures: off). */
    health_configure(agent.health, (unsigned)cfg->upstream.health_failures,
                     (double)cfg->upstream.health_demote_s, server_now());
    log_init(NULL, (enum log_level)log_level_parse(cfg->log_level));
    config_unref(&agent.cfg);
    agent.cfg = cfg;
    log_kv(LOGL_INFO, "config reloaded", "file", agent_config_path, NULL);
    agent_warn_cleartext(cfg);
    agent_apply_slice(cfg);
    return true;
}

/* SIGHUP: systemd sees the reload begin and end, and a failed one in the status. */
static void agent_reload(void)
{
    (void)sdnotify_reloading();
    if (agent_reload_apply()) {
        agent_notify_serving(agent.cfg);
    } else {
        agent_notify_ready("serving; the last reload failed, the running config is kept");
    }
}

/*
 * Requests first; once none is left, usage: the rows of calls that finished
 * during the drain, a tenant's rows that waited behind a batch in flight at
 * the signal, a batch that failed. Exits when Vault has acknowledged every
 * row, or at the deadline.
 */
static void agent_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    double now = server_now();
    if (agent.inflight == 0 && usage_inflight(agent.usage) == 0) {
        if (usage_pending(agent.usage) == 0) {
            log_kv(LOGL_INFO, "drained; exiting", NULL);
            event_base_loopbreak(agent.base);
            return;
        }
        if (now >= agent_drain_next_flush) {
            usage_flush(agent.usage);
            agent_drain_next_flush = now + AGENT_DRAIN_FLUSH_S;
        }
    }
    if (now >= agent_drain_deadline) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", agent.inflight);
        log_kv(LOGL_WARN, "drain timeout; exiting with requests in flight", "inflight", n, NULL);
        event_base_loopbreak(agent.base);
        /* The usage left (theirs included, once they are ended) is logged at exit. */
    }
}

static void agent_signal(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGHUP) {
        if (!agent.draining) {
            agent_reload();
        }
        return;
    }
    if (agent.draining) {
        return;
    }
    agent.draining = true;
    log_kv(LOGL_INFO, "draining", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
    (void)sdnotify("STOPPING=1\nSTATUS=draining");
    server_stop_accepting(agent.server);
    usage_flush(agent.usage);
    double now = server_now();
    agent_drain_deadline = now + (double)agent.cfg->drain_timeout_s;
    agent_drain_next_flush = now + AGENT_DRAIN_FLUSH_S;
    agent_drain_timer = event_new(agent.base, -1, EV_PERSIST, agent_drain_tick, NULL);
    struct timeval tv = {0, AGENT_DRAIN_TICK_MS * 1000L};
    if (agent_drain_timer == NULL || event_add(agent_drain_timer, &tv) != 0) {
        event_base_loopbreak(agent.base);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool check = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            agent_config_path = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'V':
            printf("byok-agent %s\n", BYOK_VERSION);
            return 0;
        case 'h':
            agent_usage_text(stdout);
            return 0;
        default:
            agent_usage_text(stderr);
            return 2;
        }
    }
    if (agent_config_path == NULL || optind != argc) {
        agent_usage_text(stderr);
        return 2;
    }
    umask(077);
    /* Before anything allocates through OpenSSL or curl (also does curl_global_init). */
    if (jalloc_install_libs() != 0) {
        fprintf(stderr, "byok-agent: cannot install wiping allocators\n");
        return 1;
    }
    jalloc_install();
    log_init(NULL, LOGL_INFO);
    char err[CONFIG_ERR_LEN];
    struct config *cfg = NULL;
    if (config_load(agent_config_path, &cfg, err) != ERR_OK ||
        config_check_host(cfg, err) != ERR_OK) {
        fprintf(stderr, "byok-agent: config: %s\n", err);
        config_unref(&cfg);
        return 1;
    }
    if (check) {
        if (config_vault_cleartext(cfg)) {
            fprintf(stderr, "byok-agent: warning: %s\n", AGENT_CLEARTEXT_WARNING);
        }
        printf("byok-agent: %s: OK\n", agent_config_path);
        config_unref(&cfg);
        return 0;
    }
    log_init(NULL, (enum log_level)log_level_parse(cfg->log_level));
    /* Before any thread starts (curl's resolver): it unsets NOTIFY_SOCKET. */
    sdnotify_init();
    agent_heap_bytes = config_secure_heap_bytes(cfg);
    agent_raise_memlock();
    if (secret_heap_init(agent_heap_bytes) != ERR_OK) {
        char h[32];
        snprintf(h, sizeof(h), "%zu", agent_heap_bytes);
        log_kv(LOGL_ERROR, "cannot set up the secure heap", "secure_heap_bytes", h, NULL);
        return 1;
    }
    agent_warn_unlocked(agent_heap_bytes);
    agent_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    agent.cfg = cfg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    agent.req_seed = ((unsigned long long)ts.tv_sec << 32) ^ (unsigned long long)ts.tv_nsec ^
                     ((unsigned long long)getpid() << 16);
    if (getrandom(&agent.route_rng, sizeof(agent.route_rng), 0) !=
        (ssize_t)sizeof(agent.route_rng)) {
        agent.route_rng = agent.req_seed; /* no kernel source: the weighted draws still spread */
    }
    /*
     * The changelist folds several interest changes on one fd within a loop
     * iteration into one epoll_ctl (evhttp toggles read/write per request).
     */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        agent.base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (agent.base == NULL) {
        goto out;
    }
    if (logbuf_start(agent.base) != ERR_OK) {
        goto out;
    }
    /*
     * Vault gets its own curl multi handle: curl keeps one parsed CA file per
     * multi handle, and Vault's CA file is usually not the providers'.
     */
    agent.up = upstream_new(agent.base, cfg->upstream.max_host_connections);
    agent.vault_up = upstream_new(agent.base, cfg->upstream.max_host_connections);
    agent.vault = agent.up != NULL && agent.vault_up != NULL
                      ? vault_new(agent.base, agent.vault_up, cfg)
                      : NULL;
    agent.keys = agent.vault != NULL ? keycache_new(agent.base, agent.vault, cfg) : NULL;
    agent.usage = agent.vault != NULL ? usage_new(agent.base, agent.vault, cfg) : NULL;
    agent.cool = cooldown_new();
    agent.rl = ratelimit_new();
    agent.health = health_new();
    agent.latency = latency_new();
    agent.budget = agent.usage != NULL ? budget_new(agent.vault, agent.usage, cfg) : NULL;
    agent.ratelease = agent.usage != NULL ? ratelease_new(agent.vault, agent.usage, cfg) : NULL;
    agent.server = server_new(&agent);
    if (agent.keys == NULL || agent.usage == NULL || agent.cool == NULL || agent.rl == NULL ||
        agent.health == NULL || agent.latency == NULL || agent.budget == NULL ||
        agent.ratelease == NULL || agent.server == NULL) {
        log_kv(LOGL_ERROR, "start-up failed: out of memory", NULL);
        goto out;
    }
    if (cfg->usage.journal_dir != NULL) {
        /* Before any call: what a crash or restart left unacknowledged is loaded first. */
        char jerr[CONFIG_ERR_LEN + 64];
        if (usage_journal_open(agent.usage, cfg->usage.journal_dir, jerr, sizeof(jerr)) != ERR_OK) {
            log_kv(LOGL_ERROR, "cannot use the usage journal", "error", jerr, NULL);
            goto out;
        }
        snprintf(agent_journal_dir, sizeof(agent_journal_dir), "%s", cfg->usage.journal_dir);
    }
    char serr[512];
    if (server_apply(agent.server, cfg, serr, sizeof(serr)) != ERR_OK) {
        log_kv(LOGL_ERROR, "cannot listen", "error", serr, NULL);
        goto out;
    }
    struct event *sigs[3];
    const int signums[3] = {SIGHUP, SIGTERM, SIGINT};
    for (size_t i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(agent.base, signums[i], agent_signal, NULL);
        if (sigs[i] == NULL || event_add(sigs[i], NULL) != 0) {
            goto out;
        }
    }
    vault_start(agent.vault);
    char heap[32];
    snprintf(heap, sizeof(heap), "%zu", agent_heap_bytes);
    log_kv(LOGL_INFO, "byok-agent started", "version", BYOK_VERSION, "config", agent_config_path,
           "secure_heap_bytes", heap, NULL);
    agent_warn_cleartext(agent.cfg);
    agent_apply_slice(agent.cfg);
    /* Every listener accepts from here: systemctl start returns, units ordered after start. */
    agent_notify_serving(agent.cfg);
    event_base_dispatch(agent.base);
    /*
     * Drained: a second SIGTERM (a supervisor, a test repeating its signal)
     * must not kill the agent during the clean-up that wipes its keys.
     * Freeing a signal event puts back the disposition from before it was
     * added (the default: terminate), so the signals are blocked first and
     * ignored after.
     */
    sigset_t quiet;
    sigemptyset(&quiet);
    for (size_t i = 0; i < 3; i++) {
        sigaddset(&quiet, signums[i]);
    }
    pthread_sigmask(SIG_BLOCK, &quiet, NULL);
    for (size_t i = 0; i < 3; i++) {
        event_free(sigs[i]);
        signal(signums[i], SIG_IGN);
    }
    rc = 0;
out:
    if (agent_drain_timer != NULL) {
        event_free(agent_drain_timer);
    }
    /* Order matters: connections first (their requests reference the rest), then users of Vault. */
    server_free(agent.server);
    /* After server_free: requests still in flight were ended there, and counted. */
    if (agent.usage != NULL && usage_pending(agent.usage) > 0) {
        char rows[32], reqs[32];
        snprintf(rows, sizeof(rows), "%zu", usage_pending(agent.usage));
        snprintf(reqs, sizeof(reqs), "%llu", usage_pending_requests(agent.usage));
        log_kv(LOGL_WARN, "exiting with usage not reported to vault", "rows", rows, "requests",
               reqs, NULL);
    }
    budget_free(agent.budget);
    ratelease_free(agent.ratelease);
    usage_free(agent.usage);
    keycache_free(agent.keys);
    cooldown_free(agent.cool);
    ratelimit_free(agent.rl);
    health_free(agent.health);
    latency_free(agent.latency);
    vault_free(agent.vault);
    upstream_free(agent.vault_up);
    upstream_free(agent.up);
    metrics_reset();
    config_unref(&agent.cfg);
    logbuf_stop();
    if (agent.base != NULL) {
        event_base_free(agent.base);
    }
    curl_global_cleanup();
    return rc;
}
