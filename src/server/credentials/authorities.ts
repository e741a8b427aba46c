/**
 * The signers behind the `credential` operation, built once per issuer from the data
 * directory's keys: the SSH user and host CAs and the JWT-SVID key. (X.509 client certificates
 * for databases and Kubernetes come from the same intermediate as SVIDs: IssuerContext.engine.)
 *
 * Beside each signer, the keys of a rotation in progress (../rotating-keys.ts): a staged next key
 * (published before it signs, so relying parties trust it by the time it does) and retired keys
 * still trusted (a credential signed just before the rotation stays verifiable for its ≤ 24 h
 * life). Neither signs; the JWKS, the SPIFFE bundle, `ca export` and the SSH trust lines in
 * credential answers publish them.
 *
 * A signer can also be halted: a running issuer that reloads its keys (../key-reload.ts) and finds
 * its own signing key withdrawn by a compromise rotation — a data directory that got the new list
 * before the new key file — stops signing with it and publishing it at once, rather than keep a
 * stolen key in service until the file arrives. Everything that signs goes through
 * {@link jwtSigner} or {@link sshSigner}, which refuse (`signing_key_withdrawn`) while halted.
 */
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import type { CredentialKeys } from '../credential-keys.js';
import { publishedBeside, type RotatableKey, type RotatingKey } from '../rotating-keys.js';
import { SshCertificateAuthority } from '../../ssh/authority.js';
import { formatAuthorizedKey, sshPublicKeyFromKeyObject } from '../../ssh/public-key.js';
import { JwtSigner, publicJwk, type PublicJwk } from './jwt-signer.js';

export interface CredentialAuthorities {
  sshUser: SshCertificateAuthority;
  sshHost: SshCertificateAuthority;
  jwt: JwtSigner;
  /** Staged and retired keys (all kinds, expired ones too: the helpers below filter at the time of use). */
  rotating: readonly RotatingKey[];
  /** The list's sequence (seconds; grows at every rotate-key step). */
  rotatingSequence: number;
  /** Kinds whose signing key was withdrawn under this running issuer, with why (see the module comment). */
  halted: ReadonlyMap<RotatableKey, string>;
  /**
   * When this issuer learned of the latest withdrawal of each kind (../key-reload.ts): until then it
   * may have signed with the withdrawn key itself, so a stored answer from before is not replayed.
   */
  withdrawalLearnedAt: ReadonlyMap<RotatableKey, number>;
}

export function createCredentialAuthorities(
  keys: CredentialKeys & {
    rotating?: readonly RotatingKey[];
    rotatingSequence?: number;
    halted?: ReadonlyMap<RotatableKey, string>;
  },
  trustDomain: string,
): CredentialAuthorities {
  return {
    sshUser: new SshCertificateAuthority(keys.sshUserCa, 'user', `sigil-user-ca@${trustDomain}`),
    sshHost: new SshCertificateAuthority(keys.sshHostCa, 'host', `sigil-host-ca@${trustDomain}`),
    jwt: new JwtSigner(keys.jwtSigning),
    rotating: keys.rotating ?? [],
    rotatingSequence: keys.rotatingSequence ?? 0,
    halted: keys.halted ?? new Map(),
    withdrawalLearnedAt: new Map(),
  };
}

/** The public key each kind signs with now (halted or not). */
export function signingPublicKeys(cas: CredentialAuthorities): Record<RotatableKey, KeyObject> {
  return { jwt: cas.jwt.publicKey, 'ssh-user': cas.sshUser.signingPublicKey, 'ssh-host': cas.sshHost.signingPublicKey };
}

/** The JWT-SVID signer, unless a compromise rotation withdrew its key under this issuer. */
export function jwtSigner(cas: CredentialAuthorities): JwtSigner {
  assertNotHalted(cas, ['jwt']);
  return cas.jwt;
}

/**
 * The SSH CA that signs `which` certificates. Both SSH keys must be in service: every SSH answer
 * also carries the other CA's line, which the agent writes into sshd's TrustedUserCAKeys or
 * known_hosts — a withdrawn one there would keep trusting the stolen key.
 */
export function sshSigner(cas: CredentialAuthorities, which: 'user' | 'host'): SshCertificateAuthority {
  assertNotHalted(cas, ['ssh-user', 'ssh-host']);
  return which === 'user' ? cas.sshUser : cas.sshHost;
}

