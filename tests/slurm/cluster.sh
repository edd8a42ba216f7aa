#!/usr/bin/env bash
# A single-node SLURM cluster (munged + slurmctld + slurmd on this machine) for the tests.
#
#   tests/slurm/cluster.sh start    install slurm-wlm and munge if missing, start the daemons,
#                                   wait for the node to be idle
#   tests/slurm/cluster.sh stop     cancel jobs, stop the daemons it started, remove its config
#   tests/slurm/cluster.sh status   sinfo
#   tests/slurm/cluster.sh tidy     remove the config a killed test run left behind (no slurmctld runs)
#
# Needs root and apt (Debian/Ubuntu) the first time; exits 3 with a reason when it cannot run,
# which the tests turn into a skip. State and logs live in $MOST_SLURM_STATE (default
# /tmp/most-slurm). The config goes to /etc/slurm/slurm.conf, where every SLURM command finds it
# (the SLURM executor plugin drops SLURM_* variables such as SLURM_CONF inside jobs); an existing
# slurm.conf not written by this script is never overwritten.
set -euo pipefail

STATE=${MOST_SLURM_STATE:-/tmp/most-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by most tests/slurm/cluster.sh"
HOST=$(hostname -s)

cannot() { echo "cannot run a SLURM test cluster here: $*" >&2; exit 3; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || cannot "slurm-wlm and munge are missing and installing them needs root"
  command -v apt-get >/dev/null || cannot "slurm-wlm and munge are missing and there is no apt-get"
  echo "installing slurm-wlm and munge with apt-get" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >"$STATE/apt.log" 2>&1 \
    || cannot "apt-get install slurm-wlm munge failed (see $STATE/apt.log)"
}

start_munge() {
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1 || true; fi
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    touch "$STATE/started-munged"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
    cannot "munged did not come up"
  fi
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  mkdir -p "$STATE/state" "$STATE/slurmd" "$(dirname "$CONF")"
  if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    cannot "$CONF exists and was not written by this script; not touching a real cluster's config"
  fi
  cat >"$CONF" <<CONF
$MARKER
ClusterName=mosttest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/slurmd
StateSaveLocation=$STATE/state
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  mkdir -p "$STATE"
  [ "$(id -u)" = 0 ] || cannot "the daemons run as root here (SlurmUser=root); run as root"
  install_packages
  start_munge
  write_conf
  if ! sinfo -h >/dev/null 2>&1; then
    /usr/sbin/slurmctld -f "$CONF"
    /usr/sbin/slurmd -f "$CONF"
  fi
  for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in idle|mixed|allocated) return ;; esac
    sleep 0.5
  done
  cannot "the node did not become idle (state: '${state:-none}'; logs in $STATE)"
}

stop() {
  scancel --user "$(id -un)" >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld; do
    if [ -s "$STATE/$daemon.pid" ]; then kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true; fi
  done
  if [ -e "$STATE/started-munged" ]; then pkill -x munged 2>/dev/null || true; rm -f "$STATE/started-munged"; fi
  # Leave no config pointing at a stopped controller: the SLURM executor plugin runs
  # `scontrol show config` whenever snakemake starts, which then waits 10 s on every call.
  if [ -e "$CONF" ] && grep -qF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
}

# A test run killed before its teardown leaves the config behind, and then every `snakemake` call on
# this machine waits 10 s in `scontrol show config` (measured: a no-op dry run 4 s -> 13 s).
tidy() {
  if [ -e "$CONF" ] && grep -qF "$MARKER" "$CONF" && ! pgrep -x slurmctld >/dev/null; then
    rm -f "$CONF"
    echo "removed $CONF, left behind by an interrupted test run (no slurmctld is running)" >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  tidy) tidy ;;
  *) echo "usage: $0 start|stop|status|tidy" >&2; exit 2 ;;
esac
