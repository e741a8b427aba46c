/**
 * A Workload API / SDS client built only from the agent's .proto files with @grpc/proto-loader —
 * what any gRPC client in any language would generate from them — for the conformance tests.
 * Also the script a child process under another uid runs (CHILD_CLIENT_SCRIPT).
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { X509Certificate } from 'node:crypto';
import { PROTO_OPTIONS, SDS_PROTO, WORKLOAD_PROTO } from '../../src/agent/workload/protos.js';

type Ctor = new (
  target: string,
  creds: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client & Record<string, Function>;

export function workloadClient(socket: string): grpc.Client & Record<string, Function> {
  const pkg = grpc.loadPackageDefinition(loadSync(WORKLOAD_PROTO, PROTO_OPTIONS));
  return new (pkg['SpiffeWorkloadAPI'] as unknown as Ctor)(`unix://${socket}`, grpc.credentials.createInsecure(), {
    // Each client its own connection: a shared subchannel keeps the reconnect backoff of an earlier failure.
    'grpc.use_local_subchannel_pool': 1,
  });
}

export function sdsClient(socket: string): grpc.Client & Record<string, Function> {
  const pkg = grpc.loadPackageDefinition(loadSync(SDS_PROTO, PROTO_OPTIONS)) as unknown as {
    envoy: { service: { secret: { v3: { SecretDiscoveryService: Ctor } } } };
  };
  return new pkg.envoy.service.secret.v3.SecretDiscoveryService(`unix://${socket}`, grpc.credentials.createInsecure());
}

export function header(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

/** The first message of a server stream, or its error status; the stream is cancelled after. */
export function firstMessage<T>(stream: grpc.ClientReadableStream<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    stream.once('data', (m: T) => {
      resolve(m);
      stream.cancel();
    });
    stream.once('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
  });
}

/** A stream's messages as they come: next() resolves with the next one (or rejects with its error). */
export function messages<T>(stream: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<unknown, T>): {
  next(): Promise<T>;
} {
  const queue: T[] = [];
  const waiting: Array<{ resolve: (m: T) => void; reject: (e: Error) => void }> = [];
  let failed: Error | undefined;
  stream.on('data', (m: T) => {
    const w = waiting.shift();
    if (w) w.resolve(m);
    else queue.push(m);
  });
  stream.on('error', (e: Error) => {
    failed = e;
    for (const w of waiting.splice(0)) w.reject(e);
  });
  return {
    next: () =>
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : failed
          ? Promise.reject(failed)
          : new Promise((resolve, reject) => waiting.push({ resolve, reject })),
  };
}

export function unary<T>(client: Record<string, Function>, method: string, req: unknown, md = header()): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method]!(req, md, (e: grpc.ServiceError | null, r: T) => (e ? reject(e) : resolve(r))),
  );
}

/** Split concatenated DER certificates (X509SVID.x509_svid, .bundle). */
export function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    let len = buf[i + 1]!;
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = buf.subarray(i + 2, i + 2 + n).reduce((a, b) => a * 256 + b, 0);
      hdr = 2 + n;
    }
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}

export function derToPem(der: Buffer): string {
  return new X509Certificate(der).toString();
}
