#!/usr/bin/env bash
# Knowledge search before/after issue 13, on the database alone (pgbench, one client,
# prepared): the old query (scripts/knowledge-search-before.pgbench: to_tsvector per match)
# and the current one (scripts/knowledge-search.pgbench: the terms table for one word, else the
# stored tsvector ranking only (id, rank)) at 1k, 10k and 100k articles, for a term in every
# article, a rare one and two common words.
# JSON to docs/bench-results/<date>-knowledge.json.
#   cargo build --release -p dave && scripts/bench-knowledge.sh [--articles 1000,100000]
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" knowledge "$@"
