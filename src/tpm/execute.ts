/**
 * The one pipeline every command declaration runs through (Part 1 §18 command/response
 * structure, §19.6 authorization):
 *
 *   handles → parameters → Names of the handles → sessions (parameter encryption, then
 *   authorization HMACs over cpHash) → header → transport.send → response header and code →
 *   response handles → parameterSize → parameters → response HMACs over rpHash → decryption
 *   → typed result.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SigilError } from '../errors.js';
import { AUTH, handleOf } from './command.js';
import type { AnyCommand, AuthorizedHandle, CommandArgs, CommandResult, HandleRef } from './command.js';
import { FlushContext } from './commands/context.js';
import { TPMA_SESSION, TPM_ST, hex32 } from './constants.js';
import { AUTO_RETRY, TpmError, decodeRc } from './errors.js';
import { TpmParseError, TpmReader, TpmWriter } from './marshal.js';
import { handleName, isSelfNamed } from './name.js';
import { PASSWORD, AuthSession } from './session.js';
import type { Session } from './session.js';
import { tpmsAuthCommand, tpmsAuthResponse } from './structures/auth.js';
import type { TpmTransport } from './transport/transport.js';

export interface ExecuteOptions {
  /** Sessions after the authorizing ones: parameter encryption or audit only (Part 1 §19.1). */
  sessions?: readonly Session[];
  /** How many times to resend on TPM_RC_RETRY / YIELDED / TESTING. Default 8. */
  retries?: number;
}

