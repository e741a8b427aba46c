/**
 * `sigil doctor` warns about a TCP TCTI (docs/security.md "The TPM's door is the agent's TCTI"):
 * which TCTI strings reach the TPM over a port any local user can connect to.
 */
import { describe, expect, it } from 'vitest';
import { overTcp } from '../../../src/doctor/agent/tpm.js';

describe('overTcp', () => {
  it('swtpm over host/port (or its localhost:2321 default) and mssim are TCP', () => {
    for (const t of [
      'swtpm:host=127.0.0.1,port=2321',
      'swtpm:port=2321',
      'swtpm',
      'swtpm:',
      'mssim:host=localhost,port=2321',
      ' mssim',
    ])
      expect(overTcp(t), t).toBe(true);
  });

  it('the device, a swtpm Unix socket and tabrmd are not', () => {
    for (const t of [
      'device:/dev/tpmrm0',
      'device',
      'swtpm:path=/run/swtpm.sock',
      'swtpm:host=x, path=/s',
      'tabrmd:bus_type=system',
    ])
      expect(overTcp(t), t).toBe(false);
  });
});
