/**
 * Firmware profile files (firmware-profiles/*.yaml, documented in firmware-profiles/README.md):
 * the golden measurements of one device model — accepted PCR values, and rules over the boot
 * event log. Validated here, apart from being applied (./evaluate.ts).
 *
 * Unknown keys are refused: a misspelt rule must not silently turn into "no rule".
 */
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import { parseWith } from '../../protocol/messages.js';
import { HASH_ALGS, PCR_BANKS, PCR_COUNT, type PcrBank } from '../../tpm/eventlog/index.js';
import { yamlErrorText } from '../../util/yaml-error.js';
import { normalizeCrtmVersion } from './crtm.js';

export type SecureBootRule = 'enabled' | 'disabled' | 'any';

export interface EventLogRules {
  /** State of the SecureBoot variable measured into PCR 7. */
  secureBoot: SecureBootRule;
  /** Every PCR 4 boot application (boot loader, shim, grub, UKI) must have one of these digests. */
  bootLoaderDigests: string[] | undefined;
  /** Each entry's words must appear, in order and as whole words, in every measured kernel command line. */
  kernelCmdlineContains: string[] | undefined;
  /** Every EV_S_CRTM_VERSION in PCR 0 must be one of these (trimmed; "" allowed; GUIDs lowercase: ./crtm.ts). */
  crtmVersions: string[] | undefined;
}

export interface FirmwareProfile {
  name: string;
  description: string | undefined;
  pcrBank: PcrBank;
  /** Accepted values per PCR (several during a rollout), lowercase hex without 0x. */
  pcrs: Map<number, string[]>;
  eventLog: { require: boolean; rules: EventLogRules } | undefined;
  /** The file it came from, for messages. */
  source: string;
}

export const PROFILE_NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

const HEX_RE = /^(0x)?[0-9a-fA-F]+$/;
const hex = z
  .string({ error: 'expected a hex string in quotes (YAML reads unquoted digits as a number)' })
  .regex(HEX_RE, 'not a hex string')
  .transform((s) => s.replace(/^0x/, '').toLowerCase());
const hexList = z.array(hex).min(1, 'list at least one value').max(64);
const text = z.string().trim().min(1, 'must not be empty').max(1024);
/** A CRTM version may be "" (firmware that measures an empty one); GUID forms are lowercased (./crtm.ts). */
const crtmVersion = z.string().trim().max(1024).transform(normalizeCrtmVersion);

const PCR_KEY_RE = /^(0|[1-9][0-9]?)$/;

const rulesSchema = z.strictObject({
  secure_boot: z.enum(['enabled', 'disabled', 'any']).optional(),
  boot_loader_digests: hexList.optional(),
  kernel_cmdline_contains: z.array(text).min(1).max(64).optional(),
  crtm_versions: z.array(crtmVersion).min(1).max(64).optional(),
});

const fileSchema = z
  .strictObject({
    name: z.string().regex(PROFILE_NAME_RE, 'names are 1-63 lowercase letters, digits, dots, dashes and underscores'),
    description: z.string().max(2048).optional(),
    pcr_bank: z.enum(PCR_BANKS),
    // Keys are checked in superRefine: zod's record-key errors do not say what is wrong.
    pcrs: z.record(z.string(), hexList).optional(),
    event_log: z
      .strictObject({
        require: z.boolean().optional(),
        rules: rulesSchema.optional(),
      })
      .optional(),
  })
  .superRefine((p, ctx) => {
    const size = HASH_ALGS[p.pcr_bank].size;
    const checkLength = (value: string, path: (string | number)[]): void => {
      if (value.length !== size * 2) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `expected ${size * 2} hex digits for ${p.pcr_bank}, got ${value.length}`,
        });
      }
    };
    for (const [pcr, values] of Object.entries(p.pcrs ?? {})) {
      if (!PCR_KEY_RE.test(pcr) || Number(pcr) >= PCR_COUNT)
        ctx.addIssue({ code: 'custom', path: ['pcrs', pcr], message: `PCR keys are PCR numbers 0-${PCR_COUNT - 1}` });
      values.forEach((v, i) => checkLength(v, ['pcrs', pcr, i]));
    }
    p.event_log?.rules?.boot_loader_digests?.forEach((v, i) =>
      checkLength(v, ['event_log', 'rules', 'boot_loader_digests', i]),
    );
    if (Object.keys(p.pcrs ?? {}).length === 0 && !p.event_log) {
      ctx.addIssue({ code: 'custom', message: 'a profile needs pcrs, event_log, or both' });
    }
  });

type ProfileFile = z.infer<typeof fileSchema>;

/** Parse and validate one profile file's text. Throws `config_invalid` naming `source` and the field. */
export function parseFirmwareProfile(yamlText: string, source: string): FirmwareProfile {
  const docs = parseAllDocuments(yamlText);
  const list = (Array.isArray(docs) ? docs : [docs]).filter((d) => d.contents !== null || d.errors.length > 0);
  if (list.length === 0) throw new SigilError('config_invalid', `${source}: the file is empty`);
  if (list.length > 1)
    throw new SigilError('config_invalid', `${source}: one profile per file (found ${list.length} YAML documents)`);
  const doc = list[0]!;
  if (doc.errors.length)
    throw new SigilError('config_invalid', `${source}: YAML error: ${yamlErrorText(doc.errors[0])}`);
  const p: ProfileFile = parseWith(fileSchema, doc.toJS(), 'config_invalid', source);
  return toProfile(p, source);
}

function toProfile(p: ProfileFile, source: string): FirmwareProfile {
  const pcrs = new Map<number, string[]>();
  for (const k of Object.keys(p.pcrs ?? {}).sort((a, b) => Number(a) - Number(b)))
    pcrs.set(Number(k), [...new Set(p.pcrs![k]!)]);
  let eventLog: FirmwareProfile['eventLog'];
  if (p.event_log) {
    const r = p.event_log.rules ?? {};
    eventLog = {
      require: p.event_log.require ?? true,
      rules: {
        secureBoot: r.secure_boot ?? 'any',
        bootLoaderDigests: r.boot_loader_digests,
        kernelCmdlineContains: r.kernel_cmdline_contains,
        crtmVersions: r.crtm_versions,
      },
    };
  }
  return { name: p.name, description: p.description, pcrBank: p.pcr_bank, pcrs, eventLog, source };
}
