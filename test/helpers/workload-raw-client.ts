/**
 * A SPIFFE Workload API client that shares NOTHING with the agent's implementation: no .proto
 * file of this project, no @grpc/proto-loader, no @grpc/grpc-js. It speaks gRPC the way the
 * gRPC-over-HTTP/2 protocol document describes it (node:http2 over the Unix socket; a POST to
 * `/SpiffeWorkloadAPI/<Method>`, `content-type: application/grpc`, `te: trailers`; every message
 * framed as 1 byte "compressed" flag + 4 bytes big-endian length; `grpc-status` in the trailers,
 * or in the headers of a trailers-only answer) and encodes/decodes protobuf by hand with the field
 * numbers written down here from the SPIFFE standard (SPIFFE_Workload_API.md §5.1, §6.1 and its
 * workloadapi.proto) and google/protobuf/struct.proto — not from src/agent/workload/proto/.
 *
 * So a wrong service path, method name or field number in the agent would show up here as an
 * unknown field, a missing field or an Unimplemented status, which a client generated from the
 * agent's own .proto files could never notice (test/e2e/workload-api-independent.test.ts).
 */
import { connect as h2connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect } from 'node:net';

// ---------------------------------------------------------------------------------------------
// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/), just what is needed.

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A length-delimited field (string, bytes, embedded message). */
export function lenField(field: number, value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([varint((field << 3) | LEN), varint(bytes.length), bytes]);
}

export interface RawField {
  field: number;
  wire: number;
  /** LEN: the bytes; VARINT: the number; I64/I32: the raw little-endian bytes. */
  value: Buffer | number;
}

/** Every field of a message, in order, unknown or not. Throws on a malformed message. */
export function decodeFields(buf: Buffer): RawField[] {
  const out: RawField[] = [];
  let i = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[i++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error('protobuf: varint too long');
    }
  };
  while (i < buf.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 0) throw new Error('protobuf: field number 0');
    if (wire === VARINT) out.push({ field, wire, value: readVarint() });
    else if (wire === LEN) {
      const n = readVarint();
      if (i + n > buf.length) throw new Error(`protobuf: field ${field} runs past the end`);
      out.push({ field, wire, value: buf.subarray(i, i + n) });
      i += n;
    } else if (wire === I64 || wire === I32) {
      const n = wire === I64 ? 8 : 4;
      out.push({ field, wire, value: buf.subarray(i, i + n) });
      i += n;
    } else throw new Error(`protobuf: unsupported wire type ${wire}`);
  }
  return out;
}

/**
 * A decoded message: `known` maps field names to the field numbers of the SPIFFE spec; a field
 * number not in it is collected in `unknown` (the tests require none), as is a known number
 * sent with the wrong wire type.
 */
interface Decoded {
  fields: Map<string, Array<Buffer | number>>;
  unknown: string[];
}

function decodeKnown(buf: Buffer, known: Record<number, { name: string; wire: number }>, where: string): Decoded {
  const fields = new Map<string, Array<Buffer | number>>();
  const unknown: string[] = [];
  for (const f of decodeFields(buf)) {
    const k = known[f.field];
    if (!k || k.wire !== f.wire) {
      unknown.push(`${where}.${f.field}(wire ${f.wire})`);
      continue;
    }
    fields.set(k.name, [...(fields.get(k.name) ?? []), f.value]);
  }
  return { fields, unknown };
}

const str = (v: Buffer | number | undefined): string => (v === undefined ? '' : (v as Buffer).toString('utf8'));
const bytes = (v: Buffer | number | undefined): Buffer => (v === undefined ? Buffer.alloc(0) : (v as Buffer));

/** `map<string, bytes>` entries: key = 1, value = 2 (protobuf maps are repeated entry messages). */
function decodeMap(entries: Array<Buffer | number>, where: string, unknown: string[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const e of entries) {
    const d = decodeKnown(e as Buffer, { 1: { name: 'key', wire: LEN }, 2: { name: 'value', wire: LEN } }, where);
    unknown.push(...d.unknown);
    out[str(d.fields.get('key')?.[0])] = bytes(d.fields.get('value')?.[0]);
  }
  return out;
}

