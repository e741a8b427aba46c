#!/usr/bin/env bash
# Install what Sigil and its tests need on Debian 12, then the npm dependencies, then build.
# Idempotent: packages already present are not reinstalled; safe to run on every CI start.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  openssl ca-certificates                      # cross-checks (openssl verify / x509 / req)
  swtpm swtpm-tools tpm2-tools libtss2-dev     # TPM attestation (software TPM + reference tools)
  libtss2-tcti-tabrmd0 tpm2-abrmd tpm2-openssl dbus
  mosquitto mosquitto-clients                  # renewal over MQTT
  openssh-server openssh-client                # SSH certificate outputs
  postgresql postgresql-client                 # database outputs / scale-out store
  kubernetes-client                            # kubectl: kubernetes output (kubeconfig) tests
  softhsm2 opensc                              # PKCS#11 keystore
  python3 make g++                             # building better-sqlite3 from source
)

missing=()
for p in "${PACKAGES[@]}"; do
  # Any kubectl will do (e.g. the google-cloud-sdk one, whose package conflicts with Debian's).
  if [ "$p" = kubernetes-client ] && command -v kubectl >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${#missing[@]} system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these services on install; Sigil's tests start their own instances on free ports.
  for svc in mosquitto postgresql ssh tpm2-abrmd; do
    (systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1) || true
  done
else
  echo "setup: system packages present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js >= 20 is required (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm ci is skipped when node_modules matches the lockfile (saves the ~70 s better-sqlite3 build).
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.sigil-lock-stamp; then
  echo "setup: npm ci"
  if ! npm ci --no-audit --no-fund >.npm-ci.log 2>&1; then
    grep -v 'Unknown user config' .npm-ci.log >&2 || true
    echo "setup: npm ci failed (log above)" >&2
    exit 1
  fi
  rm -f .npm-ci.log
  node -e "require('better-sqlite3')" 2>/dev/null || { echo "setup: better-sqlite3 failed to build" >&2; exit 1; }
  cp package-lock.json node_modules/.sigil-lock-stamp
else
  echo "setup: node_modules up to date"
fi

echo "setup: building"
npm run build --silent
echo "setup: done"
