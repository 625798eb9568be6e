#!/bin/bash
# SPDX-License-Identifier: MPL-2.0
#
# `make install`, `make uninstall` and `make deb`, without touching this
# machine: every install goes to a DESTDIR or a throwaway root under the
# test's temporary directory.
#   - make install DESTDIR=...: exactly the expected files with their modes,
#     the plugin under its versioned name (the Makefile's VERSION, which both
#     binaries' --version and the man page report), the unit pointing at
#     BINDIR, the sha256 and the exact `vault plugin register` command
#     printed; PREFIX/PLUGIN_DIR honoured; a different plugin file of the same
#     version is not written over (Vault pins it by its SHA-256); an existing
#     /etc/byok/agent.json is never touched; make uninstall removes every file;
#   - make deb: both packages, their files, modes and owners
#     (dpkg-deb --contents), control fields and Depends (dpkg-shlibdeps),
#     maintainer scripts (present, 0755, `sh -n`);
#   - the packages installed with dpkg into a throwaway root: a private mount
#     namespace (unshare) where the root's /usr is an overlay over this
#     machine's /usr (writes land in the test directory) and its /etc holds
#     fresh passwd/group files, dpkg --root running the maintainer scripts
#     chrooted there, and `systemctl` a stub that records its calls (with
#     /run/systemd/system present, so the scripts take their systemd
#     branch): the byok-agent user and group, /var/lib/byok-agent 0700, no
#     start or enable on install, a try-restart on upgrade, a stop on remove,
#     the journal gone on purge; the plugin's older version kept beside the
#     new one across an upgrade (a repacked 0.0.1 upgraded to this version)
#     and removed on purge, where a file put there by hand stays.
#     Skipped, with the reason, where such a namespace cannot be made (not
#     root, no unshare, no overlayfs); the scripts' syntax is still checked.
#     Not tested: a real systemd running the packaged unit (25-systemd-unit.sh
#     runs the same unit file, installed by hand) and apt resolving Depends
#     (dpkg runs with --force-depends: the throwaway root has no packages).
# The machine's own users, dpkg database and /usr are compared before and after.
. "$(dirname "$0")/lib.sh"

CASES=("make install DESTDIR: exit 0, prints the plugin's sha256 and the exact vault plugin register command"
    "make install: every file at its path with its mode, nothing else"
    "installed files: the plugin and agent as built, one version everywhere (--version, file name, man page), unit's ExecStart in BINDIR, policies as shipped"
    "make install PREFIX=/opt/byok PLUGIN_DIR=/srv/vault-plugins: paths and the unit follow"
    "make install again: the same plugin passes; a different file of the same version is refused and left alone; PLUGIN_OVERWRITE=1 replaces it"
    "an existing /etc/byok/agent.json is left as it was by install and uninstall"
    "make uninstall: every installed file gone, the administrator's files kept"
    "make deb: byok-agent and vault-plugin-secrets-byok, version and architecture in their names"
    "byok-agent package: files, modes, owners root:root"
    "byok-agent control: Package, Version, Architecture, Depends from the linked libraries and adduser, no conffiles"
    "vault-plugin-secrets-byok package: files, modes, owners"
    "vault-plugin-secrets-byok control: Depends on glibc alone (static build), no conffiles"
    "maintainer scripts: present, mode 0755, pass sh -n"
    "throwaway root: byok-agent installed by dpkg: user and group (system, nologin), /var/lib/byok-agent 0700, files in place, daemon-reload only (no start, no enable)"
    "throwaway root: byok-agent reinstalled as an upgrade: try-restart; removed: stop, files gone, journal kept; purged: journal gone, user kept"
    "throwaway root: the plugin package upgraded from 0.0.1: both versions' files, the old one no longer the package's; sha256 printed; purge removes the kept version, not a file put there by hand"
    "this machine untouched: users, dpkg database, /usr/bin/byok-agent, /usr/lib/vault-plugins")

MAKE=(make --no-print-directory -C "$BYOK_ROOT")
VERSION=$(sed -n 's/^VERSION := //p' "$BYOK_ROOT/Makefile")
PFILE=vault-plugin-secrets-byok-v$VERSION
T=$LIB_TMP
IS_ASAN=0
[[ $(ldd "$AGENT_BIN" 2>/dev/null) == *libasan* ]] && IS_ASAN=1

lib_require "$PLUGIN_BIN" "$AGENT_BIN" || t_block_all
[ -n "$VERSION" ] || {
    LIB_BLOCKED_REASON="no VERSION in the Makefile"
    t_block_all
}

