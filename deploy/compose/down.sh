#!/bin/sh
# Stops the compose stack and removes the agent containers k3scale started
# (they are not compose services). Volumes are kept unless --volumes.
set -eu
cd "$(dirname "$0")"

# Compose v2 (`docker compose`) or the older docker-compose.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p k3scale "$@"
    else
        docker-compose -p k3scale "$@"
    fi
}

agents="$(docker ps -aq --filter label=k3scale.io/cluster=compose)"
if [ -n "$agents" ]; then
    echo "down.sh: removing k3scale's agent containers"
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $agents >/dev/null
fi
if [ "${1:-}" = "--volumes" ]; then
    compose down --volumes
    rm -f kubeconfig.yaml
else
    compose down
fi
