/**
 * TPM access, when the agent needs a TPM (join.method tpm, key_storage tpm, or an x509 join
 * whose device key is a TPM key): the TCTI opens, an EK is there (a persistent EK at
 * 0x81010001 / 0x81010016, else its certificate in NV — what the tpm join proves itself with),
 * and the storage hierarchy works (a persistent SRK at 0x81000001 loads, else an ECC SRK is
 * created and flushed at once: swtpm has no resource manager and runs out of object slots on
 * anything left behind). For an x509 TPM key, the key at its persistent handle is read too.
 *
 * The timeout is generous: CreatePrimary takes 50–200 ms on real chips (ARCHITECTURE "Facts").
 */
import type { AgentConfig } from '../../agent/config.js';
import { parseSwtpmConf } from '../../tpm/transport/open.js';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { AgentDoctorContext } from './context.js';

const EK_HANDLES = [0x81010001, 0x81010016, 0x81010002] as const;
const SRK_PERSISTENT = 0x81000001;
const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

interface TpmNeed {
  tcti: string;
  why: string;
  /** An x509 device key at a persistent handle. */
  deviceKey?: number;
}

/** Whether and why this config uses a TPM, and through which TCTI. */
export async function tpmNeed(cfg: AgentConfig): Promise<TpmNeed | undefined> {
  if (cfg.join.method === 'tpm') {
    const { tpmTcti } = await import('../../join/tpm/config.js');
    return { tcti: tpmTcti(cfg.join.settings as { tcti?: string }), why: 'join.method tpm' };
  }
  if (cfg.keyStorage === 'tpm' && cfg.tpmTcti) return { tcti: cfg.tpmTcti, why: 'key_storage tpm' };
  if (cfg.join.method === 'x509') {
    const s = cfg.join.settings as { key_uri?: unknown; tpm?: { handle?: unknown; tcti?: unknown } };
    if (s.tpm === undefined && !(typeof s.key_uri === 'string' && s.key_uri.startsWith('tpm:'))) return undefined;
    const { tpmKeyRefFromConfig } = await import('../../join/x509/config.js');
    const ref = tpmKeyRefFromConfig(s as Parameters<typeof tpmKeyRefFromConfig>[0]);
    if (ref) return { tcti: ref.tcti, why: 'join.x509 TPM key', deviceKey: ref.handle };
  }
  return undefined;
}

/**
 * Whether the TCTI reaches the TPM over TCP: a port any local user can connect to, unlike the
 * device (file permissions), a Unix socket (its mode) or tabrmd (D-Bus policy). Parsed as the
 * transports parse it (tpm/transport/open.ts): the name trimmed, swtpm's options through
 * parseSwtpmConf (an empty `path=` is no path), and a loader name as tctildr accepts it
 * (`libtss2-tcti-mssim.so.0`, `tcti-mssim`, `mssim` are one TCTI). swtpm and mssim are TCP unless
 * given a non-empty `path=`; `pcap:` wraps another TCTI, judged in turn.
 */
