/* SPDX-License-Identifier: MPL-2.0 */
/*
 * vault-plugin-secrets-byok: process start-up and exit. Checks that Vault
 * (go-plugin) started us, hardens the process, makes the AutoMTLS identity,
 * starts the gRPC server on a fresh Unix socket and prints go-plugin's
 * handshake line; then waits for GRPCController/Shutdown (or SIGTERM) and
 * exits within Vault's 2 s grace.
 *
 * stdout carries exactly one line, the handshake; everything else is an
 * hclog-shaped JSON line on stderr, which Vault re-logs at its level.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <jansson.h>
#include <malloc.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secret.h"
#include "plugin/backend.h"
#include "plugin/broker.h"
#include "plugin/byok.h"
#include "plugin/rpc.h"
#include "plugin/storage.h"
#include "plugin/tlsgen.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>

/*
 * LeakSanitizer's built-in suppressions and options (documented hooks).
 * OpenSSL keeps a DRBG per thread in thread-specific data, which LSan does not
 * scan, and gRPC's threads are still alive when the plugin _exits, so their
 * DRBGs look leaked. libcrypto has no frame pointers: with the fast unwinder
 * the stack stops at CRYPTO_zalloc, so the suppression names the library.
 * Leaks of OpenSSL objects in our own code are caught by the unit tests
 * (envelope, tlsgen) under ASan, which do not use these.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcrypto.so\n";
}
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}
#endif

/* go-plugin HandshakeConfig of Vault's sdk/plugin: the magic cookie for backend plugins. */
#define PLUGIN_COOKIE_KEY "VAULT_BACKEND_PLUGIN"
#define PLUGIN_COOKIE_VALUE "6669da05-b1c8-4f49-97d9-c8e5bed98e20"
/* The only app protocol we speak: v5 (AutoMTLS, no metadata mode). */
#define PLUGIN_PROTOCOL "5"
/* go-plugin's CoreProtocolVersion. */
#define PLUGIN_CORE_PROTOCOL "1"
/* Longest PLUGIN_PROTOCOL_VERSIONS value we parse. */
#define PLUGIN_MAX_VERSIONS_ENV 64
/* Locked arena for keys: DEKs, KEKs, the TLS key and plaintext provider keys while in use. */
#define PLUGIN_SECURE_HEAP ((size_t)1024 * 1024)
/* malloc arenas shared by all threads (glibc's default is 8 per core). */
#define PLUGIN_MALLOC_ARENAS 2
/* Vault SIGKILLs 2 s after Shutdown; leave margin for unlinking and logging. */
#define PLUGIN_STOP_MS 1200

static const char plugin_refusal[] =
    "This binary is a plugin. These are not meant to be executed directly.\n"
    "Please execute the program that consumes these plugins, which will\n"
    "load any plugins automatically (here: HashiCorp Vault or OpenBao, after\n"
    "`vault plugin register` and `vault secrets enable`).\n";

static char plugin_socket[RPC_MAX_SOCKET_PATH + 1];

static void plugin_refuse(const char *why)
{
    fprintf(stderr, "%s\n%s", why, plugin_refusal);
    exit(1);
}

/* Does text start with (after blanks) a PEM certificate OpenSSL can parse? */
static bool plugin_pem_cert_ok(const char *text)
{
    BIO *bio = BIO_new_mem_buf(text, -1);
    if (bio == NULL) {
        return false;
    }
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    X509_free(x);
    return x != NULL;
}

/* Is "5" one of the comma-separated versions Vault offers? */
static bool plugin_protocol_offered(const char *list)
{
    if (list == NULL || strlen(list) > PLUGIN_MAX_VERSIONS_ENV) {
        return false;
    }
    char copy[PLUGIN_MAX_VERSIONS_ENV + 1];
    snprintf(copy, sizeof(copy), "%s", list);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        size_t n = strlen(tok);
        while (n > 0 && tok[n - 1] == ' ') {
            tok[--n] = '\0';
        }
        if (strcmp(tok, PLUGIN_PROTOCOL) == 0) {
            return true;
        }
    }
    return false;
}

