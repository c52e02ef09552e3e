#!/usr/bin/env bash
# Installs the Debian packages the test suite and benches need when missing: Chromium (browser
# tests), PostgreSQL's server binaries (initdb/pg_ctl for the restart test; pgbench for the
# redemption bench), wrk (the redemption bench's load generator) and nginx (the TLS proxy test
# runs its own /usr/sbin/nginx with deploy/nginx.conf on loopback; the packaged service is not used).
# Needs root and apt-get; elsewhere it says what to install and exits non-zero.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
# Debian's postgresql-NN package holds initdb, pg_ctl and pgbench.
{ ls /usr/lib/postgresql/*/bin/initdb && command -v pgbench; } >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
# A Java runtime (17 in bookworm) for pyspark: the Spark parity tests in tests/spark.
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Please install: ${missing[*]} (Debian packages)" >&2
  exit 1
fi
echo "Installing ${missing[*]} from Debian…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
