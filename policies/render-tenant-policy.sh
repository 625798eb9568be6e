#!/bin/sh
# SPDX-License-Identifier: MPL-2.0
#
# Renders byok-tenant.hcl for one tenant, for setups without identity
# metadata (e.g. tokens created by hand): the templated paths become concrete.
#
#   policies/render-tenant-policy.sh acme [mount] > byok-tenant-acme.hcl
#   vault policy write byok-tenant-acme byok-tenant-acme.hcl
#
# The tenant id must match the plugin's name rule [a-z0-9][a-z0-9_-]{0,62}:
# anything else (a "*", a "+", a "/", "..") could widen the policy, so it is
# refused. The mount must be a plain path of the same characters plus "/".
set -eu

usage() {
    echo "usage: $0 TENANT [MOUNT]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
tenant=$1
mount=${2:-byok}

if ! printf '%s' "$tenant" | grep -Eq '^[a-z0-9][a-z0-9_-]{0,62}$' ||
    [ "$(printf '%s' "$tenant" | wc -l)" -ne 0 ]; then
    echo "$0: invalid tenant id (must match [a-z0-9][a-z0-9_-]{0,62})" >&2
    exit 1
fi
if ! printf '%s' "$mount" | grep -Eq '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$' ||
    [ "$(printf '%s' "$mount" | wc -l)" -ne 0 ]; then
    echo "$0: invalid mount path" >&2
    exit 1
fi

dir=$(cd "$(dirname "$0")" && pwd)
src=$dir/byok-tenant.hcl
[ -r "$src" ] || {
    echo "$0: cannot read $src" >&2
    exit 1
}

printf '# Rendered from byok-tenant.hcl for tenant "%s" by render-tenant-policy.sh.\n' "$tenant"
# Both values were checked above: neither can contain a sed metacharacter or "#".
sed -e "s#{{identity.entity.metadata.tenant}}#$tenant#g" -e "s#\"byok/#\"$mount/#g" "$src" |
    grep -v '^# SPDX' 
