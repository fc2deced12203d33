#!/usr/bin/env bash
# `make demo`: rehearse the migration in the local sandbox with the ordinary migctl commands,
# then bring the sandbox down. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

MIGCTL="${MIGCTL:-.venv/bin/migctl}"
DIR="${DEMO_DIR:-.migctl/demo-sandbox}"
ROWS="${DEMO_ROWS:-100000}"
REPORTS="${DEMO_REPORTS:-.migctl/demo-reports}"  # outside $DIR: the sandbox's folder goes at the end
started=$(date +%s)

# Colour only on a terminal: a log (CI, `make demo | tee`) gets plain lines.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
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
expect 0 "$MIGCTL" dms start --yes --interval 1
expect 0 "$MIGCTL" dms watch --until full-load --timeout 120 --interval 2

step "traffic keeps writing while CDC carries the changes"
sleep 5

# Short polls and bake for the rehearsal; production uses [cutover] and [ecs] from migctl.toml.
export MIGCTL_CUTOVER_INTERVAL_SECONDS=0.5 MIGCTL_ECS_BAKE_SECONDS=3

step "migctl cutover plan: the runbook's steps, gates, checks and undo"
expect 0 "$MIGCTL" cutover plan

step "a bad night: the image is broken; it fails on the standby before anything is frozen, and the cutover undoes the staging (exit 4)"
expect 4 "$MIGCTL" cutover --yes --image payments-app:2.0.1-broken
echo "(the source never stopped taking writes; the standby is idle again, the target unfenced)"
mkdir -p "$REPORTS"
expect 0 "$MIGCTL" cutover report --out "$REPORTS/1-broken-image.html"
sleep 3

step "migctl cutover: preflight, the new image staged on the standby, baseline, fence, marker, validate, stop DMS, sequences, proof, the way back, the listener switch, post-checks, converge"
expect 0 "$MIGCTL" cutover --yes

step "a second 'migctl cutover' cannot lose the completed one (exit 2); 'cutover status' shows it"
expect 2 "$MIGCTL" cutover --yes
expect 0 "$MIGCTL" cutover status

step "the application on ECS writes to Aurora; the reverse replication carries each write to the source"
sleep 5
expect 0 "$MIGCTL" dms status

step "after the cutover: the target holds exactly the source's data, sequences ahead (exit 0)"
"$MIGCTL" sandbox traffic stop --dir "$DIR"
sleep 3
expect 0 "$MIGCTL" validate --jobs 2
"$MIGCTL" sandbox traffic start --dir "$DIR"
sleep 5

step "migctl rollout status: the service runs the image that points at the target"
expect 0 "$MIGCTL" rollout status

step "migctl alarms: a fault injected into a gate alarm is caught (exit 1)"
"$MIGCTL" sandbox fault alarm payments-sandbox-alb-5xx --dir "$DIR"
expect 1 "$MIGCTL" alarms
"$MIGCTL" sandbox fault clear --dir "$DIR"
expect 0 "$MIGCTL" alarms

step "a rollback after go-live: every write the new image made on Aurora is carried back first (exit 4)"
expect 4 "$MIGCTL" cutover rollback --yes

step "after the rollback: every table matches again; only the target's sequences are behind (exit 1)"
"$MIGCTL" sandbox traffic stop --dir "$DIR"
sleep 3
expect 1 "$MIGCTL" validate --jobs 2
# Exit 1 is also what a missing row gives: check from the JSON that only sequences differ.
"$MIGCTL" --output json validate --jobs 2 >"$DIR/after-rollback.json" || true
"${PYTHON:-.venv/bin/python}" - "$DIR/after-rollback.json" <<'PY'
import json, sys
report = json.loads(open(sys.argv[1]).read().splitlines()[-1])
differ = [t["table"] for t in report["tables"] if t["status"] != "match"]
if differ:
    sys.exit(f"demo: tables differ after the rollback: {differ}")
behind = [s["sequence"] for s in report["sequences"] if s["status"] != "match"]
print(f"all {len(report['tables'])} tables match; only the target's sequences differ: {behind}")
PY
echo "(the source's sequences were moved past the target's: the on-premises application hands out the next values)"

step "migctl cutover report: the evidence of each cutover, from its journal alone (HTML, Markdown)"
expect 0 "$MIGCTL" cutover report --out "$REPORTS/2-live-then-rolled-back.html"
expect 0 "$MIGCTL" cutover report --format md --out "$REPORTS/2-live-then-rolled-back.md"
echo "reports of this demo's two cutovers:"
ls -1 "$REPORTS"/1-broken-image.html "$REPORTS"/2-live-then-rolled-back.* | sed 's/^/  /'

step "sandbox down"
"$MIGCTL" sandbox down --dir "$DIR"
trap - EXIT
echo "demo finished in $(( $(date +%s) - started ))s"
