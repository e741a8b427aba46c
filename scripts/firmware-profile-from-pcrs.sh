#!/usr/bin/env bash
# Make a firmware profile (firmware-profiles/README.md) that pins the PCR values of a
# known-good device, read with tpm2_pcrread — on the device itself, or from a saved output.
#
#   scripts/firmware-profile-from-pcrs.sh --name acme-gw-fw-2.3 --out /etc/sigil/firmware-profiles/acme-gw-fw-2.3.yaml
#   tpm2_pcrread sha256:0,1,2,3,4,5,6,7 > gw.pcrs          # on the device; copy gw.pcrs over
#   scripts/firmware-profile-from-pcrs.sh --name acme-gw-fw-2.3 --from gw.pcrs > acme-gw-fw-2.3.yaml
#
# Options:
#   --name NAME          profile name (required): 1-63 of [a-z0-9._-], starting and ending
#                        with a letter or digit; the join rule's firmware_profiles names it
#   --pcrs LIST          PCRs to pin, comma-separated (default 0,1,2,3,4,5,6,7: firmware,
#                        option ROMs, boot loader, secure-boot policy). Not 10-15: the OS
#                        extends those after boot, so they differ at every boot.
#   --bank BANK          sha1 | sha256 | sha384 | sha512 (default sha256)
#   --tcti TCTI          the TPM to read (default: $TPM2TOOLS_TCTI, else tpm2-tools' default,
#                        /dev/tpmrm0), e.g. swtpm:host=127.0.0.1,port=2321
#   --from FILE          parse this saved `tpm2_pcrread` output instead (- for stdin)
#   --description TEXT   the profile's description
#   --out FILE           write here (refused if it exists, unless --force); default stdout
#
# The profile is checked with the issuer's own parser (dist/attest/firmware, after
# `npm run build`) before it is written. It pins the values of ONE boot: a firmware,
# boot loader or secure-boot change is refused (pcr_mismatch) until its values are added
# as a second entry under the same PCR (run this again on an updated device and merge).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "firmware-profile: $*" >&2; exit 2; }
NAME="" PCRS="" BANK=sha256 TCTI="${TPM2TOOLS_TCTI:-}" FROM="" DESC="" OUT="" FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="${2-}"; shift 2 ;;
    --pcrs) PCRS="${2-}"; shift 2 ;;
    --bank) BANK="${2-}"; shift 2 ;;
    --tcti) TCTI="${2-}"; shift 2 ;;
    --from) FROM="${2-}"; shift 2 ;;
    --description) DESC="${2-}"; shift 2 ;;
    --out) OUT="${2-}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ -n "$NAME" ] || die "--name is required (see --help)"
