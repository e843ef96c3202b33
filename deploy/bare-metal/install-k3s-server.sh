#!/bin/sh
# Installs (or reconfigures) a K3s server. Idempotent like
# install-k3s-agent.sh.
#
# usage: install-k3s-server.sh --token-file FILE
#            [--cluster-init | --join https://FIRST-SERVER:6443]
#            [--datastore-endpoint URL] [--tls-san NAME]... [--version v1.33.4+k3s1]
#
# --cluster-init starts embedded etcd (add servers later with --join);
# --datastore-endpoint uses an external database (PostgreSQL, MySQL, etcd)
# instead. Without either, K3s uses its single-server SQLite datastore.
set -eu

token_file="" join="" cluster_init=no datastore="" sans="" version="${INSTALL_K3S_VERSION:-v1.33.4+k3s1}"
while [ $# -gt 0 ]; do
    case "$1" in
    --token-file) token_file="$2"; shift 2 ;;
    --cluster-init) cluster_init=yes; shift ;;
    --join) join="$2"; shift 2 ;;
    --datastore-endpoint) datastore="$2"; shift 2 ;;
    --tls-san) sans="$sans $2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    *) echo "install-k3s-server: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -s "$token_file" ] || { echo "install-k3s-server: --token-file must name a non-empty file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install-k3s-server: run as root" >&2; exit 2; }
if [ "$cluster_init" = yes ] && [ -n "$join$datastore" ]; then
    echo "install-k3s-server: --cluster-init starts a new etcd; it cannot be combined with --join or --datastore-endpoint" >&2
    exit 2
fi

config_dir=/etc/rancher/k3s
mkdir -p "$config_dir"
install -m 600 "$token_file" "$config_dir/server-token"

wanted="$(mktemp)"
trap 'rm -f "$wanted"' EXIT
{
    echo "token-file: \"$config_dir/server-token\""
    echo "write-kubeconfig-mode: \"0600\""
    [ "$cluster_init" = no ] || echo "cluster-init: true"
    [ -z "$join" ] || echo "server: \"$join\""
    [ -z "$datastore" ] || echo "datastore-endpoint: \"$datastore\""
    if [ -n "$sans" ]; then
        echo "tls-san:"
        for s in $sans; do echo "  - \"$s\""; done
    fi
} >"$wanted"

changed=yes
if [ -f "$config_dir/config.yaml" ] && cmp -s "$wanted" "$config_dir/config.yaml"; then
    changed=no
fi
installed=no
if [ -x /usr/local/bin/k3s ] && [ -f /etc/systemd/system/k3s.service ] \
    && /usr/local/bin/k3s --version 2>/dev/null | grep -q "${version%%+*}"; then
    installed=yes
fi

if [ "$changed" = no ] && [ "$installed" = yes ] && systemctl is-active --quiet k3s; then
    echo "install-k3s-server: already installed and running with these settings"
    exit 0
fi

install -m 600 "$wanted" "$config_dir/config.yaml"
if [ "$installed" = no ]; then
    installer="${K3S_INSTALLER:-}"
    if [ -z "$installer" ]; then
        installer="$(mktemp)"
        curl -sfL https://get.k3s.io -o "$installer"
    fi
    INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC=server sh "$installer"
else
    systemctl restart k3s
fi
echo "install-k3s-server: server configured; kubeconfig at /etc/rancher/k3s/k3s.yaml"
