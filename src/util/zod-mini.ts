/**
 * zod's tree-shakable API (`zod/mini`: functions instead of methods, e.g. `z.optional(s)`,
 * `s.check(z.minLength(1))`) with zod's English messages. The schemas a token agent loads
 * (agent.yaml, the join methods' config blocks, the identity request and answer messages) are
 * written with it: classic `zod` attaches its whole method surface to every schema and costs the
 * daemon ~3 MB resident whether or not a method is used (issue #19, docs/performance.md "Agent
 * footprint"); bundled, this costs ~0.3 MB. Same core, same parse results and issue codes, and
 * classic schemas elsewhere (the issuer's) compose with these and vice versa.
 *
 * Without a locale zod/mini answers every issue with "Invalid input"; classic zod installs the
 * English one when it is imported, and so does this module — the same global setting, so whichever
 * loads first, messages are the same.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

// Re-exported name by name (`import * as z from './zod-mini.js'` at the use site), so that the
// bundler keeps only the functions used: exporting zod/mini's namespace object as a value would
// keep all of it (~700 KB; measured).
export * from 'zod/mini';
