#!/bin/sh
# Installs (or reconfigures) a K3s agent on this machine and joins it to a
# server. Idempotent: running it again with the same settings changes
# nothing; with new settings it rewrites the config and restarts the agent.
#
# usage: install-k3s-agent.sh --server https://SERVER:6443 --token-file FILE
#            [--node-name NAME] [--label key=value]... [--version v1.33.4+k3s1]
#
# The token is read from a file (never from the command line, where `ps`
# would show it). Needs root. The K3s installer comes from get.k3s.io, or
# from $K3S_INSTALLER (a local copy of install.sh) on machines without
# internet access.
set -eu

server="" token_file="" node_name="" version="${INSTALL_K3S_VERSION:-v1.33.4+k3s1}" labels=""
while [ $# -gt 0 ]; do
    case "$1" in
    --server) server="$2"; shift 2 ;;
    --token-file) token_file="$2"; shift 2 ;;
    --node-name) node_name="$2"; shift 2 ;;
    --label) labels="$labels $2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    *) echo "install-k3s-agent: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$server" ] || { echo "install-k3s-agent: --server is required" >&2; exit 2; }
[ -s "$token_file" ] || { echo "install-k3s-agent: --token-file must name a non-empty file" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install-k3s-agent: run as root" >&2; exit 2; }

config_dir=/etc/rancher/k3s
mkdir -p "$config_dir"
install -m 600 "$token_file" "$config_dir/agent-token"

# The desired configuration; K3s reads it at every start.
wanted="$(mktemp)"
trap 'rm -f "$wanted"' EXIT
{
    echo "server: \"$server\""
    echo "token-file: \"$config_dir/agent-token\""
    [ -z "$node_name" ] || echo "node-name: \"$node_name\""
    if [ -n "$labels" ]; then
        echo "node-label:"
        for l in $labels; do echo "  - \"$l\""; done
    fi
} >"$wanted"

changed=yes
if [ -f "$config_dir/config.yaml" ] && cmp -s "$wanted" "$config_dir/config.yaml"; then
    changed=no
fi
installed=no
if [ -x /usr/local/bin/k3s ] && [ -f /etc/systemd/system/k3s-agent.service ] \
    && /usr/local/bin/k3s --version 2>/dev/null | grep -q "${version%%+*}"; then
    installed=yes
fi

if [ "$changed" = no ] && [ "$installed" = yes ] && systemctl is-active --quiet k3s-agent; then
    echo "install-k3s-agent: already installed and running with these settings"
    exit 0
fi

install -m 600 "$wanted" "$config_dir/config.yaml"
if [ "$installed" = no ]; then
    installer="${K3S_INSTALLER:-}"
    if [ -z "$installer" ]; then
        installer="$(mktemp)"
        curl -sfL https://get.k3s.io -o "$installer"
    fi
    INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC=agent sh "$installer"
else
    systemctl restart k3s-agent
fi
echo "install-k3s-agent: agent ${node_name:-$(hostname)} configured for $server"
