/**
 * Rotations in progress (`sigil server rotate-key`, server/rotating-keys.ts): a staged key is
 * published but signs nothing until it is activated, so one forgotten for days means a rotation
 * that never happened. Reports each staged key's age (ready to activate after 25 h), each retired
 * key still published, and a list the issuer would refuse to start with.
 */
import { basename } from 'node:path';
import { fail, ok, warn, type Check, type CheckOutcome } from '../types.js';
import type { IssuerDoctorContext } from './context.js';

/** A staged key older than this is a rotation someone forgot. */
export const STAGED_TOO_LONG_MS = 7 * 86_400_000;

export const keyRotationCheck: Check<IssuerDoctorContext> = {
  name: 'key_rotation',
  async run(ctx): Promise<CheckOutcome> {
    const { keyId, outOfServiceMessage, readRotatingKeys, rotatingKeysPath, signingKeysOutOfService, spkiBase64 } =
      await import('../../server/rotating-keys.js');
    const { DEFAULT_OVERLAP_S } = await import('../../server/rotate-key.js');
    const { toSigilError } = await import('../../errors.js');
    let keys;
    try {
      keys = readRotatingKeys(ctx.dataDir);
    } catch (e) {
      const err = toSigilError(e);
      return fail(
        `${err.code}: ${err.message}`,
        `the issuer will not start with it: restore ${rotatingKeysPath(ctx.dataDir)} from the backup, or remove it (no staged or retired key is published then)`,
      );
    }
    const now = ctx.now();
    // The store's memory of withdrawn keys too, as a start reads it (server/withdrawn-keys.ts): a
    // ca/ restored from before a compromise, or a peer whose files the rotation has not reached.
    const inStore = await rememberedWithdrawals(ctx.dataDir);
    const { spkiSha256, storeWithdrawalMessage, withdrawnSigningKeys } = await import('../../server/withdrawn-keys.js');
    const storeRows = inStore.rows ?? [];
    const rememberedIds = new Set(storeRows.map((r) => `${r.kind}:${r.spkiSha256}`));
    const { credentialKeyPaths } = await import('../../server/credential-keys.js');
    const { readPrivateKeyFile } = await import('../../server/key-file.js');
    const { existsSync } = await import('node:fs');
    const keyFiles = credentialKeyPaths(ctx.dataDir);
    const fileOf = { jwt: keyFiles.jwtSigning, 'ssh-user': keyFiles.sshUserCa, 'ssh-host': keyFiles.sshHostCa };
    // The signing keys must not be keys the list took out of service (a directory that missed a step).
    // (Missing key files are the start's to create and the data_dir/ca checks' to report.)
    if (Object.values(fileOf).every((f) => existsSync(f))) {
      // Every key out of service, not only the first: a compromise often rotates all three.
      let out;
      try {
        out = signingKeysOutOfService(
          {
            jwt: readPrivateKeyFile(fileOf.jwt),
            'ssh-user': readPrivateKeyFile(fileOf['ssh-user']),
            'ssh-host': readPrivateKeyFile(fileOf['ssh-host']),
          },
          keys,
          now,
        );
      } catch (e) {
        const err = toSigilError(e);
        return fail(`${err.code}: ${err.message}`, 'see the data_dir and ca checks');
      }
      const fromStore = withdrawnSigningKeys(
        Object.fromEntries(
          (['jwt', 'ssh-user', 'ssh-host'] as const).map((k) => [k, readPrivateKeyFile(fileOf[k])]),
        ) as Parameters<typeof withdrawnSigningKeys>[0],
        storeRows,
      ).filter((w) => !out.some((o) => o.kind === w.kind));
      if (out.length > 0 || fromStore.length > 0)
        return fail(
          `config_invalid: ${[
            ...out.map((o) => outOfServiceMessage(ctx.dataDir, o, keys)),
            ...fromStore.map((w) => storeWithdrawalMessage(ctx.dataDir, w)),
          ].join('; ')}`,
          'copy ca/rotating-keys.json first, then the key files, from the issuer where sigil server rotate-key ran (same modes); a running issuer reads them within ~10 s (or: systemctl reload sigil-server)',
        );
    }
    const live = keys.filter(
      (k) =>
        k.state !== 'withdrawn' && k.trustedUntil > now && !rememberedIds.has(`${k.kind}:${spkiSha256(k.publicKey)}`),
    );
    // A staged key file no list entry publishes: an activation or a cancel copied without its removal.
    const leftover = (Object.keys(fileOf) as Array<keyof typeof fileOf>).filter(
      (kind) => existsSync(`${fileOf[kind]}.next`) && !live.some((k) => k.kind === kind && k.state === 'next'),
    );
    if (leftover.length > 0)
      return warn(
        `${leftover.map((kind) => `${fileOf[kind]}.next`).join(', ')}: a staged key no rotation publishes (left by an activation or a cancel on another issuer)`,
        `rm ${leftover.map((kind) => `${fileOf[kind]}.next`).join(' ')}`,
      );
    // Withdrawn keys are never published, but remembered: say so, or "nothing in progress" reads
    // as if the compromise rotation had left no trace (found walking the runbook).
    const withdrawn = keys.filter((k) => k.state === 'withdrawn' && k.trustedUntil > now);
    const memory = [
      ...(withdrawn.length > 0
        ? [
            `${withdrawn.length} withdrawn key${withdrawn.length > 1 ? 's' : ''} (${[...new Set(withdrawn.map((k) => k.kind))].join(', ')}) remembered until ${new Date(Math.max(...withdrawn.map((k) => k.trustedUntil))).toISOString()}`,
          ]
        : []),
      ...(storeRows.length > 0
        ? [
            `the store remembers ${storeRows.length} withdrawn key${storeRows.length > 1 ? 's' : ''} (${[...new Set(storeRows.map((r) => r.kind))].join(', ')})`,
          ]
        : []),
    ];
    const remembered =
      memory.length > 0
        ? `${memory.join('; ')}: an issuer still holding one halts it and refuses to start with it`
        : undefined;
    if (live.length === 0)
      return ok(remembered ? `no key rotation in progress; ${remembered}` : 'no key rotation in progress');
    const hours = (ms: number) => `${(ms / 3_600_000).toFixed(1)} h`;
    const parts: string[] = [];
    const stale: string[] = [];
    for (const k of live) {
      if (k.state === 'next') {
        // An activation signs with this file: it must be here (a peer issuer given only the list
        // has none) and be the key the list has been publishing.
        const next = `${fileOf[k.kind]}.next`;
        // The signing key file already is the staged key: an activation whose key file was copied
        // before its list (runbook: list first). The list is what is missing, not the .next file,
        // which the activation removed on the issuer where it ran (found walking the docs).
        if (existsSync(fileOf[k.kind]) && spkiBase64(readPrivateKeyFile(fileOf[k.kind])) === spkiBase64(k.publicKey))
          return fail(
            `${k.kind}: ${fileOf[k.kind]} is the key ${rotatingKeysPath(ctx.dataDir)} publishes as next: an activation's key file arrived before its list`,
            `copy ca/rotating-keys.json (0600) from the issuer where sigil server rotate-key ran; a running issuer keeps its previous keys until then and reads it within ~10 s (or: systemctl reload sigil-server)`,
          );
        let problem: string | undefined;
        try {
          if (spkiBase64(readPrivateKeyFile(next)) !== spkiBase64(k.publicKey))
            problem = 'is not the key the list publishes as next';
        } catch (e) {
          problem = toSigilError(e).message;
        }
        if (problem)
          return fail(
            `${k.kind}: a next key is published but ${next} ${problem.startsWith('is not') ? problem : `cannot be used (${problem})`}`,
            `copy ca/${basename(next)} (0600) from the issuer where it was staged; or drop the stage there (sigil server rotate-key --data-dir DIR --key ${k.kind} --cancel) and copy its ca/rotating-keys.json here`,
          );
        const age = now - k.since;
        const ready = age >= DEFAULT_OVERLAP_S * 1000;
        parts.push(`${k.kind}: next key staged ${hours(age)} ago${ready ? ' (ready to activate)' : ''}`);
        if (age > STAGED_TOO_LONG_MS) stale.push(k.kind);
      } else
        parts.push(
          `${k.kind}: retired key ${keyId(k.publicKey, k.kind)} published until ${new Date(k.trustedUntil).toISOString()}`,
        );
    }
    if (remembered) parts.push(remembered);
    if (stale.length > 0)
      return warn(
        parts.join('; '),
        stale
          .map((kind) => `sigil server rotate-key --data-dir ${ctx.dataDir} --key ${kind}   # or --cancel`)
          .join('\n'),
      );
    return ok(parts.join('; '));
  },
};

/**
 * The store's withdrawn keys, or why they could not be read (a PostgreSQL issuer without
 * SIGIL_STORE: the store check says so); never throws.
 */
async function rememberedWithdrawals(
  dataDir: string,
): Promise<{ rows?: import('../../server/store/types.js').WithdrawnKeyRecord[] }> {
  const { openIssuerStores } = await import('../../server/data-dir.js');
  let stores;
  try {
    stores = openIssuerStores(dataDir);
  } catch {
    return {};
  }
  try {
    return { rows: await stores.admin.withdrawnKeys() };
  } catch {
    return {};
  } finally {
    await stores.close().catch(() => undefined);
  }
}
