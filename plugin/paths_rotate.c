/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Path config/rotate-root: a new KEK version; every tenant DEK is rewrapped
 * and KEK versions nothing uses any more are removed (envelope_rotate). The
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
    int64_t version = 0, rewrapped = 0;
    enum err e = envelope_rotate(keystore_envelope(ks), req->storage, keystore_lock_cb,
                                 keystore_unlock_cb, ks, &version, &rewrapped);
    if (e != ERR_OK) {
        return e;
    }
    fw_reply(resp, json_pack("{sIsI}", "kek_version", (json_int_t)version, "tenants_rewrapped",
                             (json_int_t)rewrapped));
    return ERR_OK;
}

const struct fw_path paths_rotate_root[] = {
    {
        .pattern = "config/rotate-root",
        .handlers = {[FW_OP_UPDATE] = rotate_root, [FW_OP_CREATE] = rotate_root},
        .synopsis = "Rotate the key-encryption key.",
        .description = "Creates KEK version n+1, rewraps every tenant data key with it and removes "
                       "KEK versions no longer used. Returns kek_version and tenants_rewrapped.",
    },
    {.pattern = NULL},
};