/**
 * Refuse a credential of `kind` (a credential request's kind) while a key it needs is halted —
 * before a stored answer is replayed too: one stored before the halt carries the withdrawn key
 * (its signature, or its CA line that the agent would write into a trust file).
 */
export function assertCredentialKindInService(cas: CredentialAuthorities, kind: string): void {
  if (kind === 'jwt') assertNotHalted(cas, ['jwt']);
  else if (kind === 'ssh_user' || kind === 'ssh_host') assertNotHalted(cas, ['ssh-user', 'ssh-host']);
}

/**
 * Until when a credential of `kind` may have been signed with a key since withdrawn: the latest
 * compromise rotation's time (from the list) or, later, when this issuer learned of it. A stored
 * answer from before then is not replayed. Undefined: no withdrawal known.
 */
export function withdrawnAtFor(cas: CredentialAuthorities, kind: string): number | undefined {
  const kinds: readonly RotatableKey[] =
    kind === 'jwt' ? ['jwt'] : kind === 'ssh_user' || kind === 'ssh_host' ? ['ssh-user', 'ssh-host'] : [];
  let at: number | undefined;
  for (const k of cas.rotating)
    if (k.state === 'withdrawn' && kinds.includes(k.kind) && (at === undefined || k.since > at)) at = k.since;
  for (const kind of kinds) {
    const learned = cas.withdrawalLearnedAt.get(kind);
    if (learned !== undefined && (at === undefined || learned > at)) at = learned;
  }
  return at;
}

function assertNotHalted(cas: CredentialAuthorities, kinds: readonly RotatableKey[]): void {
  for (const kind of kinds)
    if (cas.halted.has(kind))
      // The why (paths, the command to run) is for the operator's log, not for every agent and broker.
      throw new SigilError(
        'signing_key_withdrawn',
        `this issuer's ${kind} signing key was withdrawn by a compromise rotation and its replacement is not in place here yet: nothing of that kind is signed meanwhile (the issuer's log says what to do)`,
      );
}

/** The JWT-SVID keys to publish at `now`: the signing key first (none while halted), then a staged one, then retired ones still trusted. */
export function publishedJwks(cas: CredentialAuthorities, now: number): PublicJwk[] {
  return [
    ...(cas.halted.has('jwt') ? [] : [cas.jwt.jwk]),
    ...publishedBeside(cas.rotating, 'jwt', now, cas.jwt.publicKey).map((k) => publicJwk(k.publicKey)),
  ];
}

/**
 * The SSH CA keys relying parties should trust at `now`, as authorized_keys lines: the signing
 * CA's first (none while halted), then a staged one, then retired ones still trusted (comments `next-…` and
 * `retired-…`, so an operator reading TrustedUserCAKeys or known_hosts can tell them apart; sshd
 * and ssh ignore comments).
 */
export function publishedSshCaLines(cas: CredentialAuthorities, which: 'user' | 'host', now: number): string[] {
  const ca = which === 'user' ? cas.sshUser : cas.sshHost;
  const kind = which === 'user' ? 'ssh-user' : 'ssh-host';
  const beside = publishedBeside(cas.rotating, kind, now, ca.signingPublicKey).map((k) =>
    formatAuthorizedKey(sshPublicKeyFromKeyObject(k.publicKey).blob, `${k.state}-${ca.comment}`),
  );
  return [...(cas.halted.has(kind) ? [] : [ca.authorizedKeyLine()]), ...beside];
}

/**
 * When the published key sets last changed, in seconds: the list's own sequence, raised at every
 * rotate-key step (a stage, an activation, a cancel), or a retired key whose trust ended since (it
 * drops out by the clock, with no step). The SPIFFE bundle's `spiffe_sequence` (which must only
 * grow) and the `trust_sequence` of identity answers (agents re-issue their ssh outputs when it
 * moves). 0 for an issuer that never rotated.
 */
export function keysChangedAt(cas: CredentialAuthorities, now: number): number {
  let at = cas.rotatingSequence * 1000;
  for (const k of cas.rotating) if (k.state === 'retired' && k.trustedUntil <= now) at = Math.max(at, k.trustedUntil);
  return Math.floor(at / 1000);
}
