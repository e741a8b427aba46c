/** The agent's settings store (join/registry.ts AgentSettings) in memory: a TPM method's kept state in tests. */
import type { AgentSettings } from '../../src/join/registry.js';

export class MemorySettings implements AgentSettings {
  readonly m = new Map<string, string>();
  getSetting(k: string): string | undefined {
    return this.m.get(k);
  }
  setSetting(k: string, v: string): void {
    this.m.set(k, v);
  }
}
