/**
 * `sigil factory`: provisioning device identities on a production line (docs/factory.md).
 *
 *   sigil factory init-ca   --out DIR [--pkcs11-module M --token-label L --pin-file F]
 *   sigil factory provision --tpm TCTI --ca-cert F (--ca-key F | --ca-key-uri pkcs11:… --pin-file F)
 *                           --serial S --out manifest.jsonl [--cert-out DIR] [--nv-index I] [--force]
 *   sigil factory batch     --csv devices.csv [--tpm TCTI] --ca-cert F … --out manifest.jsonl
 *
 * PINs come from a file or an environment variable only, never from the command line.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { SigilError } from '../errors.js';
import { runBatch, parseBatchCsv } from '../factory/batch.js';
import { openFactoryCa, type FactoryCa, type FactoryCaKey } from '../factory/ca.js';
import type { IdevidProfile } from '../factory/idevid.js';
import { initFactoryCa } from '../factory/init-ca.js';
import { createProgress } from '../factory/progress.js';
import { DEFAULT_IDEVID_HANDLE, provisionDevice } from '../factory/provision.js';
import { EK_KINDS, type EkKind } from '../tpm/ek.js';
import { Tpm } from '../tpm/tpm.js';
import { parseFormat, printJson, printKv, printTable } from './output.js';

type Run = (fn: () => Promise<void> | void) => Promise<void>;

interface CaOpts {
  caCert: string;
  caKey?: string;
  caKeyUri?: string;
  pinFile?: string;
  pinEnv?: string;
  pkcs11Module?: string;
}

interface DeviceOpts extends CaOpts {
  out: string;
  certOut?: string;
  handle?: string;
  nvIndex?: string;
  force?: boolean;
  tss2Key?: boolean;
  ekKind?: string;
  ekCaFile?: string[];
  cnTemplate?: string;
  sanUri?: string;
  org?: string;
  validityYears?: string;
  format?: string;
}

function parseHandle(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(v))
    throw new SigilError('bad_request', `${what} "${v}" is not a number (e.g. 0x81000100)`);
  return Number(v);
}

function caSource(o: CaOpts): { certFile: string; key: FactoryCaKey } {
  if ((o.caKey === undefined) === (o.caKeyUri === undefined))
    throw new SigilError('bad_request', 'give exactly one of --ca-key FILE or --ca-key-uri "pkcs11:…"');
  if (o.caKey !== undefined) return { certFile: o.caCert, key: { keyFile: o.caKey } };
  return {
    certFile: o.caCert,
    key: {
      keyUri: o.caKeyUri!,
      ...(o.pinFile !== undefined ? { pinFile: resolve(o.pinFile) } : {}),
      ...(o.pinEnv !== undefined ? { pinEnv: o.pinEnv } : {}),
      ...(o.pkcs11Module !== undefined ? { module: o.pkcs11Module } : {}),
    },
  };
}

function profileOf(o: DeviceOpts): IdevidProfile {
  const years = o.validityYears === undefined ? undefined : Number(o.validityYears);
  return {
    ...(o.cnTemplate !== undefined ? { cnTemplate: o.cnTemplate } : {}),
    ...(o.sanUri !== undefined ? { sanUriTemplate: o.sanUri } : {}),
    ...(o.org !== undefined ? { organization: o.org } : {}),
    ...(years !== undefined ? { validityYears: years } : {}),
  };
}

function ekKindOf(v: string | undefined): EkKind | undefined {
  if (v === undefined) return undefined;
  if (!(EK_KINDS as readonly string[]).includes(v))
    throw new SigilError('bad_request', `--ek-kind must be one of ${EK_KINDS.join(', ')}`);
  return v as EkKind;
}

/** What provision and batch share: CA, manifest, certificate directory, TPM layout, profile. */
function deviceOptions(o: DeviceOpts, ca: FactoryCa) {
  const manifest = resolve(o.out);
  const handle = parseHandle(o.handle, '--handle');
  const nvIndex = parseHandle(o.nvIndex, '--nv-index');
  const ekKind = ekKindOf(o.ekKind);
  return {
    ca,
    manifest,
    certDir: resolve(o.certOut ?? join(dirname(manifest), 'idevid')),
    profile: profileOf(o),
    force: o.force === true,
    tss2Key: o.tss2Key === true,
    ...(handle !== undefined ? { handle } : {}),
    ...(nvIndex !== undefined ? { nvIndex } : {}),
    ...(ekKind !== undefined ? { ekKind } : {}),
    ...(o.ekCaFile !== undefined && o.ekCaFile.length > 0 ? { ekCaFiles: o.ekCaFile.map((f) => resolve(f)) } : {}),
  };
}

function caOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--ca-cert <file>', 'factory CA certificate (PEM; may be followed by its chain)')
    .option('--ca-key <file>', 'factory CA private key (PEM)')
    .option(
      '--ca-key-uri <uri>',
      'factory CA key on a PKCS#11 token (RFC 7512, e.g. "pkcs11:token=factory;object=ca?module-path=/usr/lib/softhsm/libsofthsm2.so")',
    )
    .option('--pin-file <file>', 'file holding the token user PIN')
    .option('--pin-env <name>', 'environment variable holding the token user PIN')
    .option('--pkcs11-module <path>', 'PKCS#11 module, when the URI has no module-path')
    .requiredOption('--out <manifest>', 'manifest (JSON Lines) to append one line per device to')
    .option('--cert-out <dir>', 'where <serial>.pem is written (default: idevid/ next to the manifest)')
    .option(
      '--handle <handle>',
      `persistent handle of the IDevID key (default 0x${DEFAULT_IDEVID_HANDLE.toString(16)})`,
    )
    .option('--nv-index <index>', 'also store the IDevID certificate DER in this NV index (e.g. 0x01c90000)')
    .option('--force', 'replace a key / NV index / manifest serial that is already there')
    .option('--tss2-key', "also write <serial>.tss2.pem (the key's TPM blobs, for OpenSSL's tpm2 provider)")
    .option(
      '--ek-kind <kind>',
      `EK recorded in the manifest: ${EK_KINDS.join(', ')} (default: the first with a certificate)`,
    )
    .option(
      '--ek-ca-file <file>',
      'TPM manufacturer CA (PEM), repeatable: the EK certificate must chain to one of them (else no IDevID)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--cn-template <t>', 'subject CN, {serial} replaced (default "{serial}")')
    .option('--san-uri <t>', 'URI SAN, {serial} replaced (default "urn:sigil:device:{serial}")')
    .option('--org <name>', 'subject O (manufacturer)')
    .option('--validity-years <n>', "IDevID validity (default 20, capped at the CA's)")
    .option('--format <fmt>', 'table or json');
}

