#!/usr/bin/env bash
# A private PostgreSQL for the tests: server.sh start DIR PORT | stop DIR
# Installs Debian's postgresql + postgresql-contrib when missing (root only), initdb's DIR/data as
# user postgres, listens on 127.0.0.1:PORT (socket in DIR), creates database pfscalib with the
# btree_gist extension the Butler needs. stop stops exactly this server.
set -euo pipefail
cmd=${1:?start|stop}; dir=$(realpath -m "${2:?DIR}")
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ "$cmd" = stop ]; then
  bin=$(pg_bin)
  [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  exit 0
fi
port=${3:?PORT}
[ "$(id -u)" = 0 ] || { echo "server.sh: needs root to install and start PostgreSQL" >&2; exit 77; }
if [ -z "$(pg_bin)" ] || [ ! -f "$(ls -d /usr/share/postgresql/*/extension/btree_gist.control 2>/dev/null | tail -1)" ]; then
  # one apt at a time: the test workers may install SLURM and PostgreSQL together
  flock /var/lock/pfscalib-apt.lock apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive flock /var/lock/pfscalib-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
fi
bin=$(pg_bin)
mkdir -p "$dir" && chmod 755 "$dir" && chown postgres: "$dir"
[ -d "$dir/data" ] || runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q)
"${psql[@]}" -d postgres -tc "SELECT 1 FROM pg_database WHERE datname='pfscalib'" | grep -q 1 \
  || "${psql[@]}" -d postgres -c "CREATE DATABASE pfscalib"
"${psql[@]}" -d pfscalib -c "CREATE EXTENSION IF NOT EXISTS btree_gist"
echo "postgresql://postgres@127.0.0.1:$port/pfscalib"
