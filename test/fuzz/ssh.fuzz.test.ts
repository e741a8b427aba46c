/**
 * Fuzzing the SSH wire format readers (RFC 4251 §5; key blobs RFC 4253 §6.6 / RFC 5656 §3.1 /
 * RFC 8709 §4; OpenSSH certificates PROTOCOL.certkeys): the subject keys a credential request
 * carries, and certificates and signatures the agent checks.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { encodeSshCertificate, parseCertificateLine, parseSshCertificate } from '../../src/ssh/certificate.js';
import { decodeOpenSshPrivateKey, encodeOpenSshPrivateKey } from '../../src/ssh/private-key.js';
import { parseAuthorizedKey, parseSshPublicKeyBlob, sshPublicKeyFromKeyObject } from '../../src/ssh/public-key.js';
import { sshSign, sshVerify } from '../../src/ssh/signature.js';
import { SshWriter } from '../../src/ssh/wire.js';
import { beLengthFieldsAt, fuzzParams, fuzzTimeout, mustBeCoded, mutated, randomBytes } from './harness.js';
import { replayRegressions } from './regressions.js';

const keys = [
  generateKeyPairSync('ed25519'),
  generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  generateKeyPairSync('ec', { namedCurve: 'P-521' }),
  generateKeyPairSync('rsa', { modulusLength: 2048 }),
];
const blobs = keys.map((k) => sshPublicKeyFromKeyObject(k.publicKey).blob);
const ca = keys[1]!;
const caPub = sshPublicKeyFromKeyObject(ca.publicKey);
const certs = [0, 4].map((i) =>
  encodeSshCertificate(
    {
      subject: sshPublicKeyFromKeyObject(keys[i]!.publicKey),
      serial: 7n,
      type: 'user',
      keyId: 'gw-7',
      principals: ['ops', 'backup'],
      validAfter: new Date(0),
      validBefore: new Date(2_000_000_000_000),
      criticalOptions: { 'force-command': '/bin/true', 'source-address': '10.0.0.0/8' },
      extensions: ['permit-pty'],
    },
    ca.privateKey,
    caPub,
  ),
);

/** u32 string lengths anywhere (RFC 4251 §5 `string`, `mpint`). */
const sshFields = beLengthFieldsAt(4);
const sshBytes = (seeds: Buffer[]): fc.Arbitrary<Buffer> =>
  fc.oneof({ weight: 1, arbitrary: randomBytes(1024) }, { weight: 4, arbitrary: mutated(seeds, sshFields) });

export const SSH_TARGETS: Record<string, (input: any) => unknown> = {
  publicKeyBlob: (b: Buffer) => parseSshPublicKeyBlob(b),
  authorizedKey: (t: string) => parseAuthorizedKey(t),
  certificate: (b: Buffer) => parseSshCertificate(b),
  certificateLine: (t: string) => parseCertificateLine(t),
  signature: (b: Buffer) => sshVerify(caPub, Buffer.from('data'), b),
  privateKey: (t: string) => decodeOpenSshPrivateKey(t),
};

describe('SSH wire fuzzing', () => {
  it('the seeds parse', () => {
    for (const b of blobs) parseSshPublicKeyBlob(b);
    for (const c of certs) expect(parseSshCertificate(c).principals).toEqual(['ops', 'backup']);
  });

  it(
    'public key blobs',
    () => {
      fc.assert(
        fc.property(sshBytes(blobs), (b) => mustBeCoded('parseSshPublicKeyBlob', b, SSH_TARGETS.publicKeyBlob!)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'authorized_keys lines',
    () => {
      const line = fc
        .tuple(
          fc.constantFrom('ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa', 'x'),
          sshBytes(blobs),
          fc.string({ maxLength: 20 }),
        )
        .map(([t, b, c]) => `${t} ${b.toString('base64')} ${c}`);
      fc.assert(
        fc.property(fc.oneof(line, fc.string({ maxLength: 300 })), (t) =>
          mustBeCoded('parseAuthorizedKey', t, SSH_TARGETS.authorizedKey!),
        ),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'certificates (and their signatures)',
    () => {
      fc.assert(
        fc.property(sshBytes(certs), (b) => mustBeCoded('parseSshCertificate', b, SSH_TARGETS.certificate!)),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'signature blobs against an ECDSA and an RSA and an Ed25519 signer',
    () => {
      const signers = [
        caPub,
        sshPublicKeyFromKeyObject(keys[4]!.publicKey),
        sshPublicKeyFromKeyObject(keys[0]!.publicKey),
      ];
      const sigSeeds = [
        sshSign(ca.privateKey, caPub, Buffer.from('data')),
        new SshWriter()
          .string('rsa-sha2-256')
          .string(sign('sha256', Buffer.from('data'), keys[4]!.privateKey))
          .toBuffer(),
        sshSign(keys[0]!.privateKey, signers[2]!, Buffer.from('data')),
      ];
      const arb = fc.tuple(fc.nat(signers.length - 1), sshBytes(sigSeeds));
      fc.assert(
        fc.property(arb, ([i, b]) =>
          mustBeCoded('sshVerify', b, (x) => sshVerify(signers[i]!, Buffer.from('data'), x)),
        ),
        fuzzParams(),
      );
    },
    fuzzTimeout(),
  );

  it(
    'OpenSSH private key files (configuration, same reader)',
    () => {
      const pems = [encodeOpenSshPrivateKey(keys[0]!.privateKey), encodeOpenSshPrivateKey(keys[1]!.privateKey)];
      const ders = pems.map((p) => Buffer.from(p.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'));
      const arb = sshBytes(ders).map(
        (b) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${b.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`,
      );
      fc.assert(
        fc.property(arb, (t) => mustBeCoded('decodeOpenSshPrivateKey', t, SSH_TARGETS.privateKey!)),
        fuzzParams(0.5),
      );
    },
    fuzzTimeout(0.5),
  );
});

describe('SSH: claimed lengths are never allocated', () => {
  for (const [what, b] of [
    ['key type string of 0xffffffff', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x73])],
    ['key type string of 2^31', Buffer.from([0x80, 0, 0, 0, 0x73, 0x73])],
    [
      'ed25519 key string of 0x7fffffff',
      Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0x7f, 0xff, 0xff, 0xff, 1])]),
    ],
  ] as Array<[string, Buffer]>) {
    it(what, () => {
      for (const name of ['publicKeyBlob', 'certificate', 'signature']) {
        mustBeCoded(`${name}: ${what}`, b, SSH_TARGETS[name]!, { maxMs: 50 });
        expect(() => SSH_TARGETS[name]!(b)).toThrow(SigilError);
      }
    });
  }
});

replayRegressions('ssh', SSH_TARGETS);
