#!/usr/bin/env bash
# `make demo`: rehearse the migration in the local sandbox with the ordinary migctl commands,
# then bring the sandbox down. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

MIGCTL="${MIGCTL:-.venv/bin/migctl}"
DIR="${DEMO_DIR:-.migctl/demo-sandbox}"
ROWS="${DEMO_ROWS:-100000}"
started=$(date +%s)

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
expect() {  # expect CODE CMD...: run CMD, fail the demo unless it exits with CODE
  local want=$1; shift
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: '$*' exited $got, expected $want" >&2; exit 1; fi
}

"$MIGCTL" sandbox down --dir "$DIR" >/dev/null 2>&1 || true
trap '"$MIGCTL" sandbox down --dir "$DIR" >/dev/null 2>&1 || true' EXIT

step "sandbox up: source and target PostgreSQL, local AWS, $ROWS payments, live traffic"
"$MIGCTL" sandbox up --dir "$DIR" --rows "$ROWS" --traffic
set -a; . "$DIR/sandbox.env"; set +a

step "migctl alarms: the gates are OK before we start"
expect 0 "$MIGCTL" alarms

step "migctl dms start: full load, then CDC (real logical replication in the sandbox)"
expect 0 "$MIGCTL" dms start --yes
expect 0 "$MIGCTL" dms watch --until full-load --timeout 120 --interval 2

step "traffic keeps writing while CDC carries the changes; then freeze writes"
sleep 5
"$MIGCTL" sandbox traffic stop --dir "$DIR"

step "migctl dms watch --until cdc-ready: latency under target and no incoming changes"
expect 0 "$MIGCTL" dms watch --until cdc-ready --timeout 120 --interval 2

step "migctl validate: the target holds exactly the source's data"
echo "(sequences are expected to be behind here: DMS does not carry them; cutover syncs them)"
expect 1 "$MIGCTL" validate --jobs 2

step "migctl rollout: ship the image that points at Aurora, gated on the alarms"
expect 0 "$MIGCTL" rollout --image payments-app:2.0.0-aurora --bake 5 --yes

step "migctl rollout of a broken image: ECS fails it, migctl rolls back (exit 4)"
expect 4 "$MIGCTL" rollout --image payments-app:2.0.1-broken --bake 5 --yes

step "migctl alarms: a fault injected into a gate alarm is caught (exit 1)"
"$MIGCTL" sandbox fault alarm payments-sandbox-alb-5xx --dir "$DIR"
expect 1 "$MIGCTL" alarms
"$MIGCTL" sandbox fault clear --dir "$DIR"
expect 0 "$MIGCTL" alarms

step "sandbox down"
"$MIGCTL" sandbox down --dir "$DIR"
trap - EXIT
echo "demo finished in $(( $(date +%s) - started ))s"