/* OpenBao sets BAO_* and duplicates them as VAULT_*; prefer BAO_ like its SDK does. */
static const char *plugin_env(const char *bao, const char *vault)
{
    const char *v = getenv(bao);
    return v != NULL ? v : getenv(vault);
}

/* gRPC core writes plain text to stderr; Vault would log it at DEBUG without context. */
static void plugin_grpc_log(gpr_log_func_args *args)
{
    enum log_level level = LOGL_DEBUG;
    if (args->severity == GPR_LOG_SEVERITY_ERROR) {
        level = LOGL_ERROR;
    } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
        level = LOGL_INFO;
    }
    char line[16];
    snprintf(line, sizeof(line), "%d", args->line);
    log_kv(level, args->message, "source", "grpc", "file", args->file, "line", line, NULL);
}

/*
 * gRPC core tracers that print decrypted traffic. Vault (1.16+) and OpenBao
 * pass their own environment to the plugin, so a GRPC_TRACE set to debug
 * Vault reaches grpc_init here; "secure_endpoint" (also part of "all") then
 * dumps every byte read and written after TLS at INFO: key writes carry a
 * provider key and creds replies return one. The other tracers print
 * metadata, states and ciphertext, which may stay available for debugging.
 */
static const char *const plugin_grpc_payload_tracers[] = {"secure_endpoint"};

static void plugin_grpc_tracers_off(void)
{
    for (size_t i = 0; i < sizeof(plugin_grpc_payload_tracers) / sizeof(char *); i++) {
        (void)grpc_tracer_set_enabled(plugin_grpc_payload_tracers[i], 0);
    }
}

/* jansson holds request bodies and creds replies: wipe its blocks when freed. */
static void plugin_json_free(void *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}

/* A fresh name like go-plugin's os.CreateTemp(dir, "plugin"); removed so gRPC can bind it. */
static bool plugin_socket_path(void)
{
    const char *dir = getenv("PLUGIN_UNIX_SOCKET_DIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = getenv("TMPDIR");
    }
    if (dir == NULL || dir[0] == '\0') {
        dir = "/tmp";
    }
    int n = snprintf(plugin_socket, sizeof(plugin_socket), "%s/plugin-byok-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof(plugin_socket)) {
        log_kv(LOGL_ERROR, "socket directory path too long", "dir", dir, NULL);
        return false;
    }
    int fd = mkostemp(plugin_socket, O_CLOEXEC);
    if (fd < 0) {
        log_kv(LOGL_ERROR, "cannot create a socket name", "dir", dir, "error", strerror(errno),
               NULL);
        return false;
    }
    close(fd);
    unlink(plugin_socket);
    return true;
}

/* PLUGIN_UNIX_SOCKET_GROUP (containerised runners): let that group connect. */
static bool plugin_socket_group(void)
{
    const char *g = getenv("PLUGIN_UNIX_SOCKET_GROUP");
    if (g == NULL || g[0] == '\0') {
        return true;
    }
    char *end = NULL;
    errno = 0;
    unsigned long id = strtoul(g, &end, 10);
    gid_t gid;
    if (errno == 0 && end != g && *end == '\0') {
        gid = (gid_t)id;
    } else {
        struct group *gr = getgrnam(g);
        if (gr == NULL) {
            log_kv(LOGL_ERROR, "unknown PLUGIN_UNIX_SOCKET_GROUP", "group", g, NULL);
            return false;
        }
        gid = gr->gr_gid;
    }
    if (chown(plugin_socket, (uid_t)-1, gid) != 0 || chmod(plugin_socket, 0660) != 0) {
        log_kv(LOGL_ERROR, "cannot give the socket to its group", "group", g, "error",
               strerror(errno), NULL);
        return false;
    }
    return true;
}

