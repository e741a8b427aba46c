#!/usr/bin/env node
/**
 * Targeted mutation testing of the security checks (issue #20): `npm run mutate -- <area>`.
 *
 * Each area names the source files whose checks matter and the test files that are meant to
 * kill their mutants. Stryker runs only those tests (its `testFiles` option, not vitest's
 * `--related` guess), one vitest worker, so an area fits in minutes on a shared machine.
 * The score and the survivors of every area are recorded in docs/testing.md.
 *
 *   npm run mutate -- jws                 one area
 *   npm run mutate -- jws --check         also drop mutants that do not type-check (slower)
 *   npm run mutate -- --list              the areas and their files
 *   SIGIL_MUTATE_CONCURRENCY=2 npm run mutate -- x509
 *
 * Reports: .tmp/mutation/<area>.html and .json (clear text on stdout).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** area → { mutate: source globs, tests: test files that cover them }. */
export const AREAS = {
  'tpm-verify': {
    what: 'TPM verifier: quote, PCR digest, AK/key attributes, Certify, EK, clock, credential activation',
    mutate: [
      'src/attest/quote.ts',
      'src/attest/certify.ts',
      'src/attest/ak.ts',
      'src/attest/key.ts',
      'src/attest/attributes.ts',
      'src/attest/ek.ts',
      'src/attest/clock.ts',
      'src/attest/credential.ts',
    ],
    tests: [
      'test/unit/attest/quote.test.ts',
      'test/unit/attest/key-attestation.test.ts',
      'test/unit/attest/ek.test.ts',
      'test/unit/attest/clock-credential.test.ts',
      'test/unit/attest/attribute-attacks.test.ts',
      'test/unit/attest/ek-attacks.test.ts',
      'test/unit/attest/clock-boundaries.test.ts',
      'test/unit/attest/quote-attacks.test.ts',
      'test/unit/attest/tpm-verify-mutants.test.ts',
    ],
  },
  x509: {
    what: 'x509 path validation, CRLs, allow rules, name constraints',
    mutate: ['src/join/x509-path.ts', 'src/join/x509-crl.ts', 'src/join/x509/allow.ts', 'src/pki/name-constraints.ts'],
    // Not azure-genuine.test.ts (validatePath too): its one-byte-change sweeps take ~25 s per mutant.
    tests: [
      'test/unit/join/x509-attacks.test.ts',
      'test/unit/join/x509-rules-devices.test.ts',
      'test/unit/join/x509-allow-matchers.test.ts',
      'test/unit/join/x509-crl-parse.test.ts',
      'test/unit/join/x509-path-checks.test.ts',
      'test/unit/join/x509-name-constraints.test.ts',
      'test/unit/join/x509-gaps.test.ts',
      'test/unit/join/glob-match.test.ts',
      'test/unit/pki/name-constraints.test.ts',
      'test/unit/attest/ek.test.ts',
      'test/unit/attest/ek-attacks.test.ts',
      'test/fuzz/der.fuzz.test.ts',
      'test/integration/x509-join.test.ts',
    ],
  },
  jws: {
    what: 'JWS envelopes and request authentication',
    mutate: ['src/protocol/jws.ts', 'src/server/ops/authenticate.ts'],
    tests: [
      'test/unit/protocol/jws.test.ts',
      'test/unit/protocol/jws-crit.test.ts',
      'test/unit/protocol/jws-mutants.test.ts',
      'test/integration/hardening-http.test.ts',
      'test/integration/http-errors.test.ts',
      'test/integration/http-errors-renew.test.ts',
      'test/integration/answer-binding.test.ts',
      'test/integration/auth-attacks.test.ts',
    ],
  },
  'renew-token': {
    what: 'renewal, token commit, idempotency',
    mutate: [
      'src/server/ops/renew.ts',
      'src/join/token/server.ts',
      'src/server/ops/respond.ts',
      'src/server/ops/answer-seal.ts',
    ],
    tests: [
      'test/unit/server/answer-seal.test.ts',
      'test/integration/idempotency.test.ts',
      'test/integration/http-errors-renew.test.ts',
      'test/integration/expired-renewal.test.ts',
      'test/unit/server/issuing-race.test.ts',
      'test/unit/server/replay-binding.test.ts',
      'test/integration/concurrent-commit.test.ts',
      'test/integration/auth-attacks.test.ts',
      'test/unit/server/auth-attacks-token.test.ts',
      'test/unit/server/renew-mutants.test.ts',
      // The continuous attestation of a renewal (issue #16: renew.ts's attestation branch).
      'test/unit/tpm/continuous-attestation.test.ts',
    ],
  },
  pinning: {
    what: 'the CA pin of the HTTPS client and of the MQTT TLS first contact',
    // The pin logic of the HTTPS client (setRoot, ensureRoot, learnRoot), not its HTTP plumbing.
    mutate: ['src/transport/https/client.ts:64-145', 'src/transport/mqtt/tls-pin.ts'],
    tests: ['test/integration/pin-attacks.test.ts'],
  },
  // The bounded subset run by scripts/test.sh (CI): `npm run mutate:ci`. The comparisons whose
  // silent loss opens the door — the CA pin on both transports, JWS verification, the token's
  // consume at commit, the idempotency request-hash and signer compare — and only the tests that
  // kill them. Below `break` the run (and CI) fails. Budget: 5 minutes on the shared 2-core box.
  ci: {
    what: 'CI subset: pin comparisons, JWS verify, token commit guard, request-hash compare, stored-answer seal',
    mutate: [
      'src/transport/https/client.ts:71-92',
      'src/transport/https/client.ts:130-143',
      'src/transport/mqtt/tls-pin.ts:49-62',
      'src/protocol/jws.ts:82-159',
      'src/join/token/server.ts:18-55',
      'src/server/ops/respond.ts:116-166',
      'src/server/ops/answer-seal.ts:58-92',
    ],
    tests: [
      'test/integration/pin-attacks.test.ts',
      'test/unit/protocol/jws.test.ts',
      'test/unit/protocol/jws-crit.test.ts',
      'test/unit/protocol/jws-mutants.test.ts',
      'test/unit/server/auth-attacks-token.test.ts',
      'test/unit/server/replay-binding.test.ts',
      'test/unit/server/renew-mutants.test.ts',
      'test/unit/server/answer-seal.test.ts',
    ],
    break: 90,
  },
  'ui-sessions': {
    what: 'fleet-view sessions: the seal of a stored row, expiry, bounds, the credential still on file',
    mutate: [
      'src/server/ui/session-seal.ts',
      'src/server/ui/session.ts',
      'src/server/ui/session-memory.ts',
      'src/server/ui/viewer-credentials.ts',
    ],
    tests: ['test/unit/ui/session.test.ts', 'test/unit/ui/routes.test.ts', 'test/unit/ui/viewer-credentials.test.ts'],
  },
  'key-rotation': {
    what: 'sigil server rotate-key: the staged key checked against the published one, what is published beside the signing key and until when, and a running issuer reading each step (a withdrawn key halted)',
    mutate: [
      'src/server/rotate-key.ts',
      'src/server/rotating-keys.ts',
      'src/server/credentials/authorities.ts',
      'src/server/key-reload.ts',
      'src/agent/outputs/ssh-ca-lines.ts',
    ],
    tests: [
      'test/unit/server/rotate-key.test.ts',
      'test/unit/server/key-reload.test.ts',
      'test/unit/doctor/key-rotation.test.ts',
      'test/unit/agent/ssh-ca-lines.test.ts',
      'test/e2e/key-rotation.test.ts',
    ],
  },
  hashes: {
    what: 'the audit chain HMAC and the request hash, built from one-shot SHA-256 (issue #14)',
    mutate: ['src/util/hmac-sha256.ts', 'src/protocol/request-hash.ts', 'src/server/store/sqlite/audit.ts:113-116'],
    tests: [
      'test/unit/util/hmac-sha256.test.ts',
      'test/unit/protocol/request-hash.test.ts',
      'test/unit/server/audit-tamper.test.ts',
      'test/unit/server/audit-append-fast.test.ts',
    ],
  },
  'tpm-structures': {
    what: 'TPM 2.0 structure parsers the verifier reads from agents: codec bounds, TPMS_ATTEST, TPMT_PUBLIC, PCR selections, signatures',
    mutate: [
      'src/tpm/structures/codec.ts',
      'src/tpm/structures/attest.ts',
      'src/tpm/structures/public.ts',
      'src/tpm/structures/pcr.ts',
      'src/tpm/structures/signature.ts',
    ],
    tests: [
      'test/unit/tpm/marshal.test.ts',
      'test/unit/tpm/structures.test.ts',
      'test/unit/tpm/structures-mutants.test.ts',
      'test/unit/attest/quote-attacks.test.ts',
      'test/unit/attest/tpm-verify-mutants.test.ts',
    ],
  },
  parsers: {
    what: 'TSS2 PEM keys and the TCG event log',
    mutate: ['src/keystore/tss2-pem.ts', 'src/tpm/eventlog/parse.ts', 'src/tpm/eventlog/reader.ts'],
    tests: [
      'test/unit/keystore/tss2-pem.test.ts',
      'test/unit/keystore/tss2-pem-mutants.test.ts',
      'test/unit/tpm/eventlog.test.ts',
      'test/unit/tpm/eventlog-mutants.test.ts',
    ],
  },
};

function main(argv) {
  const args = argv.filter((a) => !a.startsWith('--'));
  if (argv.includes('--list') || args.length !== 1 || !(args[0] in AREAS)) {
    const lines = Object.entries(AREAS).map(
      ([name, a]) => `  ${name.padEnd(14)} ${a.what}\n${' '.repeat(17)}mutates ${a.mutate.join(', ')}`,
    );
    process.stdout.write(`usage: npm run mutate -- <area> [--check]\nareas:\n${lines.join('\n')}\n`);
    return argv.includes('--list') ? 0 : 2;
  }
  const root = fileURLToPath(new URL('..', import.meta.url));
  const r = spawnSync('npx', ['stryker', 'run', 'stryker.config.mjs'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, SIGIL_MUTATE_AREA: args[0], SIGIL_MUTATE_CHECK: argv.includes('--check') ? '1' : '' },
  });
  return r.status ?? 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(main(process.argv.slice(2)));
