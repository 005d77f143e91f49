#!/usr/bin/env bash
# A throwaway one-node Slurm cluster for the hooks test: Debian's
# slurm-wlm and munge (installed when missing), slurmctld and slurmd on
# this machine, their state, logs and ports private to a temp dir and to
# loopback, a munge key made for the run.
#
#   eval "$(bash .ci/slurm.sh start)"
#     # exports SLURM_CONF (what sbatch and squeue read), FERRY_TEST_SLURM=1
#     # and FERRY_CI_SLURM_DIR
#   bash .ci/slurm.sh stop "$FERRY_CI_SLURM_DIR"
#
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail

start() {
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "installing slurm-wlm and munge from Debian's packages" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  local dir node user cpus mem port
  dir=$(mktemp -d /tmp/ferry-ci-slurm.XXXXXX)
  chmod 755 "$dir"
  node=$(hostname -s)
  user=$(id -un)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  mkdir -p "$dir/munge" "$dir/ctld" "$dir/d" "$dir/log"
  chmod 700 "$dir/munge"
  # munge: its own key, socket and pid in the temp dir, so a system munged
  # (if any) is left alone.
  dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" 2>/dev/null
  chmod 400 "$dir/munge/munge.key"
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munge.seed" --force >&2
  # Two free ports on loopback: nothing answers on them now.
  port=56817
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; do
    port=$((port + 2))
  done
  cat >"$dir/slurm.conf" <<EOF
ClusterName=ferryci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=$user
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/builtin
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
PlugStackConfig=/dev/null
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -i -f "$SLURM_CONF" >&2 || {
    cat "$dir/log/slurmctld.log" >&2
    exit 1
  }
  slurmd -f "$SLURM_CONF" -N "$node" >&2 || {
    cat "$dir/log/slurmd.log" >&2
    exit 1
  }
  # The node is up once sinfo says idle.
  local i
  for i in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
      break
    fi
    if [ "$i" = 60 ]; then
      echo "Slurm's node did not come up:" >&2
      sinfo >&2 || true
      tail -n 30 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
      exit 1
    fi
    sleep 1
  done
  echo "Slurm $(sinfo -V | awk '{print $2}') with node $node on 127.0.0.1:$port (state in $dir)" >&2
  echo "export FERRY_CI_SLURM_DIR='$dir'"
  echo "export SLURM_CONF='$dir/slurm.conf'"
  echo "export FERRY_TEST_SLURM=1"
}

stop() {
  local dir=${1:?usage: slurm.sh stop DIR}
  [ -f "$dir/slurm.conf" ] || return 0
  local pidfile
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  # Give them a moment to exit before their state goes.
  local i
  for i in $(seq 1 20); do
    local alive=0
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        alive=1
      fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
