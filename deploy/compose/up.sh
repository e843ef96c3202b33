#!/bin/sh
# Starts the compose stack: makes a K3s token once, builds k3scale, starts
# everything, waits for the server, and writes ./kubeconfig.yaml.
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

mkdir -p secrets
if [ ! -s secrets/k3s-token ]; then
    umask 077
    od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >secrets/k3s-token
    echo "up.sh: made a new K3s token in $(pwd)/secrets/k3s-token"
fi

compose up -d --build

printf 'up.sh: waiting for the K3s server'
tries=0
until compose exec -T k3s-server kubectl get --raw /readyz >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo
        echo "up.sh: the K3s server is not ready after 2 minutes; see: docker compose -p k3scale logs k3s-server" >&2
        exit 1
    fi
    printf '.'
    sleep 1
done
echo
compose exec -T k3s-server cat /etc/rancher/k3s/k3s.yaml >kubeconfig.yaml
chmod 600 kubeconfig.yaml
cat <<MSG
up.sh: ready.
  kubectl --kubeconfig $(pwd)/kubeconfig.yaml get nodes
  k3scale status --server http://127.0.0.1:8080
  Grafana     http://127.0.0.1:3000  (dashboards in the k3scale folder)
  Prometheus  http://127.0.0.1:9090
MSG
