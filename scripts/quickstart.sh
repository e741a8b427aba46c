#!/usr/bin/env bash
# The Sigil demo, end to end on this machine (README quick start, command 1):
# issuer init + start, a bot and a one-time token, an agent joins and gets an X.509-SVID,
# openssl verifies it, the agent renews once. Everything lives in a temp dir and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/setup.sh >/dev/null
echo "== setup done"

WORK=$(mktemp -d /tmp/sigil-quickstart.XXXXXX)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
sigil() { node "$ROOT/bin/sigil.js" "$@"; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(process.argv[1].split(".").reduce((o,k)=>o[k],v))})' "$1"; }

echo "== 1. issuer: create the CA for trust domain example.org"
PIN=$(sigil server init --data-dir "$WORK/issuer" --trust-domain example.org --format json | json ca_pin)
echo "   CA pin: $PIN"

echo "== 2. issuer: start on a free loopback port"
# node directly (not the shell function) so $! is the server's own pid and cleanup stops it.
node "$ROOT/bin/sigil.js" server start --data-dir "$WORK/issuer" --listen 127.0.0.1:0 >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q 'listening on' "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
URL=$(grep -o 'https://[^ ]*' "$WORK/server.out" | head -1)
echo "   $URL"

echo "== 3. policy: role 'edge' and bot 'gw'"
cat >"$WORK/resources.yaml" <<YAML
kind: role
name: edge
spec: { max_ttl: 24h, ssh_logins: ["{{internal.logins}}"] }
---
kind: bot
name: gw
spec: { roles: [edge], traits: { logins: [ops] } }
YAML
sigil ctl --data-dir "$WORK/issuer" apply -f "$WORK/resources.yaml" | sed 's/^/   /'

echo "== 4. a one-time join token for bot gw"
TOKEN=$(sigil ctl --data-dir "$WORK/issuer" token create --bot gw --ttl 15m --format json | json token)
echo "   token: ${TOKEN:0:6}… (single use, 15 minutes)"

# agent.yaml holds the token inline: readable by the agent only (sigil doctor flags it otherwise).
(umask 077; cat >"$WORK/agent.yaml") <<YAML
issuer: $URL
ca_pin: $PIN
data_dir: $WORK/agent
ttl: 1h
join: { method: token, token: $TOKEN }
outputs:
  - { type: identity, path: $WORK/identity }
YAML

echo "== 5. agent: join"
sigil agent run --config "$WORK/agent.yaml" --once | sed 's/^/   /'

echo "== 6. the issued identity"
sigil agent status --config "$WORK/agent.yaml" --format json >"$WORK/status1.json"
for k in spiffe_id serial not_after key_storage exportable generation; do
  printf '   %-12s %s\n' "$k" "$(json "$k" <"$WORK/status1.json")"
done
echo "   files: $(cd "$WORK/identity" && ls -l | awk 'NR>1{printf "%s(%s) ", $9, $1}')"
echo "   openssl verify: $(openssl verify -CAfile "$WORK/identity/bundle.pem" -untrusted "$WORK/identity/svid.pem" "$WORK/identity/svid.pem")"
echo "   $(openssl x509 -in "$WORK/identity/svid.pem" -noout -ext subjectAltName | tail -1 | sed 's/^ *//')"

echo "== 7. agent: renew once (new key, new serial, generation + 1)"
sigil agent renew --config "$WORK/agent.yaml" --format json >"$WORK/renew.json"
echo "   old serial: $(json serial <"$WORK/status1.json")"
echo "   new serial: $(json serial <"$WORK/renew.json")   generation $(json generation <"$WORK/renew.json")"

echo "== 8. the audit log (hash-chained)"
sigil ctl --data-dir "$WORK/issuer" audit | sed 's/^/   /'
sigil ctl --data-dir "$WORK/issuer" audit --verify | sed 's/^/   /'
echo "== done (KEEP=1 keeps $WORK)"
