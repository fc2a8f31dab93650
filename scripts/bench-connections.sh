#!/usr/bin/env bash
# Throughput as connections grow (issue 13): wrk at 32, 256 and 1,000 connections on
# get_conversation (rotating 1,000 conversations of one user) and /health/ready: req/s,
# p50/p99, errors, service RSS (peak, sampled every 0.25 s); knowledge search for a word in
# every article at 32 connections; pgbench at 32 clients on each one's SQL as the limit.
# Data: the 100k-message level of scripts/bench-data.sql (10,000 articles).
# JSON to docs/bench-results/<date>-connections.json.
#   cargo build --release -p dave && scripts/bench-connections.sh [--python --python-bin VENV/bin/python]
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" connections "$@"
