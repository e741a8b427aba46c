#!/usr/bin/env bash
# Start a manufactured software TPM (swtpm) on 127.0.0.1 for shell users — the shell twin of
# test/helpers/swtpm.ts. Prints `export …` lines on stdout, so:
#
#   eval "$(scripts/swtpm/start.sh)"            # TPM2TOOLS_TCTI, SWTPM_DIR, SWTPM_PORT, …
#   tpm2_getcap handles-persistent              # 0x81010001 (RSA EK), 0x81010016 (ECC P-384 EK)
#   scripts/swtpm/stop.sh                       # stop (state kept); --destroy removes it
#
# Options:
#   --dir DIR         TPM directory, relative to the current one (default: $SWTPM_DIR, else
#                     .tmp/swtpm in the checkout); state is reused if present
#   --ca-dir DIR      swtpm_localca directory to share between TPMs (default: DIR/ca)
#   --manufacturer S  platform-manufacturer label of a new local CA (default: Sigil)
#   --pcr-banks LIST  active PCR banks for a new TPM (default: sha256)
#   --no-ek-certs     manufacture without EK/platform certificates (EKs are still created)
#   --port P          data port (control is P+1); default: a free pair
#
# The CA is test-local (never /var/lib/swtpm-localca): swtpm_setup --config points
# create_certs_tool_config at DIR/ca/swtpm-localca.conf. The CA files an issuer trusts are
# $SWTPM_CA_DIR/state/swtpm-localca-rootca-cert.pem and …/issuercert.pem.
set -euo pipefail
# --dir/--ca-dir/$SWTPM_DIR relative to where the script is called from; the default
# .tmp/swtpm relative to the checkout.
CALLER_PWD="$PWD"
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$CALLER_PWD" "$1" ;; esac; }
cd "$(dirname "$0")/../.."

HINT='run scripts/setup.sh (apt-get install swtpm swtpm-tools tpm2-tools)'
need() { command -v "$1" >/dev/null 2>&1 || { echo "$1 not found: $HINT" >&2; exit 1; }; }
log() { echo "swtpm: $*" >&2; }

DIR=".tmp/swtpm"; [ -z "${SWTPM_DIR:-}" ] || DIR="$(abs "$SWTPM_DIR")"
CA_DIR=""
MANUFACTURER="Sigil"
BANKS="sha256"
EK_CERTS=1
PORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$(abs "$2")"; shift 2 ;;
    --ca-dir) CA_DIR="$(abs "$2")"; shift 2 ;;
    --manufacturer) MANUFACTURER="$2"; shift 2 ;;
    --pcr-banks) BANKS="$2"; shift 2 ;;
    --no-ek-certs) EK_CERTS=0; shift ;;
    --port) PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "swtpm: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

need swtpm
need swtpm_setup
[ "$EK_CERTS" = 1 ] && need swtpm_localca

mkdir -p "$DIR/state"
DIR="$(cd "$DIR" && pwd)"
CA_DIR="$(realpath -m "${CA_DIR:-$DIR/ca}")"
PID_FILE="$DIR/swtpm.pid"

print_env() {
  echo "export TPM2TOOLS_TCTI='swtpm:host=127.0.0.1,port=$1'"
  echo "export SWTPM_DIR='$DIR'"
  echo "export SWTPM_PORT=$1"
  echo "export SWTPM_CTRL_PORT=$(($1 + 1))"
  if [ "$EK_CERTS" = 1 ] || [ -f "$CA_DIR/state/issuercert.pem" ]; then
    echo "export SWTPM_CA_DIR='$CA_DIR'"
    echo "export SWTPM_CA_FILES='$CA_DIR/state/swtpm-localca-rootca-cert.pem:$CA_DIR/state/issuercert.pem'"
  fi
}

is_our_swtpm() { # pid: alive and running on this state dir
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "dir=$DIR/state "
}

if [ -f "$PID_FILE" ] && is_our_swtpm "$(cat "$PID_FILE")" && [ -f "$DIR/env" ]; then
  log "already running (pid $(cat "$PID_FILE"))"
  cat "$DIR/env"
  exit 0
fi

if [ ! -f "$DIR/state/tpm2-00.permall" ]; then
  CONF="$DIR/swtpm_setup.conf"
  if [ "$EK_CERTS" = 1 ]; then
    mkdir -p "$CA_DIR/state"
    if [ ! -f "$CA_DIR/swtpm-localca.conf" ]; then
      cat >"$CA_DIR/swtpm-localca.conf" <<CONF
statedir = $CA_DIR/state
signingkey = $CA_DIR/state/signkey.pem
issuercert = $CA_DIR/state/issuercert.pem
certserial = $CA_DIR/state/certserial
CONF
      printf -- '--platform-manufacturer %s\n--platform-version 1.0\n--platform-model SimulatedGateway\n' \
        "${MANUFACTURER// /_}" >"$CA_DIR/swtpm-localca.options"
    fi
    cat >"$CONF" <<CONF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $CA_DIR/swtpm-localca.conf
create_certs_tool_options = $CA_DIR/swtpm-localca.options
active_pcr_banks = $BANKS
CONF
    CERT_FLAGS=(--create-ek-cert --create-platform-cert)
  else
    echo "active_pcr_banks = $BANKS" >"$CONF"
    CERT_FLAGS=(--createek)
  fi
  log "manufacturing a TPM in $DIR/state"
  if ! swtpm_setup --tpm2 --tpmstate "$DIR/state" --pcr-banks "$BANKS" --config "$CONF" \
      --logfile "$DIR/swtpm_setup.log" "${CERT_FLAGS[@]}" >/dev/null 2>&1; then
    echo "swtpm: swtpm_setup failed; last lines of $DIR/swtpm_setup.log:" >&2
    tail -n 8 "$DIR/swtpm_setup.log" >&2 || true
    exit 1
  fi
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_on() {
  swtpm socket --daemon --tpm2 \
    --tpmstate "dir=$DIR/state" \
    --server "type=tcp,port=$1,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$(($1 + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear \
    --pid "file=$PID_FILE" --log "file=$DIR/swtpm.log" 2>"$DIR/swtpm.start.err"
}

started=""
for attempt in $(seq 1 20); do
  if [ -n "$PORT" ]; then p="$PORT"; else p=$((20000 + RANDOM % 40000)); fi
  if port_busy "$p" || port_busy $((p + 1)); then
    [ -n "$PORT" ] && { echo "swtpm: port $p or $((p + 1)) is in use" >&2; exit 1; }
    continue
  fi
  : >"$DIR/swtpm.log"
  if start_on "$p"; then started="$p"; break; fi
  # A port taken between the check and the bind is reported in swtpm's log, not on stderr:
  # with a random port, any start failure is retried on another pair; a fixed one fails now.
  [ -n "$PORT" ] && { echo "swtpm: could not start on port $p:" >&2; cat "$DIR/swtpm.start.err" "$DIR/swtpm.log" >&2 2>/dev/null; exit 1; }
done
if [ -z "$started" ]; then
  echo "swtpm: could not start after 20 attempts; last errors:" >&2
  cat "$DIR/swtpm.start.err" "$DIR/swtpm.log" >&2 2>/dev/null || true
  exit 1
fi

for _ in $(seq 1 200); do port_busy "$started" && break; sleep 0.05; done
port_busy "$started" || { echo "swtpm: not accepting on 127.0.0.1:$started; see $DIR/swtpm.log" >&2; exit 1; }

print_env "$started" | tee "$DIR/env"
log "running on 127.0.0.1:$started (pid $(cat "$PID_FILE"))"
