/* SPDX-License-Identifier: MPL-2.0 */
#include <grpc/grpc.h>
#include <stdio.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "sdk/plugin/pb/backend.pb-c.h"
int main(void)
{
    grpc_init();
    printf("%s\n", grpc_version_string());
    json_t *j = json_object();
    json_decref(j);
    grpc_shutdown();
    return 0;
}
