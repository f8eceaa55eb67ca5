# Sourced by the bench scripts: with THROTTLE_BPS set, moves this shell (and so everything it
# starts) into a cgroup v1 blkio group capping reads from the disk holding $models at
# THROTTLE_BPS bytes/s, an SD-card-class device at 100000000, and leaves it on exit.
if [ -n "${THROTTLE_BPS:-}" ]; then
  throttle_group=/sys/fs/cgroup/blkio/edgerun-bench-$$
  mkdir -p "$throttle_group"
  throttle_dev=$(lsblk -no MAJ:MIN "$(df --output=source "$models" | tail -n 1)" | head -n 1 | tr -d ' ')
  echo "$throttle_dev $THROTTLE_BPS" > "$throttle_group/blkio.throttle.read_bps_device"
  echo $$ > "$throttle_group/cgroup.procs"
  trap 'echo $$ > /sys/fs/cgroup/blkio/cgroup.procs; rmdir "$throttle_group"' EXIT
fi