export function registerFactory(program: Command, run: Run): void {
  const factory = program
    .command('factory')
    .description('provision device identities (IDevID in the TPM) on a production line');

  factory
    .command('init-ca')
    .description('create a self-signed factory CA, in files or with its key on a PKCS#11 token')
    .requiredOption('--out <dir>', 'directory for factory-ca.pem (and factory-ca.key)')
    .option('--cn <name>', 'subject CN (default "Sigil Factory CA")')
    .option('--org <name>', 'subject O (default "Sigil Factory")')
    .option('--years <n>', 'validity in years (default 30)')
    .option('--pkcs11-module <path>', 'generate the key on a token through this PKCS#11 module')
    .option('--token-label <label>', 'the token')
    .option('--key-label <label>', 'CKA_LABEL of the new key (default sigil-factory-ca)')
    .option('--pin-file <file>', 'file holding the token user PIN')
    .option('--pin-env <name>', 'environment variable holding the token user PIN')
    .option('--format <fmt>', 'table or json')
    .action(
      (o: {
        out: string;
        cn?: string;
        org?: string;
        years?: string;
        pkcs11Module?: string;
        tokenLabel?: string;
        keyLabel?: string;
        pinFile?: string;
        pinEnv?: string;
        format?: string;
      }) =>
        run(async () => {
          const fmt = parseFormat(o.format);
          if ((o.pkcs11Module === undefined) !== (o.tokenLabel === undefined))
            throw new SigilError('bad_request', '--pkcs11-module and --token-label go together');
          const r = await initFactoryCa({
            outDir: resolve(o.out),
            ...(o.cn !== undefined ? { commonName: o.cn } : {}),
            ...(o.org !== undefined ? { organization: o.org } : {}),
            ...(o.years !== undefined ? { years: Number(o.years) } : {}),
            ...(o.pkcs11Module !== undefined
              ? {
                  pkcs11: {
                    module: o.pkcs11Module,
                    tokenLabel: o.tokenLabel!,
                    ...(o.keyLabel !== undefined ? { keyLabel: o.keyLabel } : {}),
                    ...(o.pinFile !== undefined ? { pinFile: resolve(o.pinFile) } : {}),
                    ...(o.pinEnv !== undefined ? { pinEnv: o.pinEnv } : {}),
                  },
                }
              : {}),
          });
          if (fmt === 'json') printJson(r);
          else printKv(r as unknown as Record<string, unknown>);
        }),
    );

  caOptions(
    factory
      .command('provision')
      .description('provision one device: EK → IDevID key in the TPM → IDevID certificate → manifest line')
      .requiredOption('--tpm <tcti>', 'the device TPM (e.g. device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321)')
      .requiredOption('--serial <serial>', 'device serial number'),
  ).action((o: DeviceOpts & { tpm: string; serial: string }) =>
    run(async () => {
      const fmt = parseFormat(o.format);
      const ca = openFactoryCa(caSource(o));
      try {
        const opts = deviceOptions(o, ca);
        const tpm = await Tpm.open(o.tpm, { startup: true });
        try {
          const r = await provisionDevice({ ...opts, tpm, serial: o.serial });
          const out = { ...r.line, cert_file: r.certFile, ...(r.tss2File ? { tss2_file: r.tss2File } : {}) };
          if (fmt === 'json') printJson(out);
          else printKv(out as unknown as Record<string, unknown>);
        } finally {
          await tpm.close().catch(() => undefined);
        }
      } finally {
        ca.close();
      }
    }),
  );

  caOptions(
    factory
      .command('batch')
      .description(
        'provision every device of a CSV (header serial[,tcti]); failures are reported and do not stop the batch',
      )
      .requiredOption('--csv <file>', 'CSV with a "serial" (and optional "tcti") column')
      .option('--tpm <tcti>', 'TPM for rows without a tcti')
      .option('--parallel <n>', 'devices provisioned at once (default 1)'),
  ).action((o: DeviceOpts & { csv: string; tpm?: string; parallel?: string }) =>
    run(async () => {
      const fmt = parseFormat(o.format);
      let text: string;
      try {
        text = readFileSync(o.csv, 'utf8');
      } catch (e) {
        throw new SigilError('bad_request', `cannot read ${o.csv}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      const rows = parseBatchCsv(text);
      const parallel = o.parallel === undefined ? 1 : Number(o.parallel);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64)
        throw new SigilError('bad_request', '--parallel must be 1..64');
      const ca = openFactoryCa(caSource(o));
      let summary;
      try {
        const progress = createProgress(process.stderr, rows.length);
        summary = await runBatch({
          ...deviceOptions(o, ca),
          rows,
          parallel,
          ...(o.tpm !== undefined ? { defaultTcti: o.tpm } : {}),
          onStart: (r) => progress.start(r),
          onDone: (d) => progress.done(d),
        });
        progress.finish();
      } finally {
        ca.close();
      }
      if (fmt === 'json') printJson(summary);
      else {
        printTable(
          summary.devices.map((d) => ({
            serial: d.serial,
            result: d.ok ? 'ok' : `failed: ${d.code}`,
            idevid_fingerprint: d.idevid_fingerprint ?? d.message,
          })),
          ['serial', 'result', 'idevid_fingerprint'],
        );
        process.stdout.write(`${summary.ok} ok, ${summary.failed} failed; manifest ${summary.manifest}\n`);
      }
      if (summary.failed > 0) {
        const failed = summary.devices.filter((d) => !d.ok);
        const listed = failed
          .slice(0, 5)
          .map((d) => `${d.serial} (${d.code})`)
          .join(', ');
        throw new SigilError(
          'batch_incomplete',
          `${summary.failed} of ${summary.total} devices failed: ${listed}${failed.length > 5 ? ', …' : ''}; the manifest holds the ${summary.ok} that succeeded`,
        );
      }
    }),
  );
}
