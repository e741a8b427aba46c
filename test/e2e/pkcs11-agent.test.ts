/**
 * `key_storage: pkcs11` through the real agent process: a token join with the identity key
 * generated on a SoftHSM2 token (initialised here in a temp dir), status showing where the key
 * lives, the key unreadable, a renewal that rotates to a new token key and destroys the old
 * one, a restart that serves the cached identity, and a wrong PIN that changes nothing.
 * The token is inspected with pkcs11js directly (test/helpers/softhsm.ts), not through Sigil.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentStatusJson,
  applyResources,
  createToken,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  writeAgentConfig,
  type RunningIssuer,
} from '../helpers/cli.js';
import {
  initSoftHsmToken,
  listPublicKeyLabels,
  listTokenKeys,
  type SoftHsmToken,
  type TokenKey,
} from '../helpers/softhsm.js';

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' });

/** The uncompressed point (04‖X‖Y) of the certificate's P-256 public key. */
function certPoint(pem: string): Buffer {
  const jwk = new X509Certificate(pem).publicKey.export({ format: 'jwk' });
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
}

/** object= and id= of a pkcs11: URI from `agent status`. */
function uriKey(uri: string): { label: string; id: string } {
  const m = /^pkcs11:token=sigil;object=([^;]+);id=((?:%[0-9a-f]{2})+);type=private$/.exec(uri);
  if (!m) throw new Error(`unexpected key_uri ${uri}`);
  return { label: m[1]!, id: m[2]!.replaceAll('%', '') };
}

const keysWith = (t: SoftHsmToken, prefix: string): TokenKey[] =>
  listTokenKeys(t).filter((k) => k.label.startsWith(`${prefix}-`));

