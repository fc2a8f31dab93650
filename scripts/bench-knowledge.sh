#!/usr/bin/env bash
# Knowledge search before/after issue 13, on the database alone (pgbench, one client,
# prepared): the old query (scripts/knowledge-search-before.pgbench: to_tsvector per match)
# and the current one (../shared/bench/lib/knowledge.pgbench: stored tsvector, rank only
# (id, rank)) at 1k, 10k and 100k articles, for a term in every article and a rare one.
# JSON to docs/bench-results/<date>-knowledge.json.
#   cargo build --release -p dave && scripts/bench-knowledge.sh [--articles 1000,100000]
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" knowledge "$@"
