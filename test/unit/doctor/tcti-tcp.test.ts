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

  it('as the transports parse them: an empty path, a space before the colon, loader library names, pcap around mssim (review of session 14)', () => {
    for (const t of [
      'swtpm:path=,host=127.0.0.1,port=2321',
      'swtpm :host=127.0.0.1,port=2321',
      'libtss2-tcti-mssim.so.0:host=127.0.0.1,port=2321',
      'tcti-mssim:host=127.0.0.1',
      '/usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0:port=2321',
      'pcap:mssim:host=127.0.0.1,port=2321',
    ])
      expect(overTcp(t), t).toBe(true);
    for (const t of ['libtss2-tcti-device.so.0:/dev/tpmrm0', 'pcap:device:/dev/tpmrm0', 'mssim:path=/run/sim.sock'])
      expect(overTcp(t), t).toBe(false);
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
