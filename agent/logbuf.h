/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Batched log output for the agent's single event-loop thread. At info level
 * the agent logs one line per request; one write(2) per line cost ~7% of its
 * throughput (closed loop, 16 connections). Lines below warn are collected
 * during a loop turn and written with one write(2) after the turn's other
 * callbacks; a warn or error line writes what is pending and itself at once.
 * Order is kept, and a line is still written before the reply it describes
 * (evhttp writes replies in a later turn).
 */
#ifndef BYOK_AGENT_LOGBUF_H
#define BYOK_AGENT_LOGBUF_H

#include <event2/event.h>

#include "common/err.h"

/* Routes common/log's lines through a buffer on base. */
enum err logbuf_start(struct event_base *base);

/* Writes what is pending and restores direct writes. Accepts no prior start. */
void logbuf_stop(void);

#endif
