/**
 * The package version (package.json "version"). The agent sends it as `agent_version` in its join
 * and renew requests (protocol/messages.ts), shown on the fleet view (issue #18) as the agent's
 * claim. `sigil --version` prints the same value (cli/main.ts keeps its own copy so the version
 * answers before any import; test/unit/version.test.ts checks the two agree with package.json).
 */
export const SIGIL_VERSION = '0.1.0';