// SPIFFE_Workload_API.md §5.1: X509SVIDResponse { svids = 1; crl = 2; federated_bundles = 3 }
// X509SVID { spiffe_id = 1; x509_svid = 2; x509_svid_key = 3; bundle = 4; hint = 5 }
export interface RawX509Svid {
  spiffeId: string;
  x509Svid: Buffer;
  x509SvidKey: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface RawX509SvidResponse {
  svids: RawX509Svid[];
  crl: Buffer[];
  federatedBundles: Record<string, Buffer>;
  unknown: string[];
}

export function decodeX509SvidResponse(buf: Buffer): RawX509SvidResponse {
  const top = decodeKnown(
    buf,
    { 1: { name: 'svids', wire: LEN }, 2: { name: 'crl', wire: LEN }, 3: { name: 'federated_bundles', wire: LEN } },
    'X509SVIDResponse',
  );
  const unknown = [...top.unknown];
  const svids = (top.fields.get('svids') ?? []).map((b) => {
    const s = decodeKnown(
      b as Buffer,
      {
        1: { name: 'spiffe_id', wire: LEN },
        2: { name: 'x509_svid', wire: LEN },
        3: { name: 'x509_svid_key', wire: LEN },
        4: { name: 'bundle', wire: LEN },
        5: { name: 'hint', wire: LEN },
      },
      'X509SVID',
    );
    unknown.push(...s.unknown);
    return {
      spiffeId: str(s.fields.get('spiffe_id')?.[0]),
      x509Svid: bytes(s.fields.get('x509_svid')?.[0]),
      x509SvidKey: bytes(s.fields.get('x509_svid_key')?.[0]),
      bundle: bytes(s.fields.get('bundle')?.[0]),
      hint: str(s.fields.get('hint')?.[0]),
    };
  });
  return {
    svids,
    crl: (top.fields.get('crl') ?? []) as Buffer[],
    federatedBundles: decodeMap(
      top.fields.get('federated_bundles') ?? [],
      'X509SVIDResponse.federated_bundles',
      unknown,
    ),
    unknown,
  };
}

/** §5.1: X509BundlesResponse { crl = 1; bundles = 2 } — note: not the same numbers as X509SVIDResponse. */
export function decodeX509BundlesResponse(buf: Buffer): {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
  unknown: string[];
} {
  const top = decodeKnown(
    buf,
    { 1: { name: 'crl', wire: LEN }, 2: { name: 'bundles', wire: LEN } },
    'X509BundlesResponse',
  );
  const unknown = [...top.unknown];
  const bundles = decodeMap(top.fields.get('bundles') ?? [], 'X509BundlesResponse.bundles', unknown);
  return { crl: (top.fields.get('crl') ?? []) as Buffer[], bundles, unknown };
}

/** §6.1: JWTSVIDRequest { repeated string audience = 1; string spiffe_id = 2 } */
export function encodeJwtSvidRequest(audience: string[], spiffeId?: string): Buffer {
  return Buffer.concat([...audience.map((a) => lenField(1, a)), ...(spiffeId ? [lenField(2, spiffeId)] : [])]);
}

/** §6.1: JWTSVIDResponse { svids = 1 }, JWTSVID { spiffe_id = 1; svid = 2; hint = 3 } */
export function decodeJwtSvidResponse(buf: Buffer): {
  svids: Array<{ spiffeId: string; svid: string; hint: string }>;
  unknown: string[];
} {
  const top = decodeKnown(buf, { 1: { name: 'svids', wire: LEN } }, 'JWTSVIDResponse');
  const unknown = [...top.unknown];
  const svids = (top.fields.get('svids') ?? []).map((b) => {
    const s = decodeKnown(
      b as Buffer,
      { 1: { name: 'spiffe_id', wire: LEN }, 2: { name: 'svid', wire: LEN }, 3: { name: 'hint', wire: LEN } },
      'JWTSVID',
    );
    unknown.push(...s.unknown);
    return {
      spiffeId: str(s.fields.get('spiffe_id')?.[0]),
      svid: str(s.fields.get('svid')?.[0]),
      hint: str(s.fields.get('hint')?.[0]),
    };
  });
  return { svids, unknown };
}

/** §6.1: JWTBundlesResponse { map<string, bytes> bundles = 1 } (JWKS JSON per trust domain). */
export function decodeJwtBundlesResponse(buf: Buffer): { bundles: Record<string, Buffer>; unknown: string[] } {
  const top = decodeKnown(buf, { 1: { name: 'bundles', wire: LEN } }, 'JWTBundlesResponse');
  const unknown = [...top.unknown];
  return { bundles: decodeMap(top.fields.get('bundles') ?? [], 'JWTBundlesResponse.bundles', unknown), unknown };
}

/** §6.1: ValidateJWTSVIDRequest { string audience = 1; string svid = 2 } */
export function encodeValidateRequest(audience: string, svid: string): Buffer {
  return Buffer.concat([lenField(1, audience), lenField(2, svid)]);
}

/**
 * google.protobuf.Struct { map<string, Value> fields = 1 }; Value { oneof: null_value = 1 (enum),
 * number_value = 2 (double), string_value = 3, bool_value = 4, struct_value = 5, list_value = 6 };
 * ListValue { repeated Value values = 1 }.
 */
function decodeStruct(buf: Buffer, unknown: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const top = decodeKnown(buf, { 1: { name: 'fields', wire: LEN } }, 'Struct');
  unknown.push(...top.unknown);
  for (const e of top.fields.get('fields') ?? []) {
    const d = decodeKnown(
      e as Buffer,
      { 1: { name: 'key', wire: LEN }, 2: { name: 'value', wire: LEN } },
      'Struct.fields',
    );
    unknown.push(...d.unknown);
    out[str(d.fields.get('key')?.[0])] = decodeValue(bytes(d.fields.get('value')?.[0]), unknown);
  }
  return out;
}

function decodeValue(buf: Buffer, unknown: string[]): unknown {
  const fs = decodeFields(buf);
  if (fs.length !== 1) {
    unknown.push(`Value with ${fs.length} fields`);
    return undefined;
  }
  const f = fs[0]!;
  switch (`${f.field}/${f.wire}`) {
    case `1/${VARINT}`:
      return null;
    case `2/${I64}`:
      return (f.value as Buffer).readDoubleLE(0);
    case `3/${LEN}`:
      return str(f.value);
    case `4/${VARINT}`:
      return f.value === 1;
    case `5/${LEN}`:
      return decodeStruct(f.value as Buffer, unknown);
    case `6/${LEN}`: {
      const l = decodeKnown(f.value as Buffer, { 1: { name: 'values', wire: LEN } }, 'ListValue');
      unknown.push(...l.unknown);
      return (l.fields.get('values') ?? []).map((v) => decodeValue(v as Buffer, unknown));
    }
    default:
      unknown.push(`Value.${f.field}(wire ${f.wire})`);
      return undefined;
  }
}

/** §6.1: ValidateJWTSVIDResponse { string spiffe_id = 1; google.protobuf.Struct claims = 2 } */
export function decodeValidateResponse(buf: Buffer): {
  spiffeId: string;
  claims: Record<string, unknown>;
  unknown: string[];
} {
  const top = decodeKnown(
    buf,
    { 1: { name: 'spiffe_id', wire: LEN }, 2: { name: 'claims', wire: LEN } },
    'ValidateJWTSVIDResponse',
  );
  const unknown = [...top.unknown];
  const claims = decodeStruct(bytes(top.fields.get('claims')?.[0]), unknown);
  return { spiffeId: str(top.fields.get('spiffe_id')?.[0]), claims, unknown };
}

// ---------------------------------------------------------------------------------------------
// Envoy SDS v3, field numbers from Envoy's API (envoy/service/discovery/v3/discovery.proto,
// extensions/transport_sockets/tls/v3/secret.proto and common.proto, config/core/v3/base.proto).

/** envoy.service.secret.v3.SecretDiscoveryService: the gRPC path prefix (this one has a package). */
export const SDS_SERVICE = '/envoy.service.secret.v3.SecretDiscoveryService';
export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** DiscoveryRequest { version_info = 1; node = 2; repeated resource_names = 3; type_url = 4; response_nonce = 5 } */
export function encodeDiscoveryRequest(resourceNames: string[], typeUrl = SECRET_TYPE): Buffer {
  return Buffer.concat([...resourceNames.map((n) => lenField(3, n)), lenField(4, typeUrl)]);
}

export interface RawSecret {
  name: string;
  /** TlsCertificate { certificate_chain = 1; private_key = 2 } (DataSource contents). */
  tlsCertificate?: { certificateChain: Buffer; privateKey: Buffer };
  /** CertificateValidationContext { trusted_ca = 1 }. */
  validationContext?: { trustedCa: Buffer };
}

/** DataSource { oneof: filename = 1; inline_bytes = 2; inline_string = 3; environment_variable = 4 }: the inline content. */
function dataSource(buf: Buffer | number | undefined, where: string, unknown: string[]): Buffer {
  const d = decodeKnown(
    bytes(buf),
    { 2: { name: 'inline_bytes', wire: LEN }, 3: { name: 'inline_string', wire: LEN } },
    where,
  );
  unknown.push(...d.unknown);
  return bytes(d.fields.get('inline_bytes')?.[0] ?? d.fields.get('inline_string')?.[0]);
}

/**
 * DiscoveryResponse { version_info = 1; repeated google.protobuf.Any resources = 2; canary = 3;
 * type_url = 4; nonce = 5 }; Any { type_url = 1; value = 2 }; Secret { name = 1;
 * tls_certificate = 2; session_ticket_keys = 3; validation_context = 4; generic_secret = 5 }.
 */
export function decodeDiscoveryResponse(buf: Buffer): {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: Array<{ typeUrl: string; secret: RawSecret }>;
  unknown: string[];
} {
  const top = decodeKnown(
    buf,
    {
      1: { name: 'version_info', wire: LEN },
      2: { name: 'resources', wire: LEN },
      3: { name: 'canary', wire: VARINT },
      4: { name: 'type_url', wire: LEN },
      5: { name: 'nonce', wire: LEN },
    },
    'DiscoveryResponse',
  );
  const unknown = [...top.unknown];
  const resources = (top.fields.get('resources') ?? []).map((r) => {
    const any = decodeKnown(
      r as Buffer,
      { 1: { name: 'type_url', wire: LEN }, 2: { name: 'value', wire: LEN } },
      'Any',
    );
    unknown.push(...any.unknown);
    const sec = decodeKnown(
      bytes(any.fields.get('value')?.[0]),
      {
        1: { name: 'name', wire: LEN },
        2: { name: 'tls_certificate', wire: LEN },
        4: { name: 'validation_context', wire: LEN },
      },
      'Secret',
    );
    unknown.push(...sec.unknown);
    const secret: RawSecret = { name: str(sec.fields.get('name')?.[0]) };
    const tls = sec.fields.get('tls_certificate')?.[0];
    if (tls !== undefined) {
      const t = decodeKnown(
        tls as Buffer,
        { 1: { name: 'certificate_chain', wire: LEN }, 2: { name: 'private_key', wire: LEN } },
        'TlsCertificate',
      );
      unknown.push(...t.unknown);
      secret.tlsCertificate = {
        certificateChain: dataSource(t.fields.get('certificate_chain')?.[0], 'DataSource', unknown),
        privateKey: dataSource(t.fields.get('private_key')?.[0], 'DataSource', unknown),
      };
    }
    const vc = sec.fields.get('validation_context')?.[0];
    if (vc !== undefined) {
      const v = decodeKnown(vc as Buffer, { 1: { name: 'trusted_ca', wire: LEN } }, 'CertificateValidationContext');
      unknown.push(...v.unknown);
      secret.validationContext = { trustedCa: dataSource(v.fields.get('trusted_ca')?.[0], 'DataSource', unknown) };
    }
    return { typeUrl: str(any.fields.get('type_url')?.[0]), secret };
  });
  return {
    versionInfo: str(top.fields.get('version_info')?.[0]),
    typeUrl: str(top.fields.get('type_url')?.[0]),
    nonce: str(top.fields.get('nonce')?.[0]),
    resources,
    unknown,
  };
}

// ---------------------------------------------------------------------------------------------
// gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md), over the Unix socket.

/** Length-Prefixed-Message: Compressed-Flag (0) + Message-Length (4 bytes, big endian) + Message. */
export function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(0, 0);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export interface RawCallResult {
  /** The HTTP/2 :status and content-type of the answer. */
  httpStatus: number;
  contentType: string;
  /** The messages received (all of a unary call; the first `maxMessages` of a stream). */
  messages: Buffer[];
  /** grpc-status: from the trailers, or from the headers of a trailers-only answer; undefined if the call was cut off by us. */
  grpcStatus: number | undefined;
  grpcMessage: string;
  /** Where grpc-status came: the trailers (after the messages), or the headers of a trailers-only answer. */
  statusIn: 'trailers' | 'headers' | undefined;
}

export interface RawCallOptions {
  /** Send `workload.spiffe.io: true` (default true). */
  securityHeader?: boolean;
  /** Stop (RST_STREAM CANCEL) after this many messages: for server streams. */
  maxMessages?: number;
  timeoutMs?: number;
}

/**
 * One gRPC call on its own HTTP/2 connection to the Unix socket: `method` is a SpiffeWorkloadAPI
 * method name, or a whole path when it starts with "/". The `:authority` is `localhost`, as gRPC
 * clients send for a unix: target.
 */
export async function rawCall(
  socket: string,
  method: string,
  request: Buffer,
  opts: RawCallOptions = {},
): Promise<RawCallResult> {
  const session: ClientHttp2Session = h2connect('http://localhost', { createConnection: () => netConnect(socket) });
  try {
    return await new Promise<RawCallResult>((resolve, reject) => {
      session.once('error', reject);
      const timer = setTimeout(
        () => reject(new Error(`${method}: no answer in ${opts.timeoutMs ?? 10_000} ms`)),
        opts.timeoutMs ?? 10_000,
      );
      const headers: Record<string, string> = {
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: method.startsWith('/') ? method : `/SpiffeWorkloadAPI/${method}`,
        [h2.HTTP2_HEADER_SCHEME]: 'http',
        [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        te: 'trailers',
      };
      if (opts.securityHeader !== false) headers['workload.spiffe.io'] = 'true';
      const req = session.request(headers);
      const result: RawCallResult = {
        httpStatus: 0,
        contentType: '',
        messages: [],
        grpcStatus: undefined,
        grpcMessage: '',
        statusIn: undefined,
      };
      const finish = (): void => {
        clearTimeout(timer);
        resolve(result);
      };
      const status = (h: Record<string, unknown>, where: 'trailers' | 'headers'): void => {
        if (h['grpc-status'] !== undefined) {
          result.statusIn = where;
          result.grpcStatus = Number(h['grpc-status']);
          result.grpcMessage = decodeURIComponent(String(h['grpc-message'] ?? ''));
        }
      };
      req.on('response', (h) => {
        result.httpStatus = Number(h[h2.HTTP2_HEADER_STATUS]);
        result.contentType = String(h[h2.HTTP2_HEADER_CONTENT_TYPE] ?? '');
        status(h, 'headers'); // trailers-only answer (an error before any message)
      });
      req.on('trailers', (h) => status(h, 'trailers'));
      let pending = Buffer.alloc(0);
      req.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5) {
          if (pending[0] !== 0) return reject(new Error(`${method}: a compressed message, none was asked for`));
          const len = pending.readUInt32BE(1);
          if (pending.length < 5 + len) break;
          result.messages.push(pending.subarray(5, 5 + len));
          pending = pending.subarray(5 + len);
          if (opts.maxMessages !== undefined && result.messages.length >= opts.maxMessages) {
            req.close(h2.NGHTTP2_CANCEL);
            return finish();
          }
        }
      });
      req.on('end', finish);
      req.on('close', finish);
      req.on('error', (e) => (result.messages.length > 0 ? finish() : reject(e)));
      req.end(grpcFrame(request));
    });
  } finally {
    session.destroy();
  }
}

/** gRPC status codes (grpc/grpc doc/statuscodes.md) used here. */
export const GRPC = { OK: 0, INVALID_ARGUMENT: 3, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, UNAVAILABLE: 14 } as const;