# What this machine holds before; compared at the end.
host_state() {
    getent passwd byok-agent
    getent group byok-agent
    dpkg-query -W byok-agent vault-plugin-secrets-byok 2>&1
    ls -l /usr/bin/byok-agent /usr/lib/vault-plugins /lib/systemd/system/byok-agent.service 2>&1
}
HOST_BEFORE=$(host_state)

# mk ARGS...: make with the binaries under test, never rebuilt (-o): the normal or
# the ASan build, whichever BYOK_BUILD names.
mk() { "${MAKE[@]}" O="$BYOK_BUILD" -o "$PLUGIN_BIN" -o "$AGENT_BIN" "$@"; }

# tree DIR: "mode path" of every file, symlink and directory below DIR.
tree() { (cd "$1" && find . -mindepth 1 \( -type f -o -type l \) -printf '%m %P\n' | LC_ALL=C sort); }

# ---- make install ----
D=$T/destdir
out=$(mk install DESTDIR="$D" 2>&1)
rc=$?
sha=$(sha256sum "$D/etc/vault/plugins/$PFILE" 2>/dev/null | cut -d' ' -f1)
want_reg="vault plugin register -sha256=$sha -command=$PFILE -version=v$VERSION secret vault-plugin-secrets-byok"
if [ "$rc" = 0 ] && [ -n "$sha" ] && grep -qxF "sha256 $sha  $PFILE" <<<"$out" && grep -qxF "  $want_reg" <<<"$out"; then
    t_ok "${CASES[0]}"
else
    t_fail "${CASES[0]}" "exit $rc: $(tr '\n' ';' <<<"$out")"
fi

want_tree="644 usr/local/lib/systemd/system/byok-agent.service
644 usr/local/share/byok/policies/README.md
644 usr/local/share/byok/policies/byok-admin.hcl
644 usr/local/share/byok/policies/byok-agent.hcl
644 usr/local/share/byok/policies/byok-tenant.hcl
644 usr/local/share/doc/byok-agent/examples/agent.json
644 usr/local/share/man/man8/byok-agent.8
755 etc/vault/plugins/$PFILE
755 usr/local/bin/byok-agent
755 usr/local/share/byok/policies/render-tenant-policy.sh"
got_tree=$(tree "$D" | LC_ALL=C sort)
want_tree=$(LC_ALL=C sort <<<"$want_tree")
t_eq "${CASES[1]}" "$got_tree" "$want_tree"

# One version everywhere: the Makefile's, the binaries', the file name's, the man page's.
checks=""
cmp -s "$PLUGIN_BIN" "$D/etc/vault/plugins/$PFILE" || checks+=" plugin-differs"
cmp -s "$AGENT_BIN" "$D/usr/local/bin/byok-agent" || checks+=" agent-differs"
pv=$("$D/etc/vault/plugins/$PFILE" --version 2>&1)
av=$("$D/usr/local/bin/byok-agent" --version 2>&1)
[ "$pv" = "vault-plugin-secrets-byok v$VERSION" ] || checks+=" plugin--version:'$pv'"
[ "$av" = "byok-agent $VERSION" ] || checks+=" agent--version:'$av'"
grep -q "^\.TH BYOK-AGENT 8 .* \"byok $VERSION\" " "$D/usr/local/share/man/man8/byok-agent.8" || checks+=" man-version"
grep -q "^\.TH .*\"byok $VERSION\"" "$BYOK_ROOT/agent/byok-agent.8" || checks+=" source-man-version"
# the unit as shipped (its paths are /usr/local/bin already)
cmp -s "$BYOK_ROOT/agent/byok-agent.service" "$D/usr/local/lib/systemd/system/byok-agent.service" || checks+=" unit-differs"
for f in byok-admin.hcl byok-agent.hcl byok-tenant.hcl README.md render-tenant-policy.sh; do
    cmp -s "$BYOK_ROOT/policies/$f" "$D/usr/local/share/byok/policies/$f" || checks+=" $f-differs"
done
cmp -s "$BYOK_ROOT/agent/example-config.json" "$D/usr/local/share/doc/byok-agent/examples/agent.json" || checks+=" example-differs"
t_eq "${CASES[2]}" "${checks# }" ""

