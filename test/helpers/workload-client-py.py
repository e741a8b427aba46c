#!/usr/bin/python3
"""A second SPIFFE Workload API client independent of Sigil: Debian's python3-grpcio (gRPC's C
core) and python3-protobuf, with the message types built at run time from descriptors written
down here from the SPIFFE standard (SPIFFE_Workload_API.md 5.1, 6.1) — no .proto file of this
project is read. Used by test/e2e/workload-api-independent.test.ts.

usage: workload-client-py.py SOCKET AUDIENCE        everything, one JSON object on stdout
       workload-client-py.py SOCKET --x509-only     FetchX509SVID only (run under another uid)
"""
import base64
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2

F = descriptor_pb2.FieldDescriptorProto


def field(msg, name, number, ftype, repeated=False, type_name=None):
    f = msg.field.add()
    f.name, f.number, f.type = name, number, ftype
    f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def string_bytes_map(file, parent, name, number, value_type=F.TYPE_BYTES):
    """A proto3 map<string, bytes|string> is a repeated nested *Entry message with map_entry set."""
    entry = parent.nested_type.add()
    entry.name = "".join(p.capitalize() for p in name.split("_")) + "Entry"
    entry.options.map_entry = True
    field(entry, "key", 1, F.TYPE_STRING)
    field(entry, "value", 2, value_type)
    field(parent, name, number, F.TYPE_MESSAGE, True, "." + parent.name + "." + entry.name)


def build():
    fd = descriptor_pb2.FileDescriptorProto(name="independent_spiffe_workload.proto", syntax="proto3")
    fd.dependency.append("google/protobuf/struct.proto")

    def message(name):
        m = fd.message_type.add()
        m.name = name
        return m

    message("X509SVIDRequest")
    m = message("X509SVID")
    field(m, "spiffe_id", 1, F.TYPE_STRING)
    field(m, "x509_svid", 2, F.TYPE_BYTES)
    field(m, "x509_svid_key", 3, F.TYPE_BYTES)
    field(m, "bundle", 4, F.TYPE_BYTES)
    field(m, "hint", 5, F.TYPE_STRING)
    m = message("X509SVIDResponse")
    field(m, "svids", 1, F.TYPE_MESSAGE, True, ".X509SVID")
    field(m, "crl", 2, F.TYPE_BYTES, True)
    string_bytes_map(fd, m, "federated_bundles", 3)
    message("X509BundlesRequest")
    m = message("X509BundlesResponse")
    field(m, "crl", 1, F.TYPE_BYTES, True)
    string_bytes_map(fd, m, "bundles", 2)
    m = message("JWTSVIDRequest")
    field(m, "audience", 1, F.TYPE_STRING, True)
    field(m, "spiffe_id", 2, F.TYPE_STRING)
    m = message("JWTSVID")
    field(m, "spiffe_id", 1, F.TYPE_STRING)
    field(m, "svid", 2, F.TYPE_STRING)
    field(m, "hint", 3, F.TYPE_STRING)
    m = message("JWTSVIDResponse")
    field(m, "svids", 1, F.TYPE_MESSAGE, True, ".JWTSVID")
    message("JWTBundlesRequest")
    m = message("JWTBundlesResponse")
    string_bytes_map(fd, m, "bundles", 1)
    m = message("ValidateJWTSVIDRequest")
    field(m, "audience", 1, F.TYPE_STRING)
    field(m, "svid", 2, F.TYPE_STRING)
    m = message("ValidateJWTSVIDResponse")
    field(m, "spiffe_id", 1, F.TYPE_STRING)
    field(m, "claims", 2, F.TYPE_MESSAGE, False, ".google.protobuf.Struct")

    pool = descriptor_pool.DescriptorPool()
    struct_fd = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_fd)
    pool.Add(struct_fd)
    pool.Add(fd)
    factory = message_factory.MessageFactory(pool)

    def cls(name):
        d = pool.FindMessageTypeByName(name)
        get = getattr(message_factory, "GetMessageClass", None)
        return get(d) if get else factory.GetPrototype(d)

    return cls


def main():
    socket, mode = sys.argv[1], sys.argv[2]
    cls = build()
    channel = grpc.insecure_channel("unix:" + socket)
    md = (("workload.spiffe.io", "true"),)

    def stub(method, req, resp, stream):
        make = channel.unary_stream if stream else channel.unary_unary
        return make("/SpiffeWorkloadAPI/" + method, request_serializer=cls(req).SerializeToString,
                    response_deserializer=cls(resp).FromString)

    def first(call):
        for msg in call:
            call.cancel()
            return msg
        raise RuntimeError("stream ended without a message")

    def status_of(fn):
        try:
            fn()
            return {"code": 0}
        except grpc.RpcError as e:
            return {"code": e.code().value[0], "details": e.details()}

    b64 = lambda b: base64.b64encode(b).decode()
    x509 = stub("FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse", True)
    out = {}
    if mode == "--x509-only":
        out["x509"] = status_of(lambda: first(x509(cls("X509SVIDRequest")(), metadata=md, timeout=10)))
        print(json.dumps(out))
        return
    audience = mode
    r = first(x509(cls("X509SVIDRequest")(), metadata=md, timeout=10))
    out["x509"] = [{"spiffe_id": s.spiffe_id, "x509_svid": b64(s.x509_svid), "x509_svid_key": b64(s.x509_svid_key),
                    "bundle": b64(s.bundle)} for s in r.svids]
    out["x509_unknown_fields"] = len(r.UnknownFields()) if hasattr(r, "UnknownFields") else 0
    bundles = stub("FetchX509Bundles", "X509BundlesRequest", "X509BundlesResponse", True)
    r = first(bundles(cls("X509BundlesRequest")(), metadata=md, timeout=10))
    out["x509_bundles"] = {k: b64(v) for k, v in r.bundles.items()}
    jwt = stub("FetchJWTSVID", "JWTSVIDRequest", "JWTSVIDResponse", False)
    r = jwt(cls("JWTSVIDRequest")(audience=[audience]), metadata=md, timeout=10)
    out["jwt"] = [{"spiffe_id": s.spiffe_id, "svid": s.svid} for s in r.svids]
    jwt_bundles = stub("FetchJWTBundles", "JWTBundlesRequest", "JWTBundlesResponse", True)
    r = first(jwt_bundles(cls("JWTBundlesRequest")(), metadata=md, timeout=10))
    out["jwt_bundles"] = {k: json.loads(v) for k, v in r.bundles.items()}
    validate = stub("ValidateJWTSVID", "ValidateJWTSVIDRequest", "ValidateJWTSVIDResponse", False)
    token = out["jwt"][0]["svid"]
    r = validate(cls("ValidateJWTSVIDRequest")(audience=audience, svid=token), metadata=md, timeout=10)
    out["validate"] = {"spiffe_id": r.spiffe_id, "claims": json_format.MessageToDict(r.claims)}
    out["validate_wrong_audience"] = status_of(
        lambda: validate(cls("ValidateJWTSVIDRequest")(audience="not-" + audience, svid=token), metadata=md, timeout=10))
    out["no_header"] = status_of(lambda: first(x509(cls("X509SVIDRequest")(), timeout=10)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
