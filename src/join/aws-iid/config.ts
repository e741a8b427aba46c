/**
 * Building the aws_iid join agent from the agent's configuration (agent.yaml, snake_case):
 *
 *   join:
 *     method: aws_iid
 *     aws_iid:
 *       imds_endpoint: "http://169.254.169.254"      # optional (default); a fake IMDS in tests
 *       binding_key: /var/lib/sigil/aws-iid-binding.key   # optional; default <agent data_dir>/aws-iid-binding.key
 *       signatures: [rsa2048, pkcs7, signature]     # optional: which to try, in order
 *       timeout: 5s                                  # optional: per IMDS request
 *
 * The binding key (wire.ts) is an ECDSA P-256 key in a PKCS#8 PEM file, created with mode 0600
 * on first use and kept for the instance's life: the issuer binds the instance id to it at the
 * first join, so deleting it locks the instance out until an administrator resets the binding
 * (`sigil ctl bindings reset aws_iid <instance-id>`).
 */
import { closeSync, openSync, readFileSync, writeSync, constants as fsc } from 'node:fs';
import { dirname, join } from 'node:path';
import { SigilError } from '../../errors.js';
import { SoftwareSigner } from '../../keystore/software.js';
import { parseDuration } from '../../util/duration.js';
import { AwsIidJoinAgent, DEFAULT_IMDS_ENDPOINT } from './agent.js';
import { ensureDir } from '../../util/atomic-file.js';
import type { AgentJoinMethodCode } from '../registry.js';
import type { AwsIidAgentConfig } from './schema.js';
export { awsIidAgentConfigSchema, type AwsIidAgentConfig } from './schema.js';

export const DEFAULT_BINDING_KEY_NAME = 'aws-iid-binding.key';
export const DEFAULT_DATA_DIR = '/var/lib/sigil';

/** Load the binding key at `path`, creating it (0600, exclusive create) when it does not exist. */
export function loadOrCreateBindingKey(path: string): SoftwareSigner {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new SigilError(
        'config_invalid',
        `cannot read the aws_iid binding key ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    const signer = SoftwareSigner.generate();
    try {
      ensureDir(dirname(path), 0o700);
      // O_EXCL: never overwrite a key another agent process created meanwhile; O_NOFOLLOW: never write through a planted link.
      const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      try {
        writeSync(fd, signer.toPkcs8Pem());
      } finally {
        closeSync(fd);
      }
      return signer;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateBindingKey(path);
      throw new SigilError(
        'config_invalid',
        `cannot create the aws_iid binding key ${path}: ${(e2 as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  }
  try {
    return SoftwareSigner.fromPkcs8Pem(pem);
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `the aws_iid binding key ${path} is not a P-256 PKCS#8 key: ${(e as Error).message}`,
    );
  }
}

export function awsIidJoinAgentFromConfig(cfg: AwsIidAgentConfig, opts: { dataDir?: string } = {}): AwsIidJoinAgent {
  const keyPath = cfg.binding_key ?? join(opts.dataDir ?? DEFAULT_DATA_DIR, DEFAULT_BINDING_KEY_NAME);
  return new AwsIidJoinAgent({
    endpoint: cfg.imds_endpoint ?? DEFAULT_IMDS_ENDPOINT,
    bindingKey: loadOrCreateBindingKey(keyPath),
    ...(cfg.signatures !== undefined ? { kinds: cfg.signatures } : {}),
    ...(cfg.timeout !== undefined ? { timeoutMs: parseDuration(cfg.timeout, 'config_invalid') * 1000 } : {}),
  });
}

/** The agent side of the aws_iid join (its registry entry in join/agent-methods.ts loads this file). */
export const awsIidAgentCode: AgentJoinMethodCode<AwsIidAgentConfig> = {
  create: (settings, ctx) => ({
    method: awsIidJoinAgentFromConfig(settings, { dataDir: ctx.dataDir }),
    singleUseCredential: undefined,
  }),
};
