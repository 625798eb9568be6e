# SPDX-License-Identifier: MPL-2.0
"""Checks agent/k8s-daemonset.yaml for consistency (tests/e2e/19-packaging.sh).

usage: check-daemonset.py DAEMONSET.yaml CONFIG_OUT.json

Without a cluster, what can be checked is that the manifest's parts agree
with each other and with the agent: the documents parse and are the kinds
expected; the ConfigMap's agent.json is written to CONFIG_OUT.json (the
caller runs the agent's --check-config on it); the container's -c argument
names that file where the ConfigMap is mounted; every listener socket is
under the mounted socket directory, which is a hostPath; the liveness probe
asks /healthz on one of the listeners; usage.journal_dir, when set, is in
a writable hostPath volume (the journal outlives the pod); the init
container gives those directories to the uid the agent runs as; the Vault
CA file is in a mounted
ConfigMap; the pod and the agent run as non-root with no capabilities, no
privilege escalation, a read-only root and the runtime's default seccomp
profile; and the grace period exceeds the agent's drain_timeout_s.
Prints one line per problem; exits 1 if any.
"""
import json
import os
import sys

import yaml

DEFAULT_DRAIN_S = 30  # docs/agent.md: drain_timeout_s


def main():
    path, config_out = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("ServiceAccount", "ConfigMap", "DaemonSet"):
        if len(by_kind.get(kind, [])) != 1:
            problems.append(f"expected one {kind}, found {len(by_kind.get(kind, []))}")
    if problems:
        return problems
    sa, cm, ds = by_kind["ServiceAccount"][0], by_kind["ConfigMap"][0], by_kind["DaemonSet"][0]
    ns = {d["metadata"].get("namespace") for d in (sa, cm, ds)}
    if len(ns) != 1:
        problems.append(f"the documents are in different namespaces: {sorted(map(str, ns))}")

    config = json.loads(cm["data"]["agent.json"])
    with open(config_out, "w", encoding="utf-8") as f:
        json.dump(config, f)

    pod = ds["spec"]["template"]["spec"]
    if ds["spec"]["selector"]["matchLabels"].items() - ds["spec"]["template"]["metadata"]["labels"].items():
        problems.append("the selector does not match the pod template's labels")
    if pod.get("serviceAccountName") != sa["metadata"]["name"]:
        problems.append("the pod does not use the ServiceAccount")
    agents = [c for c in pod["containers"] if c["name"] == "agent"]
    if len(agents) != 1:
        return problems + ["no container named agent"]
    agent = agents[0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}

    def volume_at(file_path):
        """The volume mounted at the deepest mountPath holding file_path."""
        best = None
        for mp, m in mounts.items():
            if file_path == mp or file_path.startswith(mp.rstrip("/") + "/"):
                if best is None or len(mp) > len(best[0]):
                    best = (mp, volumes.get(m["name"]))
        return best

    args = agent.get("args", [])
    if "-c" not in args or args.index("-c") + 1 >= len(args):
        problems.append("the agent's args do not name its config with -c")
    else:
        cfile = args[args.index("-c") + 1]
        at = volume_at(cfile)
        if at is None or at[1] is None or at[1].get("configMap", {}).get("name") != cm["metadata"]["name"]:
            problems.append(f"{cfile} is not in the mounted ConfigMap {cm['metadata']['name']}")
        elif os.path.relpath(cfile, at[0]) not in cm["data"]:
            problems.append(f"{cfile}: the ConfigMap has no key {os.path.relpath(cfile, at[0])}")

    listeners = [l["path"] for l in config.get("listeners", [])]
    sock_dirs = set()
    for lp in listeners:
        at = volume_at(lp)
        if at is None or at[1] is None or "hostPath" not in at[1]:
            problems.append(f"listener {lp} is not in a hostPath volume the apps could mount")
        else:
            sock_dirs.add(at[0])
            if mounts[at[0]].get("readOnly"):
                problems.append(f"the agent mounts {at[0]} read-only: it cannot create {lp}")
    probe = agent.get("livenessProbe", {}).get("exec", {}).get("command", [])
    if "--unix-socket" not in probe or probe[probe.index("--unix-socket") + 1] not in listeners:
        problems.append("the liveness probe does not use one of the listeners")
    elif not any(a.endswith("/healthz") for a in probe):
        problems.append("the liveness probe does not ask /healthz")

    ca = config.get("vault", {}).get("ca_file")
    if ca:
        at = volume_at(ca)
        if at is None or at[1] is None or ("configMap" not in at[1] and "secret" not in at[1]):
            problems.append(f"vault.ca_file {ca} is not in a mounted ConfigMap or Secret")

    psc = pod.get("securityContext", {})
    csc = agent.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if not uid:
        problems.append("the agent does not run as a fixed non-root uid")
    if not csc.get("runAsNonRoot"):
        problems.append("the agent container does not set runAsNonRoot")
    if csc.get("allowPrivilegeEscalation", True):
        problems.append("the agent container allows privilege escalation")
    if not csc.get("readOnlyRootFilesystem"):
        problems.append("the agent's root filesystem is writable")
    caps = csc.get("capabilities", {})
    if caps.get("drop") != ["ALL"] or caps.get("add"):
        problems.append("the agent container does not drop every capability")
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccomp profile {seccomp}: not confined")
    journal = config.get("usage", {}).get("journal_dir")
    if journal:
        at = volume_at(journal)
        if at is None or at[1] is None or "hostPath" not in at[1]:
            problems.append(f"usage.journal_dir {journal} is not in a hostPath volume (it must outlive the pod)")
        else:
            sock_dirs.add(at[0])
            if mounts[at[0]].get("readOnly"):
                problems.append(f"the agent mounts {at[0]} read-only: it cannot write its journal")
    init_cmds = " ".join(" ".join(c.get("command", [])) for c in pod.get("initContainers", []))
    for d in sock_dirs:
        if f"chown {uid}:" not in init_cmds or d not in init_cmds:
            problems.append(f"no init container gives {d} to uid {uid}")

    drain = config.get("drain_timeout_s", DEFAULT_DRAIN_S)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= drain:
        problems.append(f"terminationGracePeriodSeconds {grace} is not above drain_timeout_s {drain}")
    return problems


if __name__ == "__main__":
    found = main()
    for p in found:
        print(p)
    sys.exit(1 if found else 0)
