/* SPDX-License-Identifier: MPL-2.0 */
/*
 * unit-sandbox [--kill] --allow FILE [--families N,N,...] [--mdwe] -- PROGRAM [ARGS...]
 *
 * Runs PROGRAM under the seccomp filter systemd builds from a unit's
 * SystemCallFilter= (allow-list mode), SystemCallErrorNumber=EPERM,
 * SystemCallArchitectures=native, RestrictAddressFamilies= and
 * MemoryDenyWriteExecute=yes, so that the agent can be run under its shipped
 * unit's system-call policy where no systemd runs as PID 1 (tests/e2e/21).
 *
 *   --allow FILE   the allowed system-call numbers, one per line (decimal); the
 *                  test resolves the unit's groups with `systemd-analyze
 *                  syscall-filter` and the names with <asm/unistd.h>
 *   --kill         a call outside the list kills the process (SIGSYS) instead
 *                  of failing with EPERM: nothing refused can go unnoticed
 *   --families     socket(2) with another address family fails with
 *                  EAFNOSUPPORT, as RestrictAddressFamilies= does
 *   --mdwe         mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect
 *                  adding PROT_EXEC and shmat with SHM_EXEC fail with EPERM,
 *                  as MemoryDenyWriteExecute= does
 *
 * Another architecture's calls kill the process. The filter is installed with
 * no_new_privs (as NoNewPrivileges=yes) and kept across exec.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SB_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_ARCH AUDIT_ARCH_AARCH64
#else
#error "unit-sandbox: no audit arch for this machine"
#endif

#define SB_MAX_INSNS 4096 /* BPF_MAXINSNS */
#define SB_MAX_CALLS 1024
#define SB_MAX_FAMILIES 16
/* seccomp_data.args[i], low 32 bits (both supported machines are little-endian) */
#define SB_ARG(i) ((unsigned)(offsetof(struct seccomp_data, args) + sizeof(__u64) * (size_t)(i)))
#define SB_NR ((unsigned)offsetof(struct seccomp_data, nr))

struct sb_prog {
    struct sock_filter insn[SB_MAX_INSNS];
    size_t n;
};

static int sb_emit(struct sb_prog *p, unsigned short code, unsigned k, unsigned char jt,
                   unsigned char jf)
{
    if (p->n >= SB_MAX_INSNS) {
        fprintf(stderr, "unit-sandbox: filter longer than %d instructions\n", SB_MAX_INSNS);
        return -1;
    }
    p->insn[p->n++] = (struct sock_filter){.code = code, .jt = jt, .jf = jf, .k = k};
    return 0;
}

#define LD(p, off) sb_emit((p), BPF_LD | BPF_W | BPF_ABS, (off), 0, 0)
#define JEQ(p, k, jt, jf) sb_emit((p), BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf))
#define AND(p, k) sb_emit((p), BPF_ALU | BPF_AND | BPF_K, (k), 0, 0)
#define RET(p, k) sb_emit((p), BPF_RET | BPF_K, (k), 0, 0)
#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((unsigned)(e)&SECCOMP_RET_DATA))

/*
 * nr with (args[arg] & mask) == mask fails with EPERM; other calls go on
 * (the number is loaded again for the next check).
 */
static int sb_masked_deny(struct sb_prog *p, long nr, unsigned arg, unsigned mask)
{
    if (nr < 0) {
        return 0;
    }
    return JEQ(p, (unsigned)nr, 0, 5) || LD(p, SB_ARG(arg)) || AND(p, mask) || JEQ(p, mask, 0, 1) ||
           RET(p, RET_ERRNO(EPERM)) || LD(p, SB_NR);
}