D2=$T/destdir-opt
out=$(mk install DESTDIR="$D2" PREFIX=/opt/byok PLUGIN_DIR=/srv/vault-plugins 2>&1)
rc=$?
exec_lines=$(grep -E '^Exec(Start|StartPre)=' "$D2/opt/byok/lib/systemd/system/byok-agent.service" 2>/dev/null | cut -d' ' -f1 | sort -u | paste -sd' ' -)
t_eq "${CASES[3]}" "exit $rc, $(tree "$D2" | grep -cE ' (srv/vault-plugins/'"$PFILE"'|opt/byok/bin/byok-agent|opt/byok/share/man/man8/byok-agent.8|opt/byok/share/byok/policies/byok-agent.hcl|opt/byok/share/doc/byok-agent/examples/agent.json)$') paths, $exec_lines, $(grep -c "command=$PFILE" <<<"$out") register line" \
    "exit 0, 5 paths, ExecStart=/opt/byok/bin/byok-agent ExecStartPre=/opt/byok/bin/byok-agent, 1 register line"

# Re-install: same file fine; a different one of the same version refused.
r1=$(mk install-plugin DESTDIR="$D" >/dev/null 2>&1 && echo same-ok || echo same-refused)
printf 'not the registered plugin\n' >"$D/etc/vault/plugins/$PFILE"
out=$(mk install-plugin DESTDIR="$D" 2>&1)
r2="exit $?"
grep -q 'SHA-256' <<<"$out" && r2+=" says why"
r3=$(cat "$D/etc/vault/plugins/$PFILE")
r4=$(mk install-plugin DESTDIR="$D" PLUGIN_OVERWRITE=1 >/dev/null 2>&1 && cmp -s "$PLUGIN_BIN" "$D/etc/vault/plugins/$PFILE" && echo replaced)
t_eq "${CASES[4]}" "$r1; $r2; $r3; $r4" "same-ok; exit 2 says why; not the registered plugin; replaced"

# The administrator's config: written before, the same after install and uninstall.
mkdir -p "$D/etc/byok"
printf '{"admin": "edited"}\n' >"$D/etc/byok/agent.json"
chmod 0640 "$D/etc/byok/agent.json"
mk install DESTDIR="$D" >/dev/null 2>&1
a1=$(stat -c '%a' "$D/etc/byok/agent.json"; cat "$D/etc/byok/agent.json")