/*
 * Ends us like Shutdown does when SIGTERM arrives (an operator, a supervisor)
 * or when Vault is gone: our stdout is the pipe go-plugin reads; its read end
 * closing (Vault crashed or was killed) shows as POLLERR/POLLHUP on fd 1. A Go
 * plugin dies of SIGPIPE on its next log line in that case; we ignore SIGPIPE,
 * so we watch instead of lingering with a socket nobody will dial.
 */
static void *plugin_watch_main(void *arg)
{
    int sfd = *(int *)arg;
    struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = STDOUT_FILENO, .events = 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return NULL;
        }
        if (fds[0].revents & POLLIN) {
            log_kv(LOGL_INFO, "SIGTERM received", NULL);
            break;
        }
        if (fds[1].revents & (POLLERR | POLLHUP)) {
            log_kv(LOGL_WARN, "Vault closed our stdout; exiting", NULL);
            break;
        }
        if (fds[1].revents & POLLNVAL) {
            fds[1].fd = -1; /* stdout closed by ourselves: nothing to watch */
        }
    }
    rpc_request_stop();
    return NULL;
}

/*
 * absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore).
 * Debian builds abseil without NDEBUG, so its debug deadlock detector runs on
 * every absl::Mutex acquisition, and gRPC's gpr_mu is an absl::Mutex: each
 * lock updates a global lock graph under a global spin lock. That was about
 * 2 % of the plugin's CPU on key writes (GraphCycles::GetId, DeadlockCheck in
 * perf) and serialises every thread on that spin lock. Our own locks are
 * pthread ones, which it never watched. C cannot name a C++ function, so the
 * declaration carries the symbol of Debian 12's abseil (inline namespace
 * "debian3"); another abseil fails the link, never the run.
 */
