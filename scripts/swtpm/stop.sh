#!/usr/bin/env bash
# Stop the swtpm started by scripts/swtpm/start.sh. The TPM state (keys, NV, EK certs) stays in
# the directory, so start.sh brings the same TPM back with its PCRs reset (a "reboot").
#
#   scripts/swtpm/stop.sh [--dir DIR] [--destroy]
#
#   --dir DIR    TPM directory, relative to the current one (default: $SWTPM_DIR, else .tmp/swtpm)
#   --destroy    also remove DIR (the TPM and, if it lives there, its local CA)
set -euo pipefail
# --dir/--ca-dir/$SWTPM_DIR relative to where the script is called from; the default
# .tmp/swtpm relative to the checkout.
CALLER_PWD="$PWD"
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$CALLER_PWD" "$1" ;; esac; }
cd "$(dirname "$0")/../.."

DIR=".tmp/swtpm"; [ -z "${SWTPM_DIR:-}" ] || DIR="$(abs "$SWTPM_DIR")"
DESTROY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$(abs "$2")"; shift 2 ;;
    --destroy) DESTROY=1; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "swtpm: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -d "$DIR" ]; then
  echo "swtpm: no TPM directory at $DIR" >&2
  exit 0
fi
DIR="$(cd "$DIR" && pwd)"
PID_FILE="$DIR/swtpm.pid"

if [ -f "$PID_FILE" ]; then
  pid="$(cat "$PID_FILE")"
  # Only signal the process if it is the swtpm serving this very state directory.
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "dir=$DIR/state "; then
    kill "$pid"
    # Gone, or a zombie waiting for init to reap it (its sockets are closed by then).
    alive() { [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]; }
    for _ in $(seq 1 100); do alive || break; sleep 0.05; done
    if alive; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "swtpm: stopped pid $pid" >&2
  else
    echo "swtpm: not running" >&2
  fi
  rm -f "$PID_FILE" "$DIR/env"
else
  echo "swtpm: not running" >&2
fi

if [ "$DESTROY" = 1 ]; then
  rm -rf "$DIR"
  echo "swtpm: removed $DIR" >&2
fi