[[ "$NAME" =~ ^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$ ]] || die "--name $NAME: 1-63 lowercase letters, digits, dots, dashes, underscores, starting and ending with a letter or digit"
case "$BANK" in sha1) LEN=40 ;; sha256) LEN=64 ;; sha384) LEN=96 ;; sha512) LEN=128 ;; *) die "--bank $BANK: one of sha1, sha256, sha384, sha512" ;; esac
if [ -n "$PCRS" ]; then
  [[ "$PCRS" =~ ^[0-9]{1,2}(,[0-9]{1,2})*$ ]] || die "--pcrs $PCRS: PCR numbers separated by commas, e.g. 0,2,4,7"
  for p in ${PCRS//,/ }; do [ "$p" -le 23 ] || die "--pcrs: PCR $p does not exist (0-23)"; done
fi
[ -z "$OUT" ] || [ "$FORCE" = 1 ] || [ ! -e "$OUT" ] || die "$OUT exists (--force to replace it)"

if [ -n "$FROM" ]; then
  if [ "$FROM" = - ]; then INPUT="$(cat)"; else INPUT="$(cat -- "$FROM")" || die "cannot read $FROM"; fi
  SOURCE="tpm2_pcrread output ${FROM/#-/(stdin)}"
else
  command -v tpm2_pcrread >/dev/null || die "tpm2_pcrread not found: apt-get install tpm2-tools"
  SEL="$BANK:${PCRS:-0,1,2,3,4,5,6,7}"
  args=("$SEL"); [ -z "$TCTI" ] || args+=(-T "$TCTI")
  INPUT="$(tpm2_pcrread "${args[@]}" 2>&1)" || die "tpm2_pcrread ${args[*]} failed: $INPUT"
  SOURCE="tpm2_pcrread ${args[*]}"
fi

# tpm2_pcrread's YAML: "  sha256:" then "    7 : 0x<hex>" lines; keep the lines of our bank.
VALUES="$(printf '%s\n' "$INPUT" | awk -v bank="$BANK" '
  /^[[:space:]]*(sha1|sha256|sha384|sha512|sm3_256)[[:space:]]*:[[:space:]]*$/ { gsub(/[[:space:]:]/, ""); inbank = ($0 == bank); next }
  inbank && /^[[:space:]]+[0-9]+[[:space:]]*:[[:space:]]*(0x)?[0-9A-Fa-f]+[[:space:]]*$/ {
    split($0, f, ":"); gsub(/[[:space:]]/, "", f[1]); v = f[2]; gsub(/[[:space:]]/, "", v); sub(/^0x/, "", v)
    print f[1], tolower(v)
  }')"
[ -n "$VALUES" ] || die "no $BANK PCR values in the $SOURCE output (is the $BANK bank allocated? tpm2_getcap pcrs)"
if [ -n "$PCRS" ]; then
  VALUES="$(printf '%s\n' "$VALUES" | awk -v want=",$PCRS," 'index(want, "," $1 ",")')"
  for p in ${PCRS//,/ }; do
    printf '%s\n' "$VALUES" | awk -v p="$p" '$1 == p { found = 1 } END { exit !found }' || die "PCR $p is not in the $BANK values of the $SOURCE output"
  done
fi
while read -r pcr value; do
  [ "${#value}" = "$LEN" ] || die "PCR $pcr: ${#value} hex digits, $BANK values have $LEN"
done <<<"$VALUES"

yaml_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
PROFILE="$(
  echo "# Made by scripts/firmware-profile-from-pcrs.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ) from $SOURCE."
  echo "# Pins the PCR values of one known-good boot (firmware-profiles/README.md)."
  echo "name: $NAME"
  echo "description: $(yaml_str "${DESC:-PCR values of a reference device ($BANK $(printf '%s\n' "$VALUES" | awk '{print $1}' | paste -sd, -))}")"
  echo "pcr_bank: $BANK"
  echo "pcrs:"
  printf '%s\n' "$VALUES" | sort -n | awk '{ printf "  \"%s\":\n    - \"%s\"\n", $1, $2 }'
)"

# Check it with the issuer's parser: what is written here loads in `sigil server start`.
PARSER="$ROOT/dist/attest/firmware/schema.js"
if [ -f "$PARSER" ] && command -v node >/dev/null; then
  printf '%s\n' "$PROFILE" | node -e '
    const src = require("fs").readFileSync(0, "utf8");
    import(process.argv[1]).then((m) => m.parseFirmwareProfile(src, "(generated profile)"))
      .catch((e) => { console.error(`firmware-profile: the generated profile does not parse: ${e.message}`); process.exit(2); });
  ' "$PARSER"
else
  echo "firmware-profile: $PARSER not found (npm run build): profile not checked" >&2
fi

if [ -n "$OUT" ]; then
  tmp="$(dirname -- "$OUT")/.$(basename -- "$OUT").tmp.$$"
  printf '%s\n' "$PROFILE" >"$tmp" && chmod 0644 "$tmp" && mv -f -- "$tmp" "$OUT"
  echo "firmware-profile: wrote $OUT ($(printf '%s\n' "$VALUES" | wc -l) PCRs, $BANK)" >&2
else
  printf '%s\n' "$PROFILE"
fi
