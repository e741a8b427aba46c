/**
 * IP address text to the octets of a GeneralName iPAddress (RFC 5280 §4.2.1.6: 4 octets for
 * IPv4, 16 for IPv6, network byte order) and back.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Octets of an IPv4 or IPv6 address, or undefined if `text` is neither (zone IDs are refused). */
export function ipToBytes(text: string): Buffer | undefined {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let groups: string[];
  let tail: number[] = [];
  let s = text;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    // Embedded IPv4 in the last 32 bits (RFC 4291 §2.2 form 3), e.g. ::ffff:10.0.0.1
    tail = s
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    const head = s.slice(0, dbl) === '' ? [] : s.slice(0, dbl).split(':');
    const rest = s.slice(dbl + 2) === '' ? [] : s.slice(dbl + 2).split(':');
    groups = [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  } else {
    groups = s.split(':');
  }
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  if (tail.length === 4) Buffer.from(tail).copy(out, 12);
  return out;
}

/** Text form of iPAddress octets (IPv6 without zero compression, which is still valid syntax). */
export function bytesToIp(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  return `<${b.toString('hex')}>`;
}
