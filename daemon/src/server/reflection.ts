import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  type Registry,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@weft/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@weft/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The reflection services weftd serves, so that callers can describe them as well. */
export const reflectionServices: readonly DescService[] = [v1.ServerReflection, v1alpha.ServerReflection];

type Request =
  | v1.ServerReflectionRequest["messageRequest"]
  | v1alpha.ServerReflectionRequest["messageRequest"];

type Answer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * Answers server-reflection requests (grpc.reflection.v1 and v1alpha) about a fixed set of
 * services: their files and every file those import, as serialized FileDescriptorProtos, and
 * `extraFiles` (the types of error details, which no service's file imports: a client such as
 * grpcurl asks for them to print an error's details).
 */
export class ReflectionCatalog {
  private readonly files = new Map<string, DescFile>();
  private readonly encoded = new Map<string, Uint8Array>();
  private readonly registry: Registry;
  readonly serviceNames: string[];

  constructor(services: readonly DescService[], extraFiles: readonly DescFile[] = []) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))].sort();
    const queue = [...services.map((s) => s.file), ...extraFiles];
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      if (this.files.has(file.proto.name)) continue;
      this.files.set(file.proto.name, file);
      queue.push(...file.dependencies);
    }
    this.registry = createRegistry(...this.files.values());
  }

  /** Every file name the catalog holds, e.g. "weft/v1/workflow_service.proto". */
  get fileNames(): string[] {
    return [...this.files.keys()].sort();
  }

  /**
   * The answer to one request. `sent` holds the files already sent on this stream: like grpc-go,
   * the requested file is always sent, its dependencies only once per stream.
   */
  answer(request: Request, sent: Set<string>): Answer {
    switch (request.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: this.serviceNames.map((name) => ({ name })) },
        };
      case "fileByFilename": {
        const file = this.files.get(request.value);
        return file === undefined
          ? notFound(`file ${request.value} not found`)
          : this.withDependencies(file, sent);
      }
      case "fileContainingSymbol": {
        const file = this.fileOfSymbol(request.value);
        return file === undefined
          ? notFound(`symbol ${request.value} not found`)
          : this.withDependencies(file, sent);
      }
      case "fileContainingExtension":
        return notFound(
          `extension ${request.value.extensionNumber} of ${request.value.containingType} not found: weftd serves no extensions`,
        );
      case "allExtensionNumbersOfType": {
        const type = this.registry.get(request.value);
        if (type?.kind !== "message") return notFound(`message type ${request.value} not found`);
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: type.typeName, extensionNumber: [] },
        };
      }
      default:
        return {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "the request names no reflection query" },
        };
    }
  }

  private fileOfSymbol(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const type = this.registry.get(name);
    if (type !== undefined) return type.file;
    // A member: a service's method, a message's field or an enum's value.
    const dot = name.lastIndexOf(".");
    const parent = this.registry.get(name.slice(0, dot));
    const member = name.slice(dot + 1);
    switch (parent?.kind) {
      case "service":
        return parent.methods.some((m) => m.name === member) ? parent.file : undefined;
      case "message":
        return parent.fields.some((f) => f.name === member) ? parent.file : undefined;
      case "enum":
        return parent.values.some((v) => v.name === member) ? parent.file : undefined;
      default:
        return undefined;
    }
  }

  private withDependencies(file: DescFile, sent: Set<string>): Answer {
    const out: Uint8Array[] = [];
    const queue = [file];
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      if (out.length === 0 || !sent.has(next.proto.name)) {
        sent.add(next.proto.name);
        out.push(this.encode(next));
      }
      queue.push(...next.dependencies);
    }
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  }

  private encode(file: DescFile): Uint8Array {
    let bytes = this.encoded.get(file.proto.name);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.encoded.set(file.proto.name, bytes);
    }
    return bytes;
  }
}

function notFound(errorMessage: string): Answer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage } };
}

/** Registers grpc.reflection.v1 and v1alpha ServerReflection answering from `catalog`. */
export function registerReflectionServices(router: ConnectRouter, catalog: ReflectionCatalog): void {
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const messageResponse = catalog.answer(req.messageRequest, sent);
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse,
        });
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const messageResponse = catalog.answer(req.messageRequest, sent);
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          messageResponse,
        });
      }
    },
  });
}
