import type { Interceptor } from "@connectrpc/connect";
import type { CompleteTasksResponse, WorkResponse } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";

/**
 * A Connect interceptor calling `onCompleted` once per completion weftd acknowledged: each answered
 * CompleteTask, each result of CompleteTasks with code 0 (the worker batches its completions), and
 * each result with code 0 on a Work stream (the worker's default).
 */
export function countAcknowledged(onCompleted: () => void): Interceptor {
  return (next) => async (req) => {
    const res = await next(req);
    if (req.method.name === "CompleteTask") onCompleted();
    else if (req.method.name === "CompleteTasks" && !res.stream) {
      for (const result of (res.message as CompleteTasksResponse).results)
        if (result.code === 0) onCompleted();
    }
    if (req.method.name === "Work" && res.stream) {
      const responses = res.message as AsyncIterable<WorkResponse>;
      return {
        ...res,
        message: (async function* () {
          for await (const response of responses) {
            for (const result of response.results) if (result.code === 0) onCompleted();
            yield response;
          }
        })(),
      } as typeof res;
    }
    return res;
  };
}
