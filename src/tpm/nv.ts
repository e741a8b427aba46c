/**
 * NV index helpers over the NV commands (Part 3 §31): reads and writes chunked by
 * TPM_PT_NV_BUFFER_MAX, and the authorization choice for reading (the index's own authValue
 * when AUTHREAD is set, else the owner).
 */
import { NV_DefineSpace, NV_Read, NV_ReadPublic, NV_UndefineSpace, NV_Write } from './commands/nv.js';
import { TPMA_NV, TPM_ALG, TPM_NT, TPM_RH } from './constants.js';
import type { Tpm2bNvPublic } from './structures/nv.js';
// The facade's `run` only, not the Tpm class: tpm.ts delegates its NV methods here (one direction).
import type { TpmFacade } from './facade.js';

export interface NvIndexInfo {
  index: number;
  public: Tpm2bNvPublic;
  name: Uint8Array;
}

export interface NvDefineOptions {
  /** The index's own authValue. */
  authValue?: Uint8Array;
  /** TPMA_NV bits; default an ordinary index readable and writable by owner and by its authValue. */
  attributes?: number;
  nameAlg?: number;
  authPolicy?: Uint8Array;
  /** TPM_RH_OWNER (default) or TPM_RH_PLATFORM. */
  hierarchy?: number;
  hierarchyAuth?: Uint8Array;
}

/** What the NV helpers need of the Tpm facade. */
type NvTpm = Pick<TpmFacade, 'run'>;

const EMPTY = new Uint8Array(0);

export async function nvReadPublic(tpm: NvTpm, index: number): Promise<NvIndexInfo> {
  const r = await tpm.run(NV_ReadPublic, { nvIndex: index });
  return { index, public: r.nvPublic, name: r.nvName };
}

function readAuthHandle(info: NvIndexInfo): number {
  const a = info.public.value.attributes;
  if (a & TPMA_NV.AUTHREAD) return info.index;
  if (a & TPMA_NV.OWNERREAD) return TPM_RH.OWNER;
  if (a & TPMA_NV.PPREAD) return TPM_RH.PLATFORM;
  return info.index;
}

/** The whole index (its dataSize), read in chunks of at most `chunk` bytes. */
export async function nvRead(
  tpm: NvTpm,
  index: number,
  chunk: number,
  opts: { authHandle?: number; authValue?: Uint8Array },
): Promise<Uint8Array> {
  const info = await nvReadPublic(tpm, index);
  const authHandle = opts.authHandle ?? readAuthHandle(info);
  const auth = {
    handle: authHandle,
    authValue: opts.authValue ?? EMPTY,
    ...(authHandle === index ? { name: info.name } : {}),
  };
  const parts: Uint8Array[] = [];
  const total = info.public.value.dataSize;
  for (let offset = 0; offset < total;) {
    const size = Math.min(chunk, total - offset);
    const { data } = await tpm.run(NV_Read, {
      authHandle: auth,
      nvIndex: { handle: index, name: info.name },
      size,
      offset,
    });
    if (data.length === 0) break;
    parts.push(data);
    offset += data.length;
  }
  return Buffer.concat(parts);
}

export async function nvWrite(
  tpm: NvTpm,
  index: number,
  data: Uint8Array,
  chunk: number,
  opts: { authHandle?: number; authValue?: Uint8Array; offset?: number },
): Promise<void> {
  const info = await nvReadPublic(tpm, index);
  const authHandle = opts.authHandle ?? (info.public.value.attributes & TPMA_NV.AUTHWRITE ? index : TPM_RH.OWNER);
  const base = opts.offset ?? 0;
  for (let at = 0; at < data.length || (at === 0 && data.length === 0);) {
    // The index's Name changes once TPMA_NV_WRITTEN is set: re-read it for each chunk's cpHash.
    const cur = at === 0 ? info : await nvReadPublic(tpm, index);
    const auth = {
      handle: authHandle,
      authValue: opts.authValue ?? EMPTY,
      ...(authHandle === index ? { name: cur.name } : {}),
    };
    const part = data.subarray(at, at + chunk);
    await tpm.run(NV_Write, {
      authHandle: auth,
      nvIndex: { handle: index, name: cur.name },
      data: part,
      offset: base + at,
    });
    at += part.length;
    if (part.length === 0) break;
  }
}

export async function nvDefine(tpm: NvTpm, index: number, size: number, opts: NvDefineOptions): Promise<NvIndexInfo> {
  const attributes =
    opts.attributes ??
    TPM_NT.ORDINARY | TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA;
  await tpm.run(NV_DefineSpace, {
    authHandle: { handle: opts.hierarchy ?? TPM_RH.OWNER, authValue: opts.hierarchyAuth ?? EMPTY },
    auth: opts.authValue ?? EMPTY,
    publicInfo: {
      value: {
        nvIndex: index,
        nameAlg: opts.nameAlg ?? TPM_ALG.SHA256,
        attributes,
        authPolicy: opts.authPolicy ?? EMPTY,
        dataSize: size,
      },
    },
  });
  return nvReadPublic(tpm, index);
}

export async function nvUndefine(tpm: NvTpm, index: number, ownerAuth: Uint8Array): Promise<void> {
  const info = await nvReadPublic(tpm, index);
  await tpm.run(NV_UndefineSpace, {
    authHandle: { handle: TPM_RH.OWNER, authValue: ownerAuth },
    nvIndex: { handle: index, name: info.name },
  });
}
