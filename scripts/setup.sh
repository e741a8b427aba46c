#!/usr/bin/env bash
# Install what Sigil and its tests need on Debian 12, then the npm dependencies, then build.
# Idempotent: packages already present are not reinstalled, `npm ci` runs only when
# node_modules does not match package-lock.json, the build only when src/ changed since the
# last one. Safe to run on every CI start.
#
# Progress goes to stderr, one line per step with the seconds elapsed since the start
# (`setup: [  12s] …`), so callers that silence stdout still show it. On a machine where
# everything is in place the only line is `setup: ok (nothing to do)`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS=0
step() { printf 'setup: [%4ds] %s\n' "$SECONDS" "$*" >&2; }
did=0 npm_ran=0

PACKAGES=(
  openssl ca-certificates                      # cross-checks (openssl verify / x509 / req)
  swtpm swtpm-tools tpm2-tools libtss2-dev     # TPM attestation (software TPM + reference tools)
  libtss2-tcti-tabrmd0 tpm2-abrmd tpm2-openssl dbus
  mosquitto mosquitto-clients                  # renewal over MQTT
  openssh-server openssh-client                # SSH certificate outputs
  postgresql postgresql-client                 # database outputs / scale-out store
  golang-cfssl                                 # bench: cfssl serve, the side-by-side peer CA (#14)
  haproxy                                      # scale-out tests: a load balancer in front of issuers (#15)
  faketime                                     # fixture tests with the clock set years ahead (#20)
  chromium fonts-dejavu-core                   # fleet view browser tests (playwright-core drives /usr/bin/chromium, #18)
  kubernetes-client                            # kubectl: kubernetes output (kubeconfig) tests
  python3-grpcio python3-protobuf              # an independent Workload API client (gRPC C core) in the e2e tests (#17)
  softhsm2 opensc                              # PKCS#11 keystore
  zsh                                          # checks the zsh completion script (zsh -n)
  python3 make g++                             # building better-sqlite3 from source
  gcc libc6-dev                                # tests build a slow PKCS#11 module in front of SoftHSM2 (test/fixtures/pkcs11-slow)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # Any kubectl will do (e.g. the google-cloud-sdk one, whose package conflicts with Debian's).
  if [ "$p" = kubernetes-client ] && command -v kubectl >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  did=1
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  step "${#missing[@]} of ${#PACKAGES[@]} system packages missing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  step "apt-get update"
  if ! apt-get update -qq >.apt-get.log 2>&1; then
    cat .apt-get.log >&2; echo "setup: apt-get update failed (log above)" >&2; exit 1
  fi
  step "apt-get install ${#missing[@]} packages and their dependencies (a few minutes on a fresh machine)"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >.apt-get.log 2>&1; then
    tail -n 30 .apt-get.log >&2; echo "setup: apt-get install failed (last lines above)" >&2; exit 1
  fi
  rm -f .apt-get.log
  # Debian starts these services on install; Sigil's tests start their own instances on free ports.
  step "stopping the services Debian started (mosquitto postgresql ssh tpm2-abrmd haproxy): tests start their own"
  for svc in mosquitto postgresql ssh tpm2-abrmd haproxy; do
    (systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1) || true
  done
  step "system packages installed"
fi

# 20.12: the issuer hashes with the one-shot crypto.hash (pki/own-leaf.ts, server/ops/issue.ts).
node_ok=$(node -p 'const [a, b] = process.versions.node.split(".").map(Number); a > 20 || (a === 20 && b >= 12) ? 1 : 0' 2>/dev/null || echo 0)
if [ "$node_ok" != 1 ]; then
  echo "setup: Node.js >= 20.12 is required (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm ci is skipped when node_modules matches the lockfile (saves the ~70 s better-sqlite3 build).
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.sigil-lock-stamp; then
  did=1
  step "npm ci (downloads the dependencies and compiles better-sqlite3: 1-3 minutes)"
  if ! npm ci --no-audit --no-fund >.npm-ci.log 2>&1; then
    grep -v 'Unknown user config' .npm-ci.log >&2 || true
    echo "setup: npm ci failed (log above)" >&2
    exit 1
  fi
  rm -f .npm-ci.log
  npm_ran=1
  node -e "require('better-sqlite3')" 2>/dev/null || { echo "setup: better-sqlite3 failed to build" >&2; exit 1; }
  cp package-lock.json node_modules/.sigil-lock-stamp
  step "npm ci done"
fi

# The build is skipped when nothing it reads is newer than the stamp of the last build (and
# npm ci did not just replace the compiler or the type definitions).
stamp=dist/.sigil-build-stamp
if [ "$npm_ran" = 1 ] || [ ! -f "$stamp" ] || [ -n "$(find src native tsconfig.json tsconfig.native.json package.json -newer "$stamp" -print -quit)" ]; then
  did=1
  step "building (tsc: native/ → dist/native/, src/ → dist/)"
  mkdir -p dist
  touch "$stamp.new"   # the start time: a file edited during the build rebuilds next time
  npm run build --silent
  mv "$stamp.new" "$stamp"
  step "done"
fi

[ "$did" = 1 ] || echo "setup: ok (nothing to do)" >&2