out=$(mk uninstall DESTDIR="$D" 2>&1)
rc=$?
a2=$(stat -c '%a' "$D/etc/byok/agent.json"; cat "$D/etc/byok/agent.json")
t_eq "${CASES[5]}" "$a1 | $a2" "640
{\"admin\": \"edited\"} | 640
{\"admin\": \"edited\"}"
left=$(tree "$D" | grep -v ' etc/byok/agent.json$' | paste -sd' ' -)
dirs=$(cd "$D" && find usr/local/share/byok usr/local/share/doc/byok-agent 2>/dev/null | paste -sd' ' -)
t_eq "${CASES[6]}" "exit $rc, left: [$left], package dirs: [$dirs], $(grep -c 'deregister' <<<"$out") deregister hint" \
    "exit 0, left: [], package dirs: [], 1 deregister hint"

# ---- make deb ----
DEB=$T/deb
ARCH=$(dpkg --print-architecture)
out=$(mk deb DEB_OUT="$DEB" DEB_COMPRESS=gzip DEB_ZLEVEL=1 2>&1)
rc=$?
ADEB=$DEB/byok-agent_${VERSION}_$ARCH.deb
PDEB=$DEB/vault-plugin-secrets-byok_${VERSION}_$ARCH.deb
t_eq "${CASES[7]}" "exit $rc, $(find "$DEB" -maxdepth 1 -name "*.deb" -printf "%f\n" | LC_ALL=C sort | paste -sd' ' -)" \
    "exit 0, byok-agent_${VERSION}_$ARCH.deb vault-plugin-secrets-byok_${VERSION}_$ARCH.deb"
[ "$rc" = 0 ] || t_diag "$(tail -n 5 <<<"$out")"

# contents DEB: "mode owner path" of its files (dpkg-deb --contents, tar's listing).
contents() {
    dpkg-deb --contents "$1" 2>/dev/null | awk '$1 !~ /^d/ { p = $6; sub(/^\.\//, "", p); print $1, $2, p }' | LC_ALL=C sort
}
want="-rw-r--r-- root/root lib/systemd/system/byok-agent.service
-rw-r--r-- root/root usr/share/doc/byok-agent/copyright
-rw-r--r-- root/root usr/share/doc/byok-agent/examples/agent.json
-rw-r--r-- root/root usr/share/man/man8/byok-agent.8.gz
-rwxr-xr-x root/root usr/bin/byok-agent"
t_eq "${CASES[8]}" "$(contents "$ADEB")" "$(LC_ALL=C sort <<<"$want")"

field() { dpkg-deb --field "$1" "$2" 2>/dev/null; }
dep=$(field "$ADEB" Depends)
ctl="$(field "$ADEB" Package) $(field "$ADEB" Version) $(field "$ADEB" Architecture)"
miss=""
for p in libc6 libcurl4 libevent-2.1-7 libjansson4 libssl3 adduser; do
    [[ ", $dep," == *", $p "* || ", $dep," == *", $p,"* ]] || miss+=" $p"
done
conff=$(dpkg-deb --ctrl-tarfile "$ADEB" | tar -t | grep -c conffiles)
if [ "$ctl" = "byok-agent $VERSION $ARCH" ] && [ -z "$miss" ] && [[ $dep == *"libc6 (>= "* ]] && [ "$conff" = 0 ]; then
    t_ok "${CASES[9]}"
    t_diag "byok-agent Depends: $dep"
else
    t_fail "${CASES[9]}" "control '$ctl', Depends '$dep' (missing:$miss), conffiles $conff"
fi

want="-rw-r--r-- root/root usr/share/byok/policies/README.md
-rw-r--r-- root/root usr/share/byok/policies/byok-admin.hcl
-rw-r--r-- root/root usr/share/byok/policies/byok-agent.hcl
-rw-r--r-- root/root usr/share/byok/policies/byok-tenant.hcl
-rw-r--r-- root/root usr/share/doc/vault-plugin-secrets-byok/copyright
-rwxr-xr-x root/root usr/lib/vault-plugins/$PFILE
-rwxr-xr-x root/root usr/share/byok/policies/render-tenant-policy.sh"
t_eq "${CASES[10]}" "$(contents "$PDEB")" "$(LC_ALL=C sort <<<"$want")"

dep=$(field "$PDEB" Depends)
ctl="$(field "$PDEB" Package) $(field "$PDEB" Version) $(field "$PDEB" Architecture)"
conff=$(dpkg-deb --ctrl-tarfile "$PDEB" | tar -t | grep -c conffiles)
if [ "$IS_ASAN" = 1 ]; then
    # The ASan plugin links its runtime and the libraries dynamically.
    t_match "${CASES[11]}" "$ctl | $dep | $conff" "^vault-plugin-secrets-byok $VERSION $ARCH \| .*libc6 \(>= [^)]+\).* \| 0$"
else
    t_eq "${CASES[11]}" "$ctl | $dep | $conff" "vault-plugin-secrets-byok $VERSION $ARCH | libc6 (>= 2.36) | 0"
fi

# maintainer scripts: the expected set, 0755, sh -n
scripts=""
bad=""
for pair in "$ADEB:postinst prerm postrm" "$PDEB:preinst postinst postrm"; do
    deb=${pair%%:*}
    x=$T/ctrl-$(basename "$deb")
    mkdir -p "$x" && dpkg-deb --control "$deb" "$x" 2>/dev/null
    for s in ${pair#*:}; do
        scripts+=" $(stat -c %a "$x/$s" 2>/dev/null || echo missing)"
        sh -n "$x/$s" 2>/dev/null || bad+=" $(basename "$deb"):$s"
        ! grep -q '@[A-Z_]*@' "$x/$s" || bad+=" $(basename "$deb"):$s:placeholder"
    done
    for s in "$x"/*; do
        case ${s##*/} in control | md5sums | preinst | postinst | prerm | postrm) ;; *) bad+=" extra:${s##*/}" ;; esac
    done
done
t_eq "${CASES[12]}" "${scripts# }|${bad# }" "755 755 755 755 755 755|"

# ---- a throwaway root ----
# root.sh runs inside `unshare --mount`: the root R gets /usr as an overlay over this
# machine's /usr (upper layer in $T), symlinks for /bin /sbin /lib*, a fresh /etc and
# dpkg database, /dev/null and a stub systemctl. Everything it sees from here on is
# private to its namespace or under $T.
R=$T/root
cat >"$T/root.sh" <<'EOF'
set -u
T=$1 R=$2 ADEB=$3 PDEB=$4 OLDPDEB=$5
mount --make-rprivate / || exit 10
mkdir -p "$R"/usr "$R"/etc "$R"/var/lib/dpkg/info "$R"/var/lib/dpkg/updates "$R"/var/lib/dpkg/triggers \
    "$R"/var/log "$R"/tmp "$R"/dev "$R"/proc "$R"/run/systemd/system "$T"/usr-up "$T"/usr-wk || exit 11
