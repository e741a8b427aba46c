/**
 * `oidc` join: a CI job or a Kubernetes pod proves what it is with the OIDC token its platform
 * signs for it — GitHub Actions, GitLab CI, CircleCI, a Kubernetes projected service-account
 * token, or any OIDC issuer with a discoverable key set (Terraform Cloud, Spacelift…).
 *
 * One request, no challenge round; the evidence is `{ token }`, a JWT whose `aud` the job asked
 * to be this issuer's audience. The token is a bearer credential until it expires; a token
 * that carries a `jti` joins once (join/jwt-replay.ts), and the audience keeps tokens minted for
 * other services out. CI jobs and pods are ephemeral, so these agents join again at every
 * renewal (with a fresh token) rather than renew, as Teleport's bots do; a CI job runs the
 * agent with `--once` to get credentials and exit. docs/join-oidc.md.
 */
import { z } from 'zod';

export const oidcEvidenceSchema = z.strictObject({
  token: z
    .string()
    .min(16)
    .max(16 * 1024),
});
