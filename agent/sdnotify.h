/* SPDX-License-Identifier: MPL-2.0 */
/*
 * systemd's service notification protocol (sd_notify(3)): under a unit with
 * Type=notify, systemd passes a datagram socket in $NOTIFY_SOCKET and waits
 * for "READY=1" before it calls the service started, so that `systemctl
 * start` returns only once the listeners accept, and fails when the agent
 * exits before that. "RELOADING=1" / "STOPPING=1" / "STATUS=..." tell it of
 * a reload, the drain and what the agent is doing (`systemctl status`).
 *
 * The protocol is one datagram of newline-separated assignments to an
 * AF_UNIX socket, a stable interface systemd documents for implementations
 * of their own; libsystemd is not linked for it (one library more, with its
 * own dependencies, in every agent for one sendto).
 */
#ifndef BYOK_AGENT_SDNOTIFY_H
#define BYOK_AGENT_SDNOTIFY_H

#include <stdbool.h>

#include "common/err.h"

/*
 * Reads $NOTIFY_SOCKET (an absolute path, or "@name" for an abstract socket)
 * and removes it from the environment, so that nothing the agent starts can
 * write to systemd in its name. Returns true when the agent runs under a
 * notify unit. Idempotent; call before anything else reads the environment
 * from another thread.
 */
bool sdnotify_init(void);

/*
 * Sends state (e.g. "READY=1\nSTATUS=serving") when sdnotify_init found a
 * socket: ERR_OK when sent or when there is no socket, ERR_IO otherwise
 * (the caller logs; a lost notification is not fatal). state is at most
 * 4 KiB.
 */
enum err sdnotify(const char *state);

/* "RELOADING=1" with MONOTONIC_USEC=now (systemd 253+ wants both). */
enum err sdnotify_reloading(void);

#endif
