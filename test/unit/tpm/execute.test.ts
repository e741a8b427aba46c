import { describe, expect, it } from 'vitest';
import { Sign } from '../../../src/tpm/commands/attestation.js';
import { GetRandom } from '../../../src/tpm/commands/capability.js';
import { PCR_Extend } from '../../../src/tpm/commands/pcr.js';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { TpmError } from '../../../src/tpm/errors.js';
import { execute } from '../../../src/tpm/execute.js';
import { AuthSession } from '../../../src/tpm/session.js';
import { NULL_HASHCHECK } from '../../../src/tpm/structures/tickets.js';
import { parseSwtpmConf } from '../../../src/tpm/transport/open.js';
import type { TpmTransport } from '../../../src/tpm/transport/transport.js';

/** A scripted TPM: records commands, answers from a list. */
class Scripted implements TpmTransport {
  sent: string[] = [];
  constructor(private readonly answers: string[]) {}
  async send(cmd: Uint8Array): Promise<Uint8Array> {
    this.sent.push(Buffer.from(cmd).toString('hex'));
    const a = this.answers.shift();
    if (a === undefined) throw new Error('no scripted answer');
    return Buffer.from(a, 'hex');
  }
  async close(): Promise<void> {}
}

function response(tag: string, rc: number, body: string): string {
  const len = 10 + body.length / 2;
  return tag + len.toString(16).padStart(8, '0') + rc.toString(16).padStart(8, '0') + body;
}

describe('the command pipeline', () => {
  it('marshals a command without sessions exactly (GetRandom, Part 3 §16.1)', async () => {
    const t = new Scripted([response('8001', 0, '0004deadbeef')]);
    const r = await execute(t, GetRandom, { bytesRequested: 16 });
    expect(t.sent).toEqual(['80010000000c0000017b0010']);
    expect(Buffer.from(r.randomBytes).toString('hex')).toBe('deadbeef');
  });

  it('puts a password session on an authorized handle and parses parameterSize + auth response', async () => {
    const t = new Scripted([response('8002', 0, '00000000' + '0000010000')]);
    await execute(t, PCR_Extend, {
      pcrHandle: { handle: 16, authValue: Buffer.from('pw') },
      digests: [{ hashAlg: TPM_ALG.SHA1, digest: Buffer.alloc(20, 0xaa) }],
    });
    const sent = t.sent[0]!;
    expect(sent.slice(0, 4)).toBe('8002');
    expect(sent.slice(12, 20)).toBe('00000182'); // TPM_CC_PCR_Extend
    expect(sent.slice(20, 28)).toBe('00000010'); // handle 16
    // authorizationSize 11: TPM_RS_PW, empty nonce, continueSession, hmac "pw"
    expect(sent.slice(28, 28 + 8 + 22)).toBe('0000000b' + '40000009' + '0000' + '01' + '00027077');
    expect(sent.slice(58)).toBe('00000001' + '0004' + 'aa'.repeat(20));
    expect(parseInt(sent.slice(4, 12), 16)).toBe(sent.length / 2);
  });

  it('a non-zero response code is a TpmError naming the command', async () => {
    const t = new Scripted([response('8001', 0x98e, '')]);
    const err = await execute(t, Sign, {
      keyHandle: 0x80000001,
      digest: Buffer.alloc(32),
      inScheme: { scheme: TPM_ALG.NULL },
      validation: NULL_HASHCHECK,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmError);
    expect((err as TpmError).message).toBe('TPM2_Sign failed: TPM_RC_AUTH_FAIL in session 1 (rc 0x0000098e)');
  });

  it('resends on TPM_RC_RETRY', async () => {
    const t = new Scripted([response('8001', 0x922, ''), response('8001', 0, '000101')]);
    const r = await execute(t, GetRandom, { bytesRequested: 1 });
    expect(t.sent.length).toBe(2);
    expect(Array.from(r.randomBytes)).toEqual([1]);
  });

  it('a malformed response is internal, not bad_request', async () => {
    for (const bad of [response('8001', 0, '0008dead'), response('8001', 0, '000101ff'), '80010000'])
      await expect(execute(new Scripted([bad]), GetRandom, { bytesRequested: 1 })).rejects.toMatchObject({
        code: 'internal',
      });
  });

  it('an HMAC session needs the Names of object handles (caller misuse → TypeError)', async () => {
    const s = new AuthSession({
      kind: 'hmac',
      handle: 0x02000000,
      hashAlg: TPM_ALG.SHA256,
      nonceCaller: Buffer.alloc(32),
      nonceTPM: Buffer.alloc(32),
      sessionKey: Buffer.alloc(0),
      symmetric: { algorithm: TPM_ALG.NULL },
      attributes: 1,
    });
    await expect(
      execute(new Scripted([]), Sign, {
        keyHandle: { handle: 0x80000001, auth: s },
        digest: Buffer.alloc(32),
        inScheme: { scheme: TPM_ALG.NULL },
        validation: NULL_HASHCHECK,
      }),
    ).rejects.toThrow(TypeError);
  });
});

describe('TCTI strings', () => {
  it('parses swtpm host/port and path', () => {
    expect(parseSwtpmConf('host=127.0.0.1,port=2400')).toEqual({ host: '127.0.0.1', port: 2400 });
    expect(parseSwtpmConf('')).toEqual({ host: 'localhost', port: 2321 });
    expect(parseSwtpmConf('path=/run/swtpm.sock')).toEqual({ path: '/run/swtpm.sock' });
    expect(() => parseSwtpmConf('port=x')).toThrow(/bad port/);
    expect(() => parseSwtpmConf('hots=a')).toThrow(/unknown option "hots"/);
  });
});
