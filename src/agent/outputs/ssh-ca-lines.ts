/**
 * The SSH CA keys an ssh output trusts, from a credential answer: the issuer's signing CA, then
 * the other CAs of a rotation in progress (`other_*_ca_public_keys`: a staged next CA, trusted
 * before it signs, and retired CAs until the certificates they signed have expired). Each line is parsed and
 * re-rendered, so nothing but `<type> <base64> [comment]` reaches a trust file.
 */
import { SigilError } from '../../errors.js';
import { formatAuthorizedKey, parseAuthorizedKey } from '../../ssh/public-key.js';

export function sshCaLines(
  which: 'user' | 'host',
  signing: string | undefined,
  others: readonly string[] = [],
): string[] {
  if (!signing) throw new SigilError('response_invalid', `the issuer answer carries no ${which} CA key`);
  return [signing, ...others].map((line, i) => {
    const k = parseAuthorizedKey(
      line,
      'response_invalid',
      i === 0 ? `the ${which} CA key` : `other ${which} CA key ${i}`,
    );
    return formatAuthorizedKey(k.blob, k.comment);
  });
}
