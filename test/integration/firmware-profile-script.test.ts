/**
 * scripts/firmware-profile-from-pcrs.sh against a real swtpm: after the harness's simulated
 * boot, the profile it makes from `tpm2_pcrread` loads with the issuer's loader
 * (loadFirmwareProfiles), pins exactly the TPM's values (the shipped lab-gateway-v1 values for
 * the default boot), accepts that boot and refuses another one; the same from a saved
 * tpm2_pcrread output; and its refusals (bank not allocated, bad name, existing file).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateProfile, loadFirmwareProfiles } from '../../src/attest/firmware/index.js';
import { readPcrs, simulateBoot, startSwtpm, tpm2Tool, type SwtpmInstance } from '../helpers/swtpm.js';

const exec = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'firmware-profile-from-pcrs.sh');
const work = mkdtempSync(join(tmpdir(), 'sigil-fwprofile-test-'));

async function script(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = execFile('bash', [SCRIPT, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) p.stdin!.end(input);
    else p.stdin!.end();
  });
}

describe('scripts/firmware-profile-from-pcrs.sh', () => {
  let tpm: SwtpmInstance;
  beforeAll(async () => {
    tpm = await startSwtpm({ ekCerts: false });
    await simulateBoot(tpm);
  });
  afterAll(async () => {
    await tpm?.destroy();
    rmSync(work, { recursive: true, force: true });
  });

  it('makes a profile from tpm2_pcrread on a swtpm that the issuer loads and that matches that boot only', async () => {
    const dir = join(work, 'profiles');
    await exec('mkdir', ['-p', dir]);
    const out = join(dir, 'swtpm-gw.yaml');
    const r = await script(
      ['--name', 'swtpm-gw', '--pcrs', '0,4,7', '--description', 'lab "gateway" on swtpm', '--out', out],
      tpm.env,
    );
    expect(r.stderr).toContain(`wrote ${out} (3 PCRs, sha256)`);
    // Checked with the issuer's own parser (the built dist/), not skipped.
    expect(r.stderr).not.toContain('profile not checked');
    expect(r.code).toBe(0);

    const profiles = loadFirmwareProfiles(dir);
    const p = profiles.get('swtpm-gw')!;
    expect(p.pcrBank).toBe('sha256');
    expect(p.description).toBe('lab "gateway" on swtpm');
    expect([...p.pcrs.keys()]).toEqual([0, 4, 7]);
    const actual = await readPcrs(tpm, 'sha256', [0, 4, 7]);
    for (const [pcr, v] of actual) expect(p.pcrs.get(pcr)).toEqual([v.toString('hex')]);

    // The harness's default boot is the one the shipped example profile pins.
    const shipped = loadFirmwareProfiles(join(ROOT, 'firmware-profiles')).get('lab-gateway-v1')!;
    for (const pcr of [0, 4, 7]) expect(shipped.pcrs.get(pcr)).toContain(p.pcrs.get(pcr)![0]);

    expect(evaluateProfile(p, { pcrs: actual }).ok).toBe(true);
    await tpm2Tool(tpm, 'tpm2_pcrextend', [`7:sha256=${'ab'.repeat(32)}`]);
    const changed = evaluateProfile(p, { pcrs: await readPcrs(tpm, 'sha256', [0, 4, 7]) });
    expect(changed.ok).toBe(false);
    expect(changed.ok === false && changed.check).toBe('pcr_value');
    expect(changed.ok === false && changed.pcr).toBe(7);
  });

  it('reads a saved tpm2_pcrread output (file or stdin) and writes to stdout', async () => {
    const saved = (await tpm2Tool(tpm, 'tpm2_pcrread', ['sha256:0,1,2,3,4,5,6,7,10'])).stdout;
    writeFileSync(join(work, 'gw.pcrs'), saved);
    const fromFile = await script(['--name', 'from-file', '--from', join(work, 'gw.pcrs')], {
      TPM2TOOLS_TCTI: 'swtpm:host=127.0.0.1,port=1',
    });
    expect(fromFile.code).toBe(0);
    // Every PCR in the saved output (10 included: --pcrs not given), values as tpm2_pcrread printed them.
    const dir = join(work, 'saved');
    await exec('mkdir', ['-p', dir]);
    writeFileSync(join(dir, 'p.yaml'), fromFile.stdout);
    const p = loadFirmwareProfiles(dir).get('from-file')!;
    expect([...p.pcrs.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 10]);

    const fromStdin = await script(['--name', 'from-stdin', '--from', '-', '--pcrs', '4,7'], {}, saved);
    expect(fromStdin.code).toBe(0);
    expect(fromStdin.stdout).toMatch(/pcrs:\n {2}"4":\n {4}- "[0-9a-f]{64}"\n {2}"7":\n {4}- "[0-9a-f]{64}"\n$/);

    const missing = await script(['--name', 'x', '--from', '-', '--pcrs', '0,9'], {}, saved);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('PCR 9 is not in the sha256 values');
  });

  it('refuses a bank the TPM has not allocated, a bad name, and an existing file', async () => {
    const sha1 = await script(['--name', 'x', '--bank', 'sha1'], tpm.env);
    expect(sha1.code).toBe(2);
    expect(sha1.stderr).toContain('no sha1 PCR values');
    expect(sha1.stderr).toContain('tpm2_getcap pcrs');

    const name = await script(['--name', 'Bad Name'], tpm.env);
    expect(name.code).toBe(2);
    expect(name.stderr).toContain('--name Bad Name');

    const out = join(work, 'exists.yaml');
    writeFileSync(out, 'keep me\n');
    const exists = await script(['--name', 'x', '--out', out], tpm.env);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toContain('exists (--force to replace it)');
    expect(readFileSync(out, 'utf8')).toBe('keep me\n');
    const forced = await script(['--name', 'x', '--out', out, '--force'], tpm.env);
    expect(forced.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toContain('name: x\n');
  });
});
