#!/usr/bin/env bash
# Latency as the data grows (issue 13): dave (and the Python reference with --python) at
# 10k, 100k and 1M messages (a twentieth as one user's conversations, a tenth in one
# conversation, a tenth as knowledge articles; scripts/bench-data.sql, generate_series),
# one client, p50/p99 of: get, list first page, list 1,000 pages deep (keyset via the
# cursors), messages first page and 1,000 deep of the big conversation, post_message,
# knowledge search for a term in every article and a rare one; pgbench (one client)
# on the same SQL as the limit. JSON to docs/bench-results/<date>-growth.json.
# --rounds N populates every level first, then measures the levels in turn N times (each cell
# its median-p99 round), so host drift between minutes moves every level alike.
#   cargo build --release -p dave && scripts/bench-growth.sh [--rounds 3] [--python --python-bin VENV/bin/python]
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" growth "$@"