interface SessionUse {
  session: Session;
  /** Position of the authorized handle in the handle area; undefined for an extra session. */
  handleIndex: number | undefined;
  /** Name of the authorized entity; undefined for an encrypt/audit-only session. */
  entityName: Uint8Array | undefined;
  entityAuth: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const HEADER = 10;

function isAuthorized(ref: HandleRef): ref is AuthorizedHandle {
  return typeof ref === 'object';
}

function nameFor(ref: HandleRef, cmdName: string, key: string): Uint8Array {
  const h = handleOf(ref);
  if (typeof ref === 'object' && ref.name) return ref.name;
  if (isSelfNamed(h)) return handleName(h);
  throw new TypeError(`TPM2_${cmdName}: handle ${key} (${hex32(h)}) needs its Name for an HMAC or policy session`);
}

/** The data of the TPM2B at the front of a parameter area (Part 1 §21.1: only it is encrypted). */
function firstTpm2b(area: Uint8Array, cmdName: string): Uint8Array {
  if (area.length < 2) throw new SigilError('internal', `TPM2_${cmdName}: no parameter to encrypt`);
  const size = (area[0]! << 8) | area[1]!;
  if (2 + size > area.length) throw new SigilError('internal', `TPM2_${cmdName}: first parameter overruns the area`);
  return area.subarray(2, 2 + size);
}

/** CFB keeps the length, so the encrypted data replaces the plain data in place. */
function replaceFirstTpm2b(area: Uint8Array, data: Uint8Array): Uint8Array {
  const out = Buffer.from(area);
  out.set(data, 2);
  return out;
}

/** Run one command. Errors: TpmError for a TPM response code, SigilError('internal') for a malformed response. */
export async function execute<C extends AnyCommand>(
  transport: TpmTransport,
  cmd: C,
  args: CommandArgs<C>,
  opts: ExecuteOptions = {},
): Promise<CommandResult<C>> {
  const a = args as Record<string, unknown>;
  const handleKeys = Object.keys(cmd.handles);
  const refs = handleKeys.map((k) => {
    const ref = a[k] as HandleRef | undefined;
    if (ref === undefined) throw new TypeError(`TPM2_${cmd.name}: missing handle ${k}`);
    return ref;
  });

  const pw = new TpmWriter();
  for (const [k, c] of Object.entries(cmd.params)) {
    if (!(k in a)) throw new TypeError(`TPM2_${cmd.name}: missing parameter ${k}`);
    c.write(pw, a[k]);
  }
  const plainParams = pw.build();

  const uses: SessionUse[] = [];
  handleKeys.forEach((k, i) => {
    if (cmd.handles[k] !== AUTH) return;
    const ref = refs[i]!;
    const session = (isAuthorized(ref) ? ref.auth : undefined) ?? PASSWORD;
    const entityAuth = (isAuthorized(ref) ? ref.authValue : undefined) ?? EMPTY;
    uses.push({ session, handleIndex: i, entityName: undefined, entityAuth });
  });
  for (const s of opts.sessions ?? [])
    uses.push({ session: s, handleIndex: undefined, entityName: undefined, entityAuth: EMPTY });
  if (uses.length > 3) throw new TypeError(`TPM2_${cmd.name}: at most 3 sessions`);

  const needsNames = uses.some((u) => u.session.needsNames);
  const names = needsNames ? refs.map((ref, i) => nameFor(ref, cmd.name, handleKeys[i]!)) : [];
  for (const u of uses) if (u.handleIndex !== undefined) u.entityName = names[u.handleIndex];

  const paramCodecs = Object.values(cmd.params);
  const responseCodecs = Object.values(cmd.response);
  const decryptUse = uses.find((u) => (u.session.attributes & TPMA_SESSION.decrypt) !== 0);
  const encryptUse = uses.find((u) => (u.session.attributes & TPMA_SESSION.encrypt) !== 0);
  if (decryptUse && !paramCodecs[0]?.name.startsWith('TPM2B')) {
    throw new TypeError(`TPM2_${cmd.name}: its first parameter is not a TPM2B, so it cannot be encrypted`);
  }
  if (encryptUse && !responseCodecs[0]?.name.startsWith('TPM2B')) {
    throw new TypeError(`TPM2_${cmd.name}: its first response parameter is not a TPM2B, so it cannot be encrypted`);
  }

  const maxTries = (opts.retries ?? 8) + 1;
  for (let attempt = 1; ; attempt++) {
    for (const u of uses) u.session.prepare();

    let params = plainParams;
    if (decryptUse) {
      const data = firstTpm2b(plainParams, cmd.name);
      params = replaceFirstTpm2b(plainParams, decryptUse.session.encryptCommand(data, decryptUse.entityAuth));
    }

    // Part 1 §19.6.5: the first session's HMAC also covers the nonces of other decrypt/encrypt sessions.
    const first = uses[0]?.session;
    const extra: Uint8Array[] = [];
    if (decryptUse && decryptUse.session !== first) extra.push(decryptUse.session.nonceTPM);
    if (encryptUse && encryptUse.session !== first && encryptUse.session !== decryptUse?.session) {
      extra.push(encryptUse.session.nonceTPM);
    }

    const w = new TpmWriter();
    w.u16(uses.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS)
      .u32(0)
      .u32(cmd.code);
    for (const ref of refs) w.u32(handleOf(ref));
    if (uses.length > 0) {
      const sizeAt = w.length;
      w.u32(0);
      uses.forEach((u, i) => {
        const entry = u.session.authorize({
          commandCode: cmd.code,
          names,
          parameters: params,
          entityName: u.entityName,
          entityAuth: u.entityAuth,
          extraNonces: i === 0 ? Buffer.concat(extra) : EMPTY,
        });
        tpmsAuthCommand.write(w, entry);
      });
      w.patchU32(sizeAt, w.length - sizeAt - 4);
    }
    w.bytes(params);
    w.patchU32(2, w.length);

    const response = await transport.send(w.build());
    const rc = responseCode(response, cmd.name);
    if (rc !== 0) {
      if (AUTO_RETRY.has(decodeRc(rc).base) && attempt < maxTries) {
        await sleep(Math.min(20 * 2 ** attempt, 1000));
        continue;
      }
      await cleanupFailure(transport, uses);
      throw new TpmError(cmd.code, rc);
    }
    return parseResponse(cmd, response, uses);
  }
}

function responseCode(response: Uint8Array, name: string): number {
  if (response.length < HEADER) throw new SigilError('internal', `TPM2_${name}: response of ${response.length} bytes`);
  const r = new TpmReader(response, `TPM2_${name} response`);
  r.u16();
  const size = r.u32();
  if (size !== response.length)
    throw new SigilError('internal', `TPM2_${name}: response size field ${size} but ${response.length} bytes`);
  return r.u32();
}

function parseResponse<C extends AnyCommand>(cmd: C, response: Uint8Array, uses: SessionUse[]): CommandResult<C> {
  try {
    const r = new TpmReader(response, `TPM2_${cmd.name} response`);
    const tag = r.u16();
    r.u32();
    r.u32();
    const expectTag = uses.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
    if (tag !== expectTag) r.fail(`tag 0x${tag.toString(16)}, expected 0x${expectTag.toString(16)}`);
    const out: Record<string, unknown> = {};
    for (const h of cmd.responseHandles) out[h] = r.u32(h);
    let rp: Uint8Array;
    if (uses.length > 0) {
      rp = r.bytes(r.u32('parameterSize'), 'parameters');
      const auths = uses.map(() => tpmsAuthResponse.read(r));
      r.assertDone();
      uses.forEach((u, i) =>
        u.session.validate(
          { commandCode: cmd.code, parameters: rp, entityName: u.entityName, entityAuth: u.entityAuth },
          auths[i]!,
        ),
      );
      const enc = uses.find((u) => (u.session.attributes & TPMA_SESSION.encrypt) !== 0);
      if (enc) {
        rp = replaceFirstTpm2b(rp, enc.session.decryptResponse(firstTpm2b(rp, cmd.name), enc.entityAuth));
      }
    } else {
      rp = r.rest();
    }
    const pr = new TpmReader(rp, `TPM2_${cmd.name} response parameters`);
    for (const [k, c] of Object.entries(cmd.response)) out[k] = c.read(pr);
    pr.assertDone();
    return out as CommandResult<C>;
  } catch (err) {
    if (err instanceof TpmParseError) {
      throw new SigilError('internal', `the TPM's response is malformed: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/** A failed command leaves its sessions loaded; flush the ones that were meant to end with it. */
async function cleanupFailure(transport: TpmTransport, uses: SessionUse[]): Promise<void> {
  for (const { session } of uses) {
    if (!(session instanceof AuthSession) || session.flushed) continue;
    if ((session.attributes & TPMA_SESSION.continueSession) !== 0) continue;
    try {
      await execute(transport, FlushContext, { flushHandle: session.handle });
    } catch {
      // Best effort: the original error is what the caller needs to see.
    }
    session.markFlushed();
  }
}
