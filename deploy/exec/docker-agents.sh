#!/bin/sh
# k3scale exec provider example: K3s agents as Docker containers, driven by
# the docker CLI. Copy it as a starting point for Proxmox, Hetzner, bare metal.
#
# Contract (see README, "Exec provider"):
#   request   JSON on stdin, and K3SCALE_ACTION / K3SCALE_CLUSTER /
#             K3SCALE_POOL / K3SCALE_NAME in the environment
#   create    print {"name": "<name>", "provider_id": "..."}
#   delete    print nothing; exit 10 if the machine does not exist
#   list      print {"machines": [{"name": ..., "provider_id": ..., "running": true|false}]}
#   exit      0 ok, 10 not found, 11 insufficient capacity, 12 retry later, other = fatal
#
# Settings (pools[].provider.exec.env): K3S_IMAGE, K3S_NETWORK, K3S_URL,
# K3S_PRIVILEGED (default true). The token arrives as K3S_TOKEN.
set -eu

image="${K3S_IMAGE:-rancher/k3s:v1.33.4-k3s1}"
network="${K3S_NETWORK:-k3s}"
privileged="${K3S_PRIVILEGED:-true}"
cluster="$K3SCALE_CLUSTER"
pool="$K3SCALE_POOL"
name="${K3SCALE_NAME:-}"

ours() {
    [ "$(docker inspect -f '{{index .Config.Labels "k3scale.io/cluster"}}/{{index .Config.Labels "k3scale.io/pool"}}' "$1" 2>/dev/null)" = "$cluster/$pool" ]
}

case "$K3SCALE_ACTION" in
create)
    : "${K3S_URL:?K3S_URL must be set in the exec provider env}"
    if ! docker inspect "$name" >/dev/null 2>&1; then
        set -- run -d --name "$name" --hostname "$name" \
            --label "k3scale.io/cluster=$cluster" --label "k3scale.io/pool=$pool" \
            --label "app.kubernetes.io/managed-by=k3scale" \
            --network "$network" --restart unless-stopped \
            --tmpfs /run --tmpfs /var/run \
            -e K3S_URL -e K3S_TOKEN
        if [ "$privileged" = "true" ]; then set -- "$@" --privileged; fi
        docker "$@" "$image" agent --node-name "$name" --node-label "k3scale.io/pool=$pool" >/dev/null
    elif ! ours "$name"; then
        echo "a container named $name exists and is not ours" >&2
        exit 1
    fi
    printf '{"name":"%s","provider_id":"docker://%s"}\n' "$name" "$(docker inspect -f '{{.Id}}' "$name")"
    ;;
delete)
    docker inspect "$name" >/dev/null 2>&1 || exit 10
    ours "$name" || { echo "refusing to delete $name: not ours" >&2; exit 1; }
    docker rm -f "$name" >/dev/null
    ;;
list)
    printf '{"machines":['
    sep=""
    docker ps -a --filter "label=k3scale.io/cluster=$cluster" --filter "label=k3scale.io/pool=$pool" \
        --format '{{.Names}} {{.ID}} {{.State}}' | while read -r n id state; do
        running=false
        [ "$state" = "running" ] && running=true
        printf '%s{"name":"%s","provider_id":"docker://%s","running":%s}' "$sep" "$n" "$id" "$running"
        sep=","
    done
    printf ']}\n'
    ;;
*)
    echo "unknown action $K3SCALE_ACTION" >&2
    exit 2
    ;;
esac