static int sb_read_calls(const char *path, long *calls, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "unit-sandbox: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[64];
    *n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *end;
        errno = 0;
        long v = strtol(line, &end, 10);
        if (end == line || (*end != '\n' && *end != '\0') || errno != 0 || v < 0 ||
            v > 0xffffffffL || *n >= SB_MAX_CALLS) {
            fprintf(stderr, "unit-sandbox: %s: bad system-call number (or more than %d)\n", path,
                    SB_MAX_CALLS);
            fclose(f);
            return -1;
        }
        calls[(*n)++] = v;
    }
    fclose(f);
    return 0;
}

static int sb_parse_families(const char *s, unsigned *fam, size_t *n)
{
    *n = 0;
    while (*s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 255 || *n >= SB_MAX_FAMILIES ||
            (*end != ',' && *end != '\0')) {
            fprintf(stderr, "unit-sandbox: --families: a comma-separated list of numbers\n");
            return -1;
        }
        fam[(*n)++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static long calls[SB_MAX_CALLS];
    static struct sb_prog p;
    unsigned fam[SB_MAX_FAMILIES];
    size_t ncalls = 0, nfam = 0;
    const char *allow = NULL;
    int kill_mode = 0, mdwe = 0, have_fam = 0, i;
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--kill") == 0) {
            kill_mode = 1;
        } else if (strcmp(argv[i], "--mdwe") == 0) {
            mdwe = 1;
        } else if (strcmp(argv[i], "--allow") == 0 && i + 1 < argc) {
            allow = argv[++i];
        } else if (strcmp(argv[i], "--families") == 0 && i + 1 < argc) {
            if (sb_parse_families(argv[++i], fam, &nfam) != 0) {
                return 2;
            }
            have_fam = 1;
        } else {
            break;
        }
    }
    if (allow == NULL || i + 1 >= argc || strcmp(argv[i], "--") != 0) {
        fprintf(stderr, "usage: unit-sandbox [--kill] --allow FILE [--families N,...] [--mdwe] "
                        "-- PROGRAM [ARGS...]\n");
        return 2;
    }
    char **prog_argv = argv + i + 1;
    if (sb_read_calls(allow, calls, &ncalls) != 0) {
        return 2;
    }

    int bad = LD(&p, (unsigned)offsetof(struct seccomp_data, arch)) || JEQ(&p, SB_ARCH, 1, 0) ||
              RET(&p, SECCOMP_RET_KILL_PROCESS) || LD(&p, SB_NR);
    if (!bad && mdwe) {
        bad = sb_masked_deny(&p, SYS_mmap, 2, PROT_WRITE | PROT_EXEC) ||
              sb_masked_deny(&p, SYS_mprotect, 2, PROT_EXEC) ||
              sb_masked_deny(&p, SYS_pkey_mprotect, 2, PROT_EXEC) ||
              sb_masked_deny(&p, SYS_shmat, 2, SHM_EXEC);
    }
    if (!bad && have_fam) {
        /* socket(): a listed family goes on to the allow list, any other fails. */
        bad = JEQ(&p, SYS_socket, 0, (unsigned char)(nfam + 3)) || LD(&p, SB_ARG(0));
        for (size_t f = 0; !bad && f < nfam; f++) {
            bad = JEQ(&p, fam[f], (unsigned char)(nfam - f), 0);
        }
        bad = bad || RET(&p, RET_ERRNO(EAFNOSUPPORT)) || LD(&p, SB_NR);
    }
    for (size_t c = 0; !bad && c < ncalls; c++) {
        bad = JEQ(&p, (unsigned)calls[c], 0, 1) || RET(&p, SECCOMP_RET_ALLOW);
    }
    bad = bad || RET(&p, kill_mode ? SECCOMP_RET_KILL_PROCESS : RET_ERRNO(EPERM));
    if (bad) {
        return 2;
    }
    struct sock_fprog fprog = {.len = (unsigned short)p.n, .filter = p.insn};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
        perror("unit-sandbox: seccomp");
        return 1;
    }
    execv(prog_argv[0], prog_argv);
    perror("unit-sandbox: exec");
    return 127;
}
