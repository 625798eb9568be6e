/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path config/rotate-root: a new KEK version; every tenant DEK is rewrapped
 * and KEK versions nothing uses any more are removed (envelope_rotate). While
 * a previous rotation is incomplete (older versions still in storage: it was
 * cut by the request's deadline or a storage error), a call resumes it
 * instead: same version, only the tenants not yet on it are rewrapped. The
 * DEKs themselves do not change, so no key version is re-encrypted and creds
 * reads keep working throughout.
 */
#include "plugin/envelope.h"
#include "plugin/keystore.h"
#include "plugin/paths.h"

static enum err rotate_root(struct fw_request *req, struct fw_response *resp)
{
    struct keystore *ks = keystore_of(req->backend);
    if (ks == NULL) {
        return ERR_INTERNAL;
    }
    struct envelope_rotate_result r = {0};
    enum err e = envelope_rotate(keystore_envelope(ks), req->storage, keystore_lock_cb,
                                 keystore_unlock_cb, ks, &r);
    if (e != ERR_OK) {
        return e; /* incomplete: logged with the tenants left; the next call resumes */
    }
    /* Only a rotation that completed answers: every tenant is on kek_version, older ones gone. */
    fw_reply(resp,
             json_pack("{sIsIsIsbsb}", "kek_version", (json_int_t)r.version, "tenants_rewrapped",
                       (json_int_t)r.rewrapped, "tenants_already_current",
                       (json_int_t)r.already_current, "resumed", r.resumed, "complete", true));
    return ERR_OK;
}

const struct fw_path paths_rotate_root[] = {
    {
        .pattern = "config/rotate-root",
        .handlers = {[FW_OP_UPDATE] = rotate_root, [FW_OP_CREATE] = rotate_root},
        .synopsis = "Rotate the key-encryption key.",
        .description = "Creates KEK version n+1, rewraps every tenant data key with it and removes "
                       "KEK versions no longer used. While a previous rotation is incomplete, "
                       "resumes it instead (no new version; only tenants not yet on it are "
                       "rewrapped). Returns kek_version, tenants_rewrapped, "
                       "tenants_already_current, resumed and complete. Reading config shows "
                       "whether a rotation is incomplete (rotation_incomplete, kek_versions).",
    },
    {.pattern = NULL},
};
