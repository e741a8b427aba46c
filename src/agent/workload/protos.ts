/**
 * The two gRPC service definitions the agent serves on its Workload API socket, loaded at run
 * time from the .proto files beside this module (./proto/: the wire contract, written from the
 * SPIFFE and Envoy specifications). Resolved from the project root so that the same path works
 * from src/ (tests) and from dist/ (the built agent): tsc does not copy .proto files.
 */
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

export const PROTO_DIR = fileURLToPath(new URL('../../../src/agent/workload/proto/', import.meta.url));
export const WORKLOAD_PROTO = `${PROTO_DIR}workload.proto`;
export const SDS_PROTO = `${PROTO_DIR}sds.proto`;

/** snake_case field names as in the .proto; bytes as Buffers; unset fields as their defaults (proto3). */
export const PROTO_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export interface ServiceDefinitions {
  workload: ServiceDefinition;
  sds: ServiceDefinition;
}

export function loadServiceDefinitions(): ServiceDefinitions {
  const workload = loadSync(WORKLOAD_PROTO, PROTO_OPTIONS)['SpiffeWorkloadAPI'];
  const sds = loadSync(SDS_PROTO, PROTO_OPTIONS)['envoy.service.secret.v3.SecretDiscoveryService'];
  return { workload: workload as ServiceDefinition, sds: sds as ServiceDefinition };
}

/** Envoy's type URL for a Secret resource (extensions/transport_sockets/tls/v3/secret.proto). */
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
