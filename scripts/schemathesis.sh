#!/usr/bin/env bash
# Fuzzes dave's HTTP API from its own OpenAPI document with Schemathesis
# (property-based, outside the Rust code): every operation, every check.
#
#   scripts/schemathesis.sh [extra schemathesis run options]
#
# It builds dave, serves it on a free loopback port against a fresh embedded
# PostgreSQL in a temp dir (nothing of .dave/ is touched), creates an admin
# API key with `dave apikey create`, runs
#   schemathesis run http://127.0.0.1:PORT/openapi.json --checks all
# bounded by SCHEMATHESIS_MAX_EXAMPLES examples per operation (default 50),
# with the settings of scripts/schemathesis.toml, then stops the service and
# removes the temp dir. Exit status 0 only when Schemathesis found nothing
# and dave logged no error meanwhile.
#
# SCHEMATHESIS_SEED=n repeats a run, SCHEMATHESIS_WORKERS=n sets its threads
# (default 1, see below), DAVE_BIN=path skips the build and runs that binary.
# Schemathesis comes from $SCHEMATHESIS when set, else from a venv under
# target/ with the pinned version below (installed on first use from PyPI).
# The run report (JUnit) is written to target/schemathesis/.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-50}
SEED=${SCHEMATHESIS_SEED:-}
# One worker: Schemathesis's workers are threads, and CPython 3.11 before
# 3.11.8 can fail parsing in threads ("AST constructor recursion depth
# mismatch", CPython gh-106905), which shows as a Runtime Error of the run.
WORKERS=${SCHEMATHESIS_WORKERS:-1}

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [[ -z ${SCHEMATHESIS:-} ]]; then
    venv=$repo/target/schemathesis-venv
    if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    SCHEMATHESIS=$venv/bin/schemathesis
fi

# DAVE_BIN runs an already built binary instead of building one.
if [[ -n ${DAVE_BIN:-} ]]; then
    dave=$DAVE_BIN
else
    cargo build --quiet -p dave
    dave=$repo/target/debug/dave
fi

work=$(mktemp -d -t dave-schemathesis-XXXXXX)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # dave exits within its grace period; the embedded cluster stops with it.
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    # The embedded PostgreSQL stops with dave (or its watchdog stops it):
    # remove its directory only once it is gone.
    for _ in $(seq 100); do [[ -e $work/.dave/pgdata/postmaster.pid ]] || break; sleep 0.1; done
    rm -rf "$work"
}
trap cleanup EXIT

# Only what the service needs: no .env of the checkout (the cwd is the temp
# dir), test secrets, JSON logs (read below for the URL and for errors).
# Call it in a subshell only: it `exec`s, so that in the background `$!` is
# dave itself and the cleanup's signal reaches it, not a wrapper.
run_dave() {
    cd "$work" && exec env -i PATH="$PATH" HOME="$work" \
        APP_ENVIRONMENT=development HOST=127.0.0.1 PORT="${PORT:-0}" \
        JWT_SECRET=schemathesis-jwt-secret-0123456789abcdef0123 \
        SESSION_SECRET=schemathesis-session-secret-0123456789abcd \
        LOG_FORMAT=json ACCESS_LOG=false SHUTDOWN_GRACE=2 \
        "$dave" "$@"
}

(run_dave serve) >"$work/dave.log" 2>&1 &
server_pid=$!
url=
for _ in $(seq 600); do
    url=$(grep -o 'dave is serving on http://[0-9.:]*' "$work/dave.log" 2>/dev/null | head -n 1 | sed 's/.* on //') || true
    [[ -n $url ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/dave.log" >&2; echo "dave exited before serving" >&2; exit 1; }
    sleep 0.1
done
[[ -n $url ]] || { cat "$work/dave.log" >&2; echo "dave did not start serving within 60 s" >&2; exit 1; }
echo "dave serves on $url (log: $work/dave.log)" >&2

# An admin key, so the admin routes are exercised too (not only their 403).
key=$(run_dave apikey create --user-id "$(python3 -c 'import uuid; print(uuid.uuid4())')" --admin 2>/dev/null)

mkdir -p "$repo/target/schemathesis"
args=(run "$url/openapi.json" --checks all --max-examples "$MAX_EXAMPLES"
    --header "X-API-Key: $key" --workers "$WORKERS" --request-timeout 30
    --report junit --report-junit-path "$repo/target/schemathesis/junit.xml")
[[ -n $SEED ]] && args+=(--seed "$SEED")
echo "+ schemathesis --config-file scripts/schemathesis.toml ${args[*]/$key/<admin key>} $*" >&2
status=0
# From the temp dir, so Schemathesis's cache (.schemathesis/) goes with it.
(cd "$work" && "$SCHEMATHESIS" --config-file "$repo/scripts/schemathesis.toml" "${args[@]}" "$@") || status=$?
if grep -q '"severity":"ERROR"' "$work/dave.log"; then
    echo "dave logged errors during the run:" >&2
    grep '"severity":"ERROR"' "$work/dave.log" >&2 || true
    [[ $status -eq 0 ]] && status=1
fi
exit "$status"
