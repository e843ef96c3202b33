#!/bin/sh
# k3scale exec provider for a pool of spare machines (bare metal, VMs you
# keep around): `create` picks a free machine and joins it as a K3s agent
# over SSH, `delete` uninstalls the agent, `list` asks every machine.
# Stateless: each machine records its own membership in
# /etc/k3scale/membership, so several k3scale replicas agree.
#
# Contract: see deploy/exec/docker-agents.sh and the README ("Exec provider").
# Settings (pools[].provider.exec.env):
#   POOL_MACHINES  "name=host name=host ..." the machines this pool may use
#   SSH_USER       login with passwordless sudo on them
#   SSH_KEY        private key file
#   K3S_URL        https://SERVER:6443
# K3S_TOKEN arrives from k3scale (token_file) and is sent over SSH's stdin only.
set -eu

: "${POOL_MACHINES:?POOL_MACHINES must list name=host pairs}"
: "${SSH_USER:?SSH_USER must be set}"
: "${SSH_KEY:?SSH_KEY must name the private key file}"
here="$(cd "$(dirname "$0")" && pwd)"
member_file=/etc/k3scale/membership
cluster="$K3SCALE_CLUSTER"
pool="$K3SCALE_POOL"

remote() {
    host="$1"
    shift
    ssh -i "$SSH_KEY" -o BatchMode=yes -o ConnectTimeout=10 \
        -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="${HOME:-/tmp}/.ssh/known_hosts" \
        "$SSH_USER@$host" "$@"
}

# membership HOST: "cluster pool node" if the machine is in use, else empty.
membership() {
    remote "$1" "cat $member_file 2>/dev/null || true" </dev/null
}

case "$K3SCALE_ACTION" in
list)
    printf '{"machines": ['
    sep=""
    for m in $POOL_MACHINES; do
        host="${m#*=}"
        if ! member="$(membership "$host")"; then
            echo "pool.sh: $host unreachable, not listed" >&2
            continue
        fi
        read -r m_cluster m_pool m_node <<MEMBER || true
$member
MEMBER
        if [ "$m_cluster" = "$cluster" ] && [ "$m_pool" = "$pool" ]; then
            running=false
            if remote "$host" "systemctl is-active --quiet k3s-agent" </dev/null; then running=true; fi
            printf '%s{"name": "%s", "provider_id": "ssh://%s", "running": %s}' "$sep" "$m_node" "$host" "$running"
            sep=", "
        fi
    done
    printf ']}\n'
    ;;
create)
    name="$K3SCALE_NAME"
    : "${K3S_URL:?K3S_URL must be set}"
    : "${K3S_TOKEN:?K3S_TOKEN must be set (token_file)}"
    for m in $POOL_MACHINES; do
        host="${m#*=}"
        member="$(membership "$host")" || continue
        [ -z "$member" ] || continue
        # Claim it first, so a concurrent create picks another machine.
        remote "$host" "sudo -n mkdir -p /etc/k3scale && sudo -n sh -c 'set -C; echo \"$cluster $pool $name\" > $member_file'" </dev/null || continue
        if ! remote "$host" "sudo -n install -m 600 /dev/stdin /etc/k3scale/token" <<TOKEN
$K3S_TOKEN
TOKEN
        then
            echo "pool.sh: could not send the token to $host" >&2
            remote "$host" "sudo -n rm -f $member_file" </dev/null || true
            exit 12
        fi
        remote "$host" "sudo -n install -m 755 /dev/stdin /etc/k3scale/install-k3s-agent.sh" <"$here/install-k3s-agent.sh"
        if ! remote "$host" "sudo -n /etc/k3scale/install-k3s-agent.sh --server $K3S_URL --token-file /etc/k3scale/token --node-name $name --label k3scale.io/pool=$pool" </dev/null >&2; then
            echo "pool.sh: installing the agent on $host failed" >&2
            remote "$host" "sudo -n rm -f $member_file" </dev/null || true
            exit 12
        fi
        printf '{"name": "%s", "provider_id": "ssh://%s"}\n' "$name" "$host"
        exit 0
    done
    echo "pool.sh: no free machine left in POOL_MACHINES" >&2
    exit 11
    ;;
delete)
    name="$K3SCALE_NAME"
    for m in $POOL_MACHINES; do
        host="${m#*=}"
        member="$(membership "$host")" || continue
        read -r m_cluster m_pool m_node <<MEMBER || true
$member
MEMBER
        if [ "$m_cluster" = "$cluster" ] && [ "$m_pool" = "$pool" ] && [ "$m_node" = "$name" ]; then
            remote "$host" "if [ -x /usr/local/bin/k3s-agent-uninstall.sh ]; then sudo -n /usr/local/bin/k3s-agent-uninstall.sh; fi; sudo -n rm -f $member_file /etc/k3scale/token" </dev/null >&2 || exit 12
            exit 0
        fi
    done
    exit 10
    ;;
*)
    echo "pool.sh: unknown action $K3SCALE_ACTION" >&2
    exit 2
    ;;
esac
