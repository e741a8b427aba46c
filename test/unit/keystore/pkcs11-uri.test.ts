import { describe, expect, it } from 'vitest';
import { formatPkcs11Uri, parseKeyRef, parsePkcs11Uri, serializeKeyRef } from '../../../src/keystore/index.js';
import { rawEcdsaToDer } from '../../../src/keystore/ecdsa.js';

describe('PKCS#11 URIs (RFC 7512)', () => {
  it('reads token, object, id, type, module-path and pin-source', () => {
    const u = parsePkcs11Uri(
      'pkcs11:token=My%20Token;object=agent-key;id=%01%ab;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sigil/pin',
    );
    expect(u).toEqual({
      token: 'My Token',
      object: 'agent-key',
      id: Buffer.from([0x01, 0xab]),
      type: 'private',
      modulePath: '/usr/lib/softhsm/libsofthsm2.so',
      pinFile: '/etc/sigil/pin',
    });
  });

  it('refuses pin-value, unknown attributes, duplicates and bad encodings', () => {
    expect(() => parsePkcs11Uri('pkcs11:token=t?pin-value=1234')).toThrow(/pin-value is refused/);
    expect(() => parsePkcs11Uri('pkcs11:tokn=t')).toThrow(/unknown path attribute/);
    expect(() => parsePkcs11Uri('pkcs11:token=a;token=b')).toThrow(/twice/);
    expect(() => parsePkcs11Uri('pkcs11:id=%zz')).toThrow(/percent/);
    expect(() => parsePkcs11Uri('file:/x')).toThrow(/pkcs11:/);
    expect(() => parsePkcs11Uri('pkcs11:token=t?pin-source=relative')).toThrow(/absolute/);
  });

  it('writes the URI of a key reference (path attributes only) that reads back the same', () => {
    const uri = formatPkcs11Uri({ tokenLabel: 'My Token;1', keyLabel: 'sigil-ab12', keyId: '01ab' });
    expect(uri).toBe('pkcs11:token=My%20Token%3b1;object=sigil-ab12;id=%01%ab;type=private');
    expect(parsePkcs11Uri(uri)).toEqual({
      token: 'My Token;1',
      object: 'sigil-ab12',
      id: Buffer.from([0x01, 0xab]),
      type: 'private',
    });
  });
});

describe('key references', () => {
  it('round-trips a PKCS#11 reference and refuses incomplete ones', () => {
    const ref = {
      storage: 'pkcs11' as const,
      module: '/m.so',
      tokenLabel: 'sigil',
      keyLabel: 'k',
      keyId: '01ab',
      pinEnv: 'PIN',
    };
    expect(parseKeyRef(serializeKeyRef(ref))).toEqual(ref);
    expect(() => parseKeyRef(JSON.stringify({ storage: 'pkcs11', module: '/m.so', tokenLabel: 't' }))).toThrow(
      /keyLabel or keyId/,
    );
    expect(() => parseKeyRef(JSON.stringify({ storage: 'pkcs11', module: 1, tokenLabel: 't', keyLabel: 'k' }))).toThrow(
      /module must be a string/,
    );
  });

  it('turns a raw r||s ECDSA signature into DER with minimal INTEGERs', () => {
    const raw = Buffer.concat([
      Buffer.from([0x00, 0x80, ...Array(30).fill(1)]),
      Buffer.from([0x7f, ...Array(31).fill(2)]),
    ]);
    const der = rawEcdsaToDer(raw);
    // r: leading 0x00 dropped, then 0x00 re-added because 0x80 has the top bit set (31 + 1 bytes).
    expect(der.subarray(0, 5).toString('hex')).toBe('3044022000');
    expect(der.subarray(2 + 2 + 32, 2 + 2 + 32 + 3).toString('hex')).toBe('02207f');
  });
});
