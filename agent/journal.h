/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The usage journal's files (usage.journal_dir): what usage.c has not had
 * acknowledged survives a crash or a restart. Two files in the directory:
 *
 *   usage.snapshot  the whole unacknowledged state as usage.c writes it (one
 *                   JSON document), replaced atomically (written to a
 *                   temporary file, fsync'd, renamed, the directory fsync'd);
 *   usage.log       one JSON line per usage record since that snapshot,
 *                   appended with one write(2) each (so a crash of the
 *                   process loses none; fdatasync'd at every report, so a
 *                   crash of the machine loses at most one report interval).
 *
 * Each log line carries a sequence number and the snapshot names the last
 * one it holds, so lines left over from before a snapshot (a crash between
 * the rename and the log's truncation) are skipped on load, never counted
 * twice. A torn last line (a crash mid-write) is skipped. The directory is
 * locked (flock on usage.log): two agents must not share it.
 *
 * The files hold usage only (tenant, app, provider, model, key type,
 * status, tokens, cost): never a key or a prompt. Mode 0600.
 */
#ifndef BYOK_AGENT_JOURNAL_H
#define BYOK_AGENT_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Largest snapshot or log read at start (a snapshot of 100,000 rows is about 30 MB). */
#define JOURNAL_MAX_FILE ((size_t)256 * 1024 * 1024)

struct journal;

/*
 * Opens (creating them) and locks the files in dir. ERR_CONFIG with why in
 * errbuf (errlen bytes) when the directory is missing or not writable, or
 * another process holds it.
 */
MUST_USE enum err journal_open(const char *dir, struct journal **ret, char *errbuf, size_t errlen);
/* Closes (fdatasync first). Accepts NULL. */
void journal_close(struct journal *j);

/*
 * What the files hold: the snapshot (*ret_snapshot, NULL when there is none
 * or it does not parse: then why is logged and the file kept as
 * usage.snapshot.bad) and the log's records after it, in order
 * (*ret_records, an array of objects as usage.c appended them, without
 * their sequence numbers). *ret_seq: the last sequence number seen.
 */
MUST_USE enum err journal_load(struct journal *j, json_t **ret_snapshot, json_t **ret_records,
                               unsigned long long *ret_seq);

/* Appends one record (an object; seq is added). Errors are logged (at most once a minute). */
void journal_append(struct journal *j, json_t *record, unsigned long long seq);

/*
 * Replaces the snapshot with doc (which must name the last sequence number
 * it holds) and empties the log. On failure the old snapshot and the log
 * stay as they were (still a consistent state) and the error is returned.
 */
MUST_USE enum err journal_snapshot(struct journal *j, const json_t *doc);

/* fdatasync of the log (at every report). */
void journal_sync(struct journal *j);

#endif