for l in bin sbin lib lib32 lib64 libx32; do [ -L "/$l" ] && ln -s "$(readlink "/$l")" "$R/$l"; done
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$T/usr-up,workdir=$T/usr-wk" "$R/usr" || exit 12
touch "$R/dev/null" && mount --bind /dev/null "$R/dev/null" || exit 13
mount -t proc proc "$R/proc" || exit 14
chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$R/etc/shadow"
printf 'root:*::\nnogroup:*::\n' >"$R/etc/gshadow"
chmod 0640 "$R/etc/shadow" "$R/etc/gshadow"
for f in login.defs adduser.conf nsswitch.conf ld.so.cache ld.so.conf; do [ -e "/etc/$f" ] && cp "/etc/$f" "$R/etc/"; done
[ -d /etc/ld.so.conf.d ] && cp -r /etc/ld.so.conf.d "$R/etc/"
: >"$R/var/lib/dpkg/status"
# systemctl as the maintainer scripts see it: records its arguments
printf '#!/bin/sh\necho "$*" >>/systemctl.log\n' >"$R/usr/bin/systemctl" && chmod 0755 "$R/usr/bin/systemctl"
dp() { dpkg --root="$R" --log="$T/dpkg.log" --force-depends --force-not-root "$@"; }
calls() { if [ -f "$R/systemctl.log" ]; then paste -sd, "$R/systemctl.log"; else echo none; fi; rm -f "$R/systemctl.log"; }

dp -i "$ADEB" >"$T/dpkg-agent-install.log" 2>&1
echo "install-rc=$?"
echo "passwd=$(grep '^byok-agent:' "$R/etc/passwd" | cut -d: -f3- | awk -F: '{ print ($1 < 1000 ? "system" : "user") ":" $4 ":" $5 }')"
echo "group=$(grep -c '^byok-agent:' "$R/etc/group")"
echo "journal=$(chroot "$R" stat -c '%a %U:%G' /var/lib/byok-agent 2>&1)"
echo "etcbyok=$(stat -c '%a' "$R/etc/byok" 2>&1) $(ls -A "$R/etc/byok" | wc -l)"
echo "files=$(for f in usr/bin/byok-agent lib/systemd/system/byok-agent.service usr/share/man/man8/byok-agent.8.gz \
    usr/share/doc/byok-agent/examples/agent.json; do [ -f "$R/$f" ] && echo -n +; done)"
echo "status=$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Status}' byok-agent)"
echo "install-calls=$(calls)"

dp -i "$ADEB" >"$T/dpkg-agent-upgrade.log" 2>&1
echo "upgrade-rc=$?"
echo "upgrade-calls=$(calls)"
dp -r byok-agent >"$T/dpkg-agent-remove.log" 2>&1
echo "remove-rc=$?"
echo "remove-calls=$(calls)"
echo "after-remove=$([ -e "$R/usr/bin/byok-agent" ] && echo binary)$([ -d "$R/var/lib/byok-agent" ] && echo journal)"
dp -P byok-agent >"$T/dpkg-agent-purge.log" 2>&1
echo "purge-rc=$?"
echo "after-purge=$([ -d "$R/var/lib/byok-agent" ] && echo journal) user:$(grep -c '^byok-agent:' "$R/etc/passwd")"