export function overTcp(tcti: string): boolean {
  const t = tcti.trim();
  const colon = t.indexOf(':');
  const rawName = (colon < 0 ? t : t.slice(0, colon)).trim();
  const conf = colon < 0 ? '' : t.slice(colon + 1);
  const name = rawName
    .replace(/^.*\//, '')
    .replace(/^libtss2-/, '')
    .replace(/^tcti-/, '')
    .replace(/\.so(\.\d+)*$/, '');
  if (name === 'pcap') return overTcp(conf);
  if (name !== 'swtpm' && name !== 'mssim') return false;
  try {
    return !('path' in parseSwtpmConf(conf));
  } catch {
    // Options the built-in parser does not know (tctildr may): TCP unless a path is named.
    return !/(^|,)\s*path\s*=\s*[^,\s]/.test(conf);
  }
}

/** Whether Tpm.open reaches this TCTI through libtss2-tctildr (tpm/transport/open.ts) rather than a built-in transport. */
function viaTctiLoader(tcti: string): boolean {
  return process.env.SIGIL_TPM_NATIVE === '1' || !/^(swtpm|device)(:|$)/.test(tcti.trim());
}

async function unavailable(tcti: string, e: unknown): Promise<CheckOutcome> {
  const msg = (e as Error)?.message ?? String(e);
  if (viaTctiLoader(tcti)) {
    // The loader missing is an install away; say which package rather than "is tabrmd running?".
    const { tctiLoaderStatus } = await import('#native/check.js');
    const loader = tctiLoaderStatus();
    if (!loader.present)
      return fail(
        `cannot use the TPM through ${tcti}: ${loader.library} is missing (${loader.detail})`,
        `install ${loader.install}`,
      );
  }
  const fix = tcti.startsWith('device')
    ? `check that ${tcti.slice(7) || '/dev/tpmrm0'} exists and that the agent's user may open it (ls -l /dev/tpmrm0; usermod -aG tss <user>), or set join.tpm.tcti`
    : tcti.startsWith('swtpm')
      ? `start the TPM (simulator) listening at ${tcti}, or set join.tpm.tcti to where it listens`
      : `check the TCTI ${tcti} (tpm2-abrmd running? TPM2TOOLS_TCTI=${tcti} tpm2_getcap properties-fixed), or set join.tpm.tcti`;
  return fail(`cannot use the TPM through ${tcti}: ${msg}`, fix);
}

export const tpmCheck = (need: TpmNeed): Check<AgentDoctorContext> => ({
  name: 'tpm',
  timeoutMs: 15_000,
  async run(ctx, signal) {
    const [{ Tpm }, { readEkCertificate }, { TPM_RC, isTpmRc }] = await Promise.all([
      import('../../tpm/tpm.js'),
      import('../../tpm/ek.js'),
      import('../../tpm/errors.js'),
    ]);
    let tpm: InstanceType<typeof Tpm>;
    try {
      tpm = await Tpm.open(need.tcti, { timeoutMs: 10_000 });
    } catch (e) {
      return await unavailable(need.tcti, e);
    }
    const closed = tpm.close.bind(tpm);
    ctx.onClose(closed);
    signal.addEventListener('abort', () => void closed().catch(() => undefined));
    const absent = (e: unknown): boolean => isTpmRc(e, TPM_RC.HANDLE);
    const persistent = async (h: number): Promise<boolean> => {
      try {
        await tpm.readPublic(h);
        return true;
      } catch (e) {
        if (absent(e)) return false;
        throw e;
      }
    };
    try {
      const found: string[] = [];
      let ek: string | undefined;
      for (const h of EK_HANDLES) if (!ek && (await persistent(h))) ek = `EK at ${hex(h)}`;
      const cert = await readEkCertificate(tpm);
      if (cert) found.push(`EK certificate (${cert.kind}) in NV ${hex(cert.nvIndex)}`);
      if (!ek && !cert) {
        return fail(
          `${need.tcti} opens, but there is no EK at ${EK_HANDLES.map(hex).join('/')} and no EK certificate in NV`,
          "provision the EK (tpm2_createek -c 0x81010001; the manufacturer's EK certificate belongs in NV 0x01c00002), or use another join method",
        );
      }
      if (ek) found.unshift(ek);
      if (await persistent(SRK_PERSISTENT)) found.push(`SRK persisted at ${hex(SRK_PERSISTENT)}`);
      else {
        const t0 = Date.now();
        const srk = await tpm.createSrk();
        await tpm.flush(srk.handle);
        found.push(`SRK created and flushed in ${Date.now() - t0} ms`);
      }
      if (need.deviceKey !== undefined) {
        if (!(await persistent(need.deviceKey)))
          return fail(
            `no key at ${hex(need.deviceKey)} (the x509 device key)`,
            'provision it (sigil factory provision) or fix join.x509.tpm.handle / key_uri',
          );
        found.push(`device key at ${hex(need.deviceKey)}`);
      }
      const detail = `${need.tcti} (${need.why}): ${found.join(', ')}`;
      // docs/security.md "The TPM's door is the agent's TCTI": a TCP TCTI has no access control.
      if (overTcp(need.tcti))
        return warn(
          `${detail}; but ${need.tcti} is a TCP port every local user can send TPM commands to (a tpm join of their own gets this machine's instance)`,
          'outside tests use device:/dev/tpmrm0 (group tss), or swtpm:path=<unix socket> with mode 0600',
        );
      return ok(detail);
    } catch (e) {
      if (signal.aborted) throw e;
      const msg = (e as Error)?.message ?? String(e);
      // Lockout or an owner password: the storage hierarchy is not ours to use as it is.
      return fail(
        `${need.tcti} opens, but the TPM refused: ${msg}`,
        'check the owner hierarchy (tpm2_getcap properties-variable: lockoutCounter, ownerAuthSet); Sigil needs an empty owner auth to create its SRK',
      );
    } finally {
      await closed().catch(() => undefined);
    }
  },
});
