import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Health } from "@weft/sdk/gen/health/v1/health_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { describe, expect, it } from "vitest";
import { ReflectionCatalog, reflectionServices } from "./reflection.js";

const catalog = new ReflectionCatalog([WorkflowService, WorkerService, Health, ...reflectionServices]);

function fileNames(answer: ReturnType<ReflectionCatalog["answer"]>): string[] {
  if (answer.case !== "fileDescriptorResponse")
    throw new Error(`expected files, got ${JSON.stringify(answer)}`);
  return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

describe("ReflectionCatalog", () => {
  it("lists the services it was given", () => {
    expect(catalog.answer({ case: "listServices", value: "" }, new Set())).toEqual({
      case: "listServicesResponse",
      value: {
        service: [
          { name: "grpc.health.v1.Health" },
          { name: "grpc.reflection.v1.ServerReflection" },
          { name: "grpc.reflection.v1alpha.ServerReflection" },
          { name: "weft.v1.WorkerService" },
          { name: "weft.v1.WorkflowService" },
        ],
      },
    });
  });

  it("holds every file imported, the well-known ones included", () => {
    expect(catalog.fileNames).toContain("google/protobuf/timestamp.proto");
    for (const name of catalog.fileNames) {
      const names = fileNames(catalog.answer({ case: "fileByFilename", value: name }, new Set()));
      expect(names[0]).toBe(name);
    }
  });

  it("sends a file's imports once per stream, the requested file always", () => {
    const sent = new Set<string>();
    const first = fileNames(
      catalog.answer({ case: "fileContainingSymbol", value: "weft.v1.WorkflowService" }, sent),
    );
    expect(first[0]).toBe("weft/v1/workflow_service.proto");
    expect(first.length).toBeGreaterThan(1);
    expect(new Set(first).size).toBe(first.length);
    const again = fileNames(
      catalog.answer({ case: "fileContainingSymbol", value: "weft.v1.WorkflowService" }, sent),
    );
    expect(again).toEqual(["weft/v1/workflow_service.proto"]);
  });

  it.each([
    ["weft.v1.WorkflowService.Trigger", "weft/v1/workflow_service.proto"],
    [".weft.v1.WorkflowService", "weft/v1/workflow_service.proto"],
    ["grpc.health.v1.HealthCheckResponse.ServingStatus", "health/v1/health.proto"],
    ["grpc.health.v1.HealthCheckRequest.service", "health/v1/health.proto"],
    ["grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING", "health/v1/health.proto"],
    ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
  ])("finds the file containing %s", (symbol, file) => {
    expect(fileNames(catalog.answer({ case: "fileContainingSymbol", value: symbol }, new Set()))[0]).toBe(
      file,
    );
  });

  it("answers NOT_FOUND errors a person can act on", () => {
    const sent = new Set<string>();
    expect(
      catalog.answer({ case: "fileContainingSymbol", value: "weft.v1.WorkflowService.Nope" }, sent),
    ).toEqual({
      case: "errorResponse",
      value: { errorCode: Code.NotFound, errorMessage: "symbol weft.v1.WorkflowService.Nope not found" },
    });
    expect(catalog.answer({ case: "fileByFilename", value: "x.proto" }, sent)).toMatchObject({
      value: { errorCode: Code.NotFound, errorMessage: "file x.proto not found" },
    });
    const extension = {
      $typeName: "grpc.reflection.v1.ExtensionRequest",
      containingType: "a.B",
      extensionNumber: 7,
    } as const;
    expect(catalog.answer({ case: "fileContainingExtension", value: extension }, sent)).toMatchObject({
      value: { errorCode: Code.NotFound },
    });
    expect(
      catalog.answer({ case: "allExtensionNumbersOfType", value: "grpc.health.v1.HealthCheckRequest" }, sent),
    ).toEqual({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "grpc.health.v1.HealthCheckRequest", extensionNumber: [] },
    });
    expect(catalog.answer({ case: undefined }, sent)).toMatchObject({
      value: { errorCode: Code.InvalidArgument },
    });
  });
});