describe('key_storage: pkcs11 through `sigil agent` (SoftHSM2)', () => {
  const tmp = tempDir('sigil-pkcs11-agent-');
  let issuer: RunningIssuer;
  let token: SoftHsmToken;
  const pkcs11Block = (prefix: string, pin: string): string =>
    `key_storage: pkcs11\npkcs11: { module: ${token.module}, token: sigil, ${pin}, key_label_prefix: ${prefix} }\n`;

  beforeAll(async () => {
    token = initSoftHsmToken(join(tmp.path, 'softhsm'));
    issuer = await startIssuer(tmp.path);
    await applyResources(issuer, tmp.path);
  }, 60_000);
  afterAll(async () => {
    await issuer?.stop();
    tmp.cleanup();
  });

  it('joins with a token key, reports pkcs11/not exportable, rotates the key on renewal, serves the cache after a restart, and a wrong PIN changes nothing', async () => {
    const a = writeAgentConfig(tmp.path, 'gw1', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: pkcs11Block('gw1', `pin_file: ${token.pinFile}`),
    });
    const svid = join(a.outDir, 'svid.pem');

    // Join: the identity key is generated on the token.
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined).toMatchObject({ result: 'joined', key_storage: 'pkcs11', exportable: false, generation: 1 });
    const st = await agentStatusJson(['--config', a.config]);
    // Where the key lives as the agent knows it; the issuer could not verify the token, so it recorded software.
    expect(st).toMatchObject({
      serial: joined.serial,
      key_storage: 'pkcs11',
      exportable: false,
      issuer_key_storage: 'software',
      issuer_exportable: true,
      generation: 1,
    });
    const first = uriKey(st.key_uri);
    expect(first.label).toMatch(/^gw1-[0-9a-f]{12}$/);

    const [k1, ...others] = keysWith(token, 'gw1');
    expect(others).toEqual([]);
    expect(k1).toMatchObject({
      label: first.label,
      id: first.id,
      sensitive: true,
      extractable: false,
      neverExtractable: true,
    });
    // C_GetAttributeValue(CKA_VALUE): the private key cannot be read out.
    expect(k1!.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(k1!.publicPoint!.equals(certPoint(readFileSync(svid, 'utf8')))).toBe(true);
    // No key file for workloads (the key has no file form), and the SVID verifies.
    expect(existsSync(join(a.outDir, 'svid.key'))).toBe(false);
    expect(openssl('verify', '-CAfile', join(a.outDir, 'bundle.pem'), '-untrusted', svid, svid)).toContain(': OK');
    // The PIN is in no output and not in the agent database.
    expect(JSON.stringify(st)).not.toContain(token.pin);
    expect(readFileSync(join(a.dataDir, 'agent.db')).includes(token.pin)).toBe(false);

    // Renewal: a new key on the token, the certificate bound to it, the old key pair destroyed.
    const renewed = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(renewed).toMatchObject({ result: 'renewed', key_storage: 'pkcs11', exportable: false, generation: 2 });
    const st2 = await agentStatusJson(['--config', a.config]);
    expect(st2).toMatchObject({ serial: renewed.serial, key_storage: 'pkcs11', exportable: false, generation: 2 });
    const second = uriKey(st2.key_uri);
    expect(second.label).not.toBe(first.label);
    const after = keysWith(token, 'gw1');
    expect(after.map((k) => k.label)).toEqual([second.label]);
    expect(listPublicKeyLabels(token)).not.toContain(first.label);
    expect(after[0]).toMatchObject({
      id: second.id,
      sensitive: true,
      extractable: false,
      valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
    });
    expect(after[0]!.publicPoint!.equals(certPoint(readFileSync(svid, 'utf8')))).toBe(true);
    expect(openssl('x509', '-in', svid, '-noout', '-serial').trim().toLowerCase()).toBe(`serial=${renewed.serial}`);

    // Restart: the key is found again from the reference in agent.db; nothing is due, the cache is served.
    const again = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(again).toMatchObject({
      result: 'none',
      serial: renewed.serial,
      key_storage: 'pkcs11',
      exportable: false,
      generation: 2,
    });
    expect(keysWith(token, 'gw1').map((k) => k.label)).toEqual([second.label]);

    // A wrong PIN: a coded configuration error naming the PIN file (not the PIN), and nothing changes.
    writeFileSync(token.pinFile, '999999-not-it\n');
    try {
      const wrong = await sigil(['agent', 'renew', '--config', a.config]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toMatch(/^error\[config_invalid\]: .*CKR_PIN_INCORRECT.*the PIN file /m);
      expect(wrong.stderr).not.toContain('999999');
    } finally {
      writeFileSync(token.pinFile, `${token.pin}\n`);
    }
    const st3 = await agentStatusJson(['--config', a.config]);
    expect(st3).toMatchObject({ serial: renewed.serial, generation: 2, key_uri: st2.key_uri, pending_request: null });
    expect(keysWith(token, 'gw1').map((k) => k.label)).toEqual([second.label]);
    const inst = (await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'instances', 'ls'])).find(
      (i: { id: string }) => i.id === st.instance_id,
    );
    expect(inst).toMatchObject({ generation: 2, serial: renewed.serial, locked: false });

    // With the right PIN again the agent renews as before.
    const third = await sigilJson(['agent', 'renew', '--config', a.config]);
    expect(third).toMatchObject({ result: 'renewed', generation: 3 });
    const current = keysWith(token, 'gw1');
    expect(current).toHaveLength(1);

    // A refused renewal: the key made for it is destroyed, the current one stays.
    await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'lock', st.instance_id, '--reason', 'test']);
    const locked = await sigil(['agent', 'renew', '--config', a.config]);
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/^error\[instance_locked\]/m);
    expect(keysWith(token, 'gw1').map((k) => k.label)).toEqual([current[0]!.label]);
    expect(await agentStatusJson(['--config', a.config])).toMatchObject({
      serial: third.serial,
      pending_request: null,
    });
    await sigilJson(['ctl', '--data-dir', issuer.dataDir, 'unlock', st.instance_id]);
    expect(await sigilJson(['agent', 'renew', '--config', a.config])).toMatchObject({
      result: 'renewed',
      generation: 4,
    });
    expect(keysWith(token, 'gw1')).toHaveLength(1);
  });

  it('killed at each point of a renewal, the next run completes it and the token ends with exactly the current key', async () => {
    const a = writeAgentConfig(tmp.path, 'gw3', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: pkcs11Block('gw3', `pin_file: ${token.pinFile}`),
    });
    expect(await sigilJson(['agent', 'run', '--config', a.config, '--once'])).toMatchObject({ result: 'joined' });
    for (const point of ['after_persist', 'after_send', 'after_response', 'during_output']) {
      const before = await agentStatusJson(['--config', a.config]);
      // during_output: a token key has no key file, so the set is two files; kill before the second rename.
      const killed = await sigil(['agent', 'renew', '--config', a.config], {
        env: { SIGIL_TEST_CRASH_AT: point, SIGIL_TEST_CRASH_RENAME: '1' },
      });
      expect(killed.code, `${point}: the agent should have been killed (stderr: ${killed.stderr})`).toBe(-1);
      // The identity in use keeps its key on the token, whatever point the kill hit.
      const labels = keysWith(token, 'gw3').map((k) => k.label);
      const current = (await agentStatusJson(['--config', a.config])).key_uri;
      expect(labels, point).toContain(uriKey(current).label);
      if (point !== 'during_output') expect(current, point).toBe(before.key_uri);

      // The next run resends the pending request and retires the old key. After during_output the
      // renewal is done; renewing once more must still retire the key that renewal replaced.
      const next = await sigilJson([
        'agent',
        point === 'during_output' ? 'renew' : 'run',
        '--config',
        a.config,
        ...(point === 'during_output' ? [] : ['--once']),
      ]);
      expect(next.result, point).toBe('renewed');
      const st = await agentStatusJson(['--config', a.config]);
      expect(st, point).toMatchObject({
        generation: before.generation + (point === 'during_output' ? 2 : 1),
        key_storage: 'pkcs11',
        exportable: false,
        pending_request: null,
      });
      const keys = keysWith(token, 'gw3');
      expect(
        keys.map((k) => k.label),
        point,
      ).toEqual([uriKey(st.key_uri).label]);
      expect(keys[0]!.publicPoint!.equals(certPoint(readFileSync(join(a.outDir, 'svid.pem'), 'utf8'))), point).toBe(
        true,
      );
    }
  });

  it('pin_env: a wrong PIN refuses the join before anything is sent (the token is not spent, no key is left on the token)', async () => {
    const joinToken = await createToken(issuer);
    const a = writeAgentConfig(tmp.path, 'gw2', {
      url: issuer.url,
      pin: issuer.pin,
      token: joinToken,
      extra: pkcs11Block('gw2', 'pin_env: SIGIL_TEST_PKCS11_PIN'),
    });

    const unset = await sigil(['agent', 'run', '--config', a.config, '--once'], { env: { SIGIL_TEST_PKCS11_PIN: '' } });
    expect(unset.code).toBe(2);
    expect(unset.stderr).toMatch(/^error\[config_invalid\]: .*SIGIL_TEST_PKCS11_PIN.*not set/m);

    const wrong = await sigil(['agent', 'run', '--config', a.config, '--once'], {
      env: { SIGIL_TEST_PKCS11_PIN: '999999-not-it' },
    });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/^error\[config_invalid\]: .*CKR_PIN_INCORRECT.*\$SIGIL_TEST_PKCS11_PIN/m);
    expect(wrong.stderr).not.toContain('999999');
    expect(keysWith(token, 'gw2')).toEqual([]);
    expect((await agentStatusJson(['--config', a.config])).state).toBe('not_joined');

    // The same one-time token still works: it was never sent.
    const ok = await sigil(['agent', 'run', '--config', a.config, '--once', '--format', 'json'], {
      env: { SIGIL_TEST_PKCS11_PIN: token.pin },
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ result: 'joined', key_storage: 'pkcs11', exportable: false });
    expect(keysWith(token, 'gw2')).toHaveLength(1);
  });

  it('refuses key_storage: pkcs11 with the tpm join, and a pkcs11 block without its PIN source', async () => {
    const tpm = join(tmp.path, 'tpm-pkcs11.yaml');
    writeFileSync(
      tpm,
      `issuer: ${issuer.url}\nca_pin: ${issuer.pin}\ndata_dir: ${join(tmp.path, 'tpm-data')}\njoin: { method: tpm, tpm: {} }\n${pkcs11Block('x', `pin_file: ${token.pinFile}`)}`,
    );
    const r = await sigil(['agent', 'run', '--config', tpm, '--once']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error\[config_invalid\]: .*key_storage: pkcs11 cannot be used with join\.method tpm/m);

    const nopin = writeAgentConfig(tmp.path, 'nopin', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: `key_storage: pkcs11\npkcs11: { module: ${token.module}, token: sigil }\n`,
    });
    const r2 = await sigil(['agent', 'run', '--config', nopin.config, '--once']);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/^error\[config_invalid\]: .*pkcs11: give exactly one of pin_file .* or pin_env/m);
  });
});
