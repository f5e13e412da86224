import { fileURLToPath } from "node:url";

/** The repository root, with a trailing slash. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `buf` from the workspace's node_modules. */
export const BUF_BIN = `${REPO_ROOT}node_modules/.bin/buf`;

/** The reflection protos as @grpc/reflection ships them, for @grpc/proto-loader. */
export const REFLECTION_PROTO = {
  v1: `${REPO_ROOT}node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto`,
  v1alpha: `${REPO_ROOT}node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto`,
} as const;