dp -i "$OLDPDEB" >"$T/dpkg-plugin-old.log" 2>&1
echo "plugin-old-rc=$?"
dp -i "$PDEB" >"$T/dpkg-plugin-new.log" 2>&1
echo "plugin-new-rc=$?"
echo "plugin-files=$(ls "$R/usr/lib/vault-plugins" | paste -sd' ' -)"
echo "plugin-owned=$(dpkg-query --admindir="$R/var/lib/dpkg" -L vault-plugin-secrets-byok | grep '^/usr/lib/vault-plugins/' | paste -sd' ' -)"
echo "plugin-sha=$(grep -c "^vault-plugin-secrets-byok: /usr/lib/vault-plugins/.* sha256 $(sha256sum "$R"/usr/lib/vault-plugins/*-v@V@ | cut -d' ' -f1)$" "$T/dpkg-plugin-new.log") $(grep -c 'vault plugin register -sha256=' "$T/dpkg-plugin-new.log")"
# purge: the kept older version goes, a file put there by hand stays
echo by-hand >"$R/usr/lib/vault-plugins/vault-plugin-secrets-byok-v9.9.9"
dp -P vault-plugin-secrets-byok >"$T/dpkg-plugin-purge.log" 2>&1
echo "plugin-purge=$? $(ls "$R/usr/lib/vault-plugins" | paste -sd' ' -) $([ -e "$R/var/lib/vault-plugin-secrets-byok" ] && echo state-left)"
EOF

# A 0.0.1 of the plugin package: this one repacked under the older version and file name.
OLD=$T/old-plugin
OLDPDEB=$T/vault-plugin-secrets-byok_0.0.1_$ARCH.deb
repack_old() {
    dpkg-deb -R "$PDEB" "$OLD" &&
        mv "$OLD/usr/lib/vault-plugins/$PFILE" "$OLD/usr/lib/vault-plugins/vault-plugin-secrets-byok-v0.0.1" &&
        sed -i "s/^Version: .*/Version: 0.0.1/" "$OLD/DEBIAN/control" &&
        sed -i "s/-v$VERSION\b/-v0.0.1/g; s/v$VERSION /v0.0.1 /g" "$OLD/DEBIAN/postinst" "$OLD/DEBIAN/preinst" &&
        (cd "$OLD" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums) &&
        dpkg-deb --root-owner-group -Zgzip -z1 --build "$OLD" "$OLDPDEB" >/dev/null
}

ROOT_CASES=("${CASES[@]:13:3}")
why=""
[ "$(id -u)" = 0 ] || why="needs root for a private mount namespace"
[ -z "$why" ] && ! command -v unshare >/dev/null && why="unshare not installed (util-linux)"
[ -z "$why" ] && [ ! -f "$ADEB" ] && why="the packages were not built"
if [ -z "$why" ] && ! unshare --mount --propagation private sh -c \
    "mkdir -p '$T/ovl/u' '$T/ovl/w' '$T/ovl/m' && mount -t overlay overlay -o lowerdir=/usr,upperdir='$T/ovl/u',workdir='$T/ovl/w' '$T/ovl/m'" 2>/dev/null; then
    why="cannot mount an overlay of /usr in a private mount namespace here"
fi
if [ -n "$why" ]; then
    for c in "${ROOT_CASES[@]}"; do t_skip "$c" "$why"; done
else
    repack_old || t_diag "could not repack the plugin package as 0.0.1"
    sed -i "s/@V@/$VERSION/" "$T/root.sh"
    res=$(timeout 120 unshare --mount --propagation private bash "$T/root.sh" "$T" "$R" "$ADEB" "$PDEB" "$OLDPDEB" 2>"$T/root.err")
    rc=$?
    get() { sed -n "s/^$1=//p" <<<"$res" | head -n 1; }
    if [ "$rc" != 0 ] && [ -z "$res" ]; then
        LIB_BLOCKED_REASON="the throwaway root could not be set up (exit $rc): $(tail -n 2 "$T/root.err" | tr '\n' ' ')"
        t_blocked "${ROOT_CASES[@]}"
    else
        t_eq "${CASES[13]}" "$(get install-rc) $(get passwd) $(get group) | $(get journal) | $(get etcbyok) | $(get files) | $(get status) | $(get install-calls)" \
            "0 system:/nonexistent:/usr/sbin/nologin 1 | 700 byok-agent:byok-agent | 755 0 | ++++ | install ok installed | --system daemon-reload"
        [ "$(get install-rc)" = 0 ] || t_diag "$(tail -n 3 "$T/dpkg-agent-install.log")"
        t_eq "${CASES[14]}" "$(get upgrade-rc) $(get upgrade-calls) | $(get remove-rc) $(get remove-calls) left:$(get after-remove) | $(get purge-rc) left:$(get after-purge)" \
            "0 --system daemon-reload,try-restart byok-agent.service | 0 stop byok-agent.service,--system daemon-reload left:journal | 0 left: user:1"
        t_eq "${CASES[15]}" "$(get plugin-old-rc) $(get plugin-new-rc) | $(get plugin-files) | $(get plugin-owned) | $(get plugin-sha) | $(get plugin-purge)" \
            "0 0 | vault-plugin-secrets-byok-v0.0.1 $PFILE | /usr/lib/vault-plugins/$PFILE | 1 1 | 0 vault-plugin-secrets-byok-v9.9.9 "
    fi
fi

t_eq "${CASES[16]}" "$(host_state)" "$HOST_BEFORE"
t_done