enum { ABSL_ON_DEADLOCK_CYCLE_IGNORE = 0 };
extern void absl_set_mutex_deadlock_detection_mode(int mode) __asm__(
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-version") == 0)) {
        printf("vault-plugin-secrets-byok v%s\n", BYOK_VERSION);
        return 0;
    }
    /* go-plugin servers ignore SIGINT: Ctrl-C in Vault's terminal reaches us too. */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    const char *cookie = getenv(PLUGIN_COOKIE_KEY);
    if (cookie == NULL || strcmp(cookie, PLUGIN_COOKIE_VALUE) != 0) {
        plugin_refuse("vault-plugin-secrets-byok: not started by Vault (magic cookie missing).");
    }
    if (!plugin_protocol_offered(getenv("PLUGIN_PROTOCOL_VERSIONS"))) {
        plugin_refuse("vault-plugin-secrets-byok: the host does not offer plugin protocol 5 "
                      "(Vault 1.12 or newer, or OpenBao, is required).");
    }
    const char *client_cert = getenv("PLUGIN_CLIENT_CERT");
    if (client_cert == NULL || client_cert[0] == '\0') {
        plugin_refuse("vault-plugin-secrets-byok: PLUGIN_CLIENT_CERT is missing: the host must "
                      "use AutoMTLS.");
    }
    if (!plugin_pem_cert_ok(client_cert)) {
        /* gRPC would accept it and then fail every TLS handshake with a vaguer message. */
        plugin_refuse("vault-plugin-secrets-byok: PLUGIN_CLIENT_CERT is not a PEM certificate.");
    }

    int lvl = log_level_parse(getenv("BYOK_LOG_LEVEL"));
    log_init(stderr, lvl >= 0 ? (enum log_level)lvl : LOGL_INFO);
    umask(077);
    /* glibc gives each thread that allocates its own arena (64 MiB reserved, pages kept after
       use): with a worker pool that is most of our idle memory after the first burst. */
    mallopt(M_ARENA_MAX, PLUGIN_MALLOC_ARENAS);

    const char *mlock = plugin_env("BAO_PLUGIN_MLOCK_ENABLED", "VAULT_PLUGIN_MLOCK_ENABLED");
    if (mlock != NULL && strcmp(mlock, "true") == 0) {
        if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
            log_kv(LOGL_ERROR, "mlockall failed", "error", strerror(errno), NULL);
            return 1;
        }
    }
    if (secret_heap_init(PLUGIN_SECURE_HEAP) != ERR_OK) {
        log_kv(LOGL_ERROR, "cannot set up the secure heap", NULL);
        return 1;
    }
    if (!secret_heap_locked()) {
        /* RLIMIT_MEMLOCK under the heap without CAP_IPC_LOCK, or mlock refused: it still works. */
        char h[32];
        snprintf(h, sizeof(h), "%zu", PLUGIN_SECURE_HEAP);
        log_kv(LOGL_WARN,
               "secure heap not locked in memory (RLIMIT_MEMLOCK, or mlock or madvise refused): "
               "key material may reach swap or a core file",
               "secure_heap_bytes", h, NULL);
    }
    json_set_alloc_funcs(storage_json_malloc, plugin_json_free);

    struct tlsgen tls;
    enum err e = tlsgen_make(&tls);
    if (e != ERR_OK) {
        log_kv(LOGL_ERROR, "cannot make the TLS certificate", "error", err_name(e), NULL);
        return 1;
    }

    /* SIGTERM is read from a signalfd by the watcher; threads created from here on inherit
       the blocked mask, so no gRPC thread is interrupted by it. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    static int sfd;
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    pthread_t watcher;
    if (sfd < 0 || pthread_create(&watcher, NULL, plugin_watch_main, &sfd) != 0) {
        log_kv(LOGL_ERROR, "cannot start the signal watcher", NULL);
        return 1;
    }
    pthread_detach(watcher);

    absl_set_mutex_deadlock_detection_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
    gpr_set_log_function(plugin_grpc_log);
    grpc_init();
    plugin_grpc_tracers_off();

    struct byok *engine = byok_new();
    if (engine == NULL) {
        log_kv(LOGL_ERROR, "out of memory", NULL);
        return 1;
    }
    backend_init(engine);
    if (broker_init(&tls, client_cert) != ERR_OK || !plugin_socket_path()) {
        return 1;
    }
    struct rpc_config cfg = {
        .socket_path = plugin_socket,
        .key_pem = (const char *)tls.key_pem->data,
        .cert_pem = tls.cert_pem,
        .client_root_pem = client_cert,
    };
    e = rpc_start(&cfg);
    if (e != ERR_OK) {
        log_kv(LOGL_ERROR, "cannot start the gRPC server", "socket", plugin_socket, "error",
               err_name(e), NULL);
        unlink(plugin_socket);
        return 1;
    }
    if (!plugin_socket_group()) {
        unlink(plugin_socket);
        return 1;
    }

    /* The socket listens: only now may Vault read the address. */
    const char *mux = getenv("PLUGIN_MULTIPLEX_GRPC");
    printf("%s|%s|unix|%s|grpc|%s%s\n", PLUGIN_CORE_PROTOCOL, PLUGIN_PROTOCOL, plugin_socket,
           tls.cert_b64, mux != NULL && mux[0] != '\0' ? "|false" : "");
    fflush(stdout);
    log_kv(LOGL_INFO, "plugin started", "version", BYOK_VERSION, "socket", plugin_socket, NULL);

    rpc_wait();
    rpc_stop(PLUGIN_STOP_MS);
    unlink(plugin_socket);
    log_kv(LOGL_INFO, "plugin exiting", NULL);
    /* Workers may still be blocked on Vault: leave without running destructors under them. */
    fflush(stderr);
#if defined(__SANITIZE_ADDRESS__)
    /*
     * _exit skips LeakSanitizer's atexit check: run it here so the ASan
     * plugin's leaks fail the tests (it exits non-zero and reports on stderr).
     */
    __lsan_do_leak_check();
#endif
    _exit(0);
}
