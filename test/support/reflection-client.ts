import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { REFLECTION_PROTO } from "./paths.js";
import { within } from "./wait-for.js";

/** A reflection request as @grpc/proto-loader spells it (snake_case fields). */
export type ReflectionRequest =
  | { list_services: string }
  | { file_by_filename: string }
  | { file_containing_symbol: string }
  | { file_containing_extension: { containing_type: string; extension_number: number } };

/** A reflection response as @grpc/proto-loader decodes it. */
export interface ReflectionResponse {
  message_response:
    | "file_descriptor_response"
    | "list_services_response"
    | "all_extension_numbers_response"
    | "error_response";
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

type ReflectionConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
};

function loadClient(version: "v1" | "v1alpha"): ReflectionConstructor {
  const definition = protoLoader.loadSync(REFLECTION_PROTO[version], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: ReflectionConstructor }> };
  };
  const service = pkg.grpc.reflection[version]?.ServerReflection;
  if (service === undefined) throw new Error(`no ServerReflection in ${REFLECTION_PROTO[version]}`);
  return service;
}

/**
 * Sends `requests` on one ServerReflectionInfo stream (grpc-js, the given protocol version) and
 * returns the responses in order.
 */
export async function reflect(
  address: string,
  version: "v1" | "v1alpha",
  requests: ReflectionRequest[],
): Promise<ReflectionResponse[]> {
  const Client = loadClient(version);
  const client = new Client(address, grpc.credentials.createInsecure());
  try {
    const call = client.ServerReflectionInfo();
    const responses: ReflectionResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (response: ReflectionResponse) => responses.push(response));
      call.on("error", reject);
      call.on("end", resolve);
    });
    for (const request of requests) call.write(request);
    call.end();
    await within(done, 10_000, `reflection ${version} responses`);
    return responses;
  } finally {
    client.close();
  }
}
