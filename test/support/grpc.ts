import {
  create,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/** A grpc-js client for `address` over cleartext HTTP/2; pass `gzip` to compress requests. */
export function grpcClient(
  address: string,
  options: { gzip?: boolean; credentials?: grpc.ChannelCredentials } = {},
): grpc.Client {
  const channelOptions: grpc.ChannelOptions =
    options.gzip === true ? { "grpc.default_compression_algorithm": 2 } : {};
  return new grpc.Client(address, options.credentials ?? grpc.credentials.createInsecure(), channelOptions);
}

function codec<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O> | DescMethodServerStreaming<I, O>,
) {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    serialize: (value: MessageShape<I>) => Buffer.from(toBinary(method.input, value)),
    deserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
  };
}

/** Calls a unary method with grpc-js, encoding with the generated protobuf-es schemas. */
export function grpcUnary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethodUnary<I, O>,
  request: MessageInitShape<I>,
  options: grpc.CallOptions = {},
): Promise<MessageShape<O>> {
  const { path, serialize, deserialize } = codec(method);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      serialize,
      deserialize,
      create(method.input, request),
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000, ...options },
      (err, response) => (err ? reject(err) : resolve(response as MessageShape<O>)),
    );
  });
}

/** Opens a server stream with grpc-js, encoding with the generated protobuf-es schemas. */
export function grpcServerStream<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethodServerStreaming<I, O>,
  request: MessageInitShape<I>,
): grpc.ClientReadableStream<MessageShape<O>> {
  const { path, serialize, deserialize } = codec(method);
  return client.makeServerStreamRequest(path, serialize, deserialize, create(method.input, request));
}

/** The gRPC error a promise rejected with (fails the test when it resolved). */
export async function grpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("expected the call to fail, it succeeded");
}

export { grpc };
