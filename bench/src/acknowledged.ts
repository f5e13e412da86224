import type { Interceptor } from "@connectrpc/connect";
import type { CompleteTasksResponse } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";

/**
 * A Connect interceptor calling `onCompleted` once per completion weftd acknowledged: each answered
 * CompleteTask, and each result of CompleteTasks with code 0 (the worker batches its completions).
 */
export function countAcknowledged(onCompleted: () => void): Interceptor {
  return (next) => async (req) => {
    const res = await next(req);
    if (req.method.name === "CompleteTask") onCompleted();
    else if (req.method.name === "CompleteTasks" && !res.stream) {
      for (const result of (res.message as CompleteTasksResponse).results)
        if (result.code === 0) onCompleted();
    }
    return res;
  };
}
