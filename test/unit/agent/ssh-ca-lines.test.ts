/**
 * The SSH CA lines an ssh output writes into TrustedUserCAKeys / known_hosts from a credential
 * answer (src/agent/outputs/ssh-ca-lines.ts): the signing CA first, then the other CAs of a
 * rotation in progress; each parsed and re-rendered, so nothing but `<type> <base64> [comment]`
 * reaches a trust file, and a missing signing CA is refused.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sshCaLines } from '../../../src/agent/outputs/ssh-ca-lines.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../../src/ssh/public-key.js';

const line = (comment: string) =>
  formatAuthorizedKey(sshPublicKeyFromKeyObject(generateKeyPairSync('ed25519').privateKey).blob, comment);

describe('sshCaLines', () => {
  it('the signing CA, then the others, re-rendered (surrounding blanks dropped)', () => {
    const a = line('sigil-user-ca@example.org');
    const b = line('next-sigil-user-ca@example.org');
    expect(sshCaLines('user', `  ${a}  `, [b])).toEqual([a, b]);
    expect(sshCaLines('host', a)).toEqual([a]);
  });

  it('no signing CA: response_invalid naming which', () => {
    expect(() => sshCaLines('host', undefined)).toThrow(
      expect.objectContaining({ code: 'response_invalid', message: 'the issuer answer carries no host CA key' }),
    );
    expect(() => sshCaLines('user', '')).toThrow(/carries no user CA key/);
  });

  it.each([
    ['a second line smuggled into the comment', (l: string) => `${l}\nssh-ed25519 AAAA attacker`],
    ['options before the key (cert-authority,command=…)', (l: string) => `cert-authority,command="sh" ${l}`],
    ['a type that does not match the blob', (l: string) => l.replace(/^ssh-ed25519/, 'ssh-rsa')],
    ['not a key', () => 'hello'],
  ])('an other CA line with %s is refused (response_invalid, naming it)', (_what, bad) => {
    const a = line('sigil-user-ca@example.org');
    expect(() => sshCaLines('user', a, [line('x'), bad(line('y'))])).toThrow(
      expect.objectContaining({ code: 'response_invalid', message: expect.stringMatching(/^other user CA key 2/) }),
    );
  });
});
