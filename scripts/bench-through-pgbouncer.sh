#!/usr/bin/env bash
# Runs `dave serve` behind a PgBouncer in transaction mode, for
# ../shared/bench/compare (docs/benchmarks.md, "Through PgBouncer"):
#
#   bench/compare --service dave='exec target/release/dave serve' \
#     --service dave-pgbouncer='exec scripts/bench-through-pgbouncer.sh target/release/dave' \
#     --migrate dave='exec target/release/dave migrate up' \
#     --migrate dave-pgbouncer='exec target/release/dave migrate up'
#
# The harness gives DAVE_DB_DSN (a Unix socket); this starts PgBouncer on a
# socket of its own in front of it (server pool POOLER_SIZE, default 20),
# writes the role's session defaults as `pgkit provision` would, and execs
# dave with DB_POOLER=transaction. PgBouncer becomes dave's child, so the
# harness's teardown of the service's process tree ends it too.
set -euo pipefail

dave=${1:?usage: bench-through-pgbouncer.sh PATH_TO_DAVE}
dsn=${DAVE_DB_DSN:?DAVE_DB_DSN is not set}
host=${dsn#*host=}
host=${host%%&*}
user=${dsn#postgresql://}
user=${user%%@*}
size=${POOLER_SIZE:-20}
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

dir=$(mktemp -d /tmp/dave-pgbouncer.XXXXXX)
printf '"%s" ""\n' "$user" > "$dir/users.txt"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=5432
[pgbouncer]
listen_addr =
listen_port = 6432
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = $size
max_client_conn = 2000
query_wait_timeout = 5
server_reset_query =
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI

# As the cluster's superuser: on PostgreSQL 15 only a superuser (or a role
# granted SET ON PARAMETER) may set a placeholder such as app.environment.
superuser=${BENCH_SUPERUSER:-postgres}
psql -q -X -d "${dsn/$user@/$superuser@}" \
    -c "ALTER ROLE \"$user\" SET statement_timeout = '60000ms'" \
    -c "ALTER ROLE \"$user\" SET idle_in_transaction_session_timeout = '60000ms'" \
    -c "ALTER ROLE \"$user\" SET app.environment = '${APP_ENVIRONMENT:-development}'"

run_as=()
if [[ $(id -u) -eq 0 ]]; then
    owner=$(stat -c %U "$host")
    chown -R "$owner" "$dir"
    run_as=(setpriv --reuid "$owner" --regid "$(id -g "$owner")" --clear-groups)
fi
"${run_as[@]}" "$pgbouncer" "$dir/pgbouncer.ini" &
for _ in $(seq 1 100); do
    [[ -S "$dir/.s.PGSQL.6432" ]] && break
    sleep 0.05
done

database=${dsn%%\?*}
database=${database##*/}
export DB_MIGRATE_DSN=$dsn
export DAVE_DB_DSN="postgresql://$user@/$database?host=$dir&port=6432"
export DB_POOLER=transaction
exec "$dave" serve
