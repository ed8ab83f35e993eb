#!/usr/bin/env bash
# A real single-node SLURM for the tests: cluster.sh start STATE_DIR | stop STATE_DIR
# Installs Debian's slurmctld slurmd slurm-client munge when missing (root only), writes slurm.conf
# into STATE_DIR and, while the cluster runs, at the compiled-in /etc/slurm/slurm.conf (srun inside
# a job needs it: the SLURM jobstep plugin strips SLURM_* including SLURM_CONF). stop removes it
# again (restoring any previous one): with no controller, a system slurm.conf makes every snakemake
# call wait ~9 s on the SLURM plugin. Starts munged (unless one runs), slurmctld and slurmd, waits
# until the node is idle; stop ends exactly the daemons it started.
set -euo pipefail
cmd=${1:?start|stop}; state=$(realpath -m "${2:?STATE_DIR}")
export SLURM_CONF="$state/slurm.conf"

stop_pidfile() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "$cmd" = stop ]; then
  stop_pidfile "$state/pids/slurmd.pid"
  stop_pidfile "$state/pids/slurmctld.pid"
  stop_pidfile "$state/pids/munged.started"
  if [ -f "$state/etc-installed" ]; then
    rm -f /etc/slurm/slurm.conf
    [ -f "$state/slurm.conf.orig" ] && mv "$state/slurm.conf.orig" /etc/slurm/slurm.conf
    rm -f "$state/etc-installed"
  fi
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "cluster.sh: needs root to install and start SLURM" >&2; exit 77; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  # one apt at a time: the test workers may install SLURM and PostgreSQL together
  flock /var/lock/pfscalib-apt.lock apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive flock /var/lock/pfscalib-apt.lock apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
mkdir -p "$state"/{pids,ctld,spool,log}
chown -R slurm: "$state/ctld" "$state/log"
host=$(hostname -s)
node=$(slurmd -C | head -1 | sed -E 's/ UpTime=.*//; s/RealMemory=([0-9]+)/RealMemory=\1/')
mem=$(echo "$node" | sed -E 's/.*RealMemory=([0-9]+).*/\1/')
node=$(echo "$node" | sed -E "s/RealMemory=[0-9]+/RealMemory=$((mem / 2))/")
cat > "$SLURM_CONF" <<CONF
ClusterName=pfscalibtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$state/pids/slurmctld.pid
SlurmdPidFile=$state/pids/slurmd.pid
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
chmod 644 "$SLURM_CONF"
if [ ! -f "$state/etc-installed" ]; then
  mkdir -p /etc/slurm
  [ -f /etc/slurm/slurm.conf ] && cp -p /etc/slurm/slurm.conf "$state/slurm.conf.orig"
  touch "$state/etc-installed"
fi
cp "$SLURM_CONF" /etc/slurm/slurm.conf

if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge: /run/munge
  [ -f /etc/munge/munge.key ] || { mungekey -c 2>/dev/null || /usr/sbin/create-munge-key -f; chown munge: /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do pgrep -x munged >/dev/null && break; sleep 0.1; done
  pgrep -x munged > "$state/pids/munged.started"
fi
if ! [ -f "$state/pids/slurmctld.pid" ] || ! kill -0 "$(cat "$state/pids/slurmctld.pid")" 2>/dev/null; then
  /usr/sbin/slurmctld
fi
if ! [ -f "$state/pids/slurmd.pid" ] || ! kill -0 "$(cat "$state/pids/slurmd.pid")" 2>/dev/null; then
  /usr/sbin/slurmd
fi
for _ in $(seq 100); do
  if [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; then echo "$SLURM_CONF"; exit 0; fi
  sleep 0.2
done
echo "cluster.sh: node did not become idle; see $state/log" >&2
sinfo >&2 || true
exit 1
