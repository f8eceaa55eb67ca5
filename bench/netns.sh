#!/usr/bin/env bash
# A link like an edge device's, between two network namespaces (root only): er-server
# (10.77.0.1) and er-client (10.77.0.2) joined by a veth pair. Each end's egress is shaped by
# tc tbf to RATE (so both directions run at RATE), and by netem DELAY_MS / LOSS_PCT where the
# kernel has sch_netem. Where it has not, the script says so and exits 3 on `up`/`rate` asked
# for a delay or a loss: model the delay in the client then (edgerun run --emulate-link).
# Traffic stays inside these namespaces.
#
# usage: netns.sh up RATE [DELAY_MS [LOSS_PCT]]   create (or reshape) the link; RATE e.g. 8mbit
#        netns.sh rate RATE [DELAY_MS [LOSS_PCT]] reshape
#        netns.sh down                            remove both namespaces
#        netns.sh check                           exit 0 if namespaces and tbf work here
set -euo pipefail

S=er-server C=er-client
SIP=10.77.0.1 CIP=10.77.0.2

netem_available() {
  ip link add er-probe0 type veth peer name er-probe1 2>/dev/null || return 1
  local ok=1
  tc qdisc add dev er-probe0 root netem delay 1ms 2>/dev/null && ok=0
  ip link del er-probe0 2>/dev/null || true
  return $ok
}

shape() { # NS DEV RATE DELAY LOSS
  local ns=$1 dev=$2 rate=$3 delay=$4 loss=$5
  # A burst of 10 ms at the rate, at least two full frames; queue up to 2 s (no tail drops).
  local bits
  bits=$(python3 -c "import re,sys; m=re.fullmatch(r'([0-9.]+)(k|m|g)?bit', sys.argv[1].lower()); print(int(float(m[1]) * {None:1,'k':1e3,'m':1e6,'g':1e9}[m[2]]))" "$rate")
  local burst=$(( bits / 800 > 3200 ? bits / 800 : 3200 ))
  ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
  if [ "$delay" != 0 ] || [ "$loss" != 0 ]; then
    ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "${delay}ms" loss "${loss}%"
    ip netns exec "$ns" tc qdisc add dev "$dev" parent 1: handle 2: tbf rate "$rate" burst "$burst" latency 2s
  else
    ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst "$burst" latency 2s
  fi
}

reshape() {
  local rate=$1 delay=${2:-0} loss=${3:-0}
  if { [ "$delay" != 0 ] || [ "$loss" != 0 ]; } && ! netem_available; then
    echo "netns.sh: this kernel has no sch_netem: the link is shaped to $rate only; model the delay in the client (--emulate-link RATE/DELAY)" >&2
    shape $S er-s "$rate" 0 0
    shape $C er-c "$rate" 0 0
    exit 3
  fi
  shape $S er-s "$rate" "$delay" "$loss"
  shape $C er-c "$rate" "$delay" "$loss"
  echo "netns.sh: $S $SIP <-> $C $CIP at $rate, delay ${delay} ms, loss ${loss}% each way" >&2
}

case "${1:-}" in
  up)
    shift
    if ! ip netns list | grep -qw $S; then
      ip netns add $S
      ip netns add $C
      ip link add er-s type veth peer name er-c
      ip link set er-s netns $S
      ip link set er-c netns $C
      ip netns exec $S ip addr add $SIP/24 dev er-s
      ip netns exec $C ip addr add $CIP/24 dev er-c
      for ns in $S $C; do ip netns exec $ns ip link set lo up; done
      ip netns exec $S ip link set er-s up
      ip netns exec $C ip link set er-c up
    fi
    reshape "$@"
    ;;
  rate) shift; reshape "$@" ;;
  down)
    ip netns del $S 2>/dev/null || true
    ip netns del $C 2>/dev/null || true
    ;;
  check)
    [ "$(id -u)" = 0 ] || exit 1
    ip netns add er-check 2>/dev/null || exit 1
    ok=0
    ip netns exec er-check ip link add er-k0 type veth peer name er-k1 2>/dev/null \
      && ip netns exec er-check tc qdisc add dev er-k0 root tbf rate 1mbit burst 3200 latency 1s 2>/dev/null \
      || ok=1
    ip netns del er-check
    exit $ok
    ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
