# Images for container users; tests never build them. Build from the repository root:
#   docker build -t weftd .                            weftd (the default target)
#   docker build --target worker-ts -t weft-worker-ts .  TypeScript worker + the example handlers
#   docker build --target worker-py -t weft-worker-py .  Python worker + the example handlers
#   docker build --target worker-go -t weft-worker-go .  the Go example worker
# docker-compose.yml runs them all with Redis.

FROM node:20-bookworm-slim AS deps
RUN npm install -g pnpm@10
WORKDIR /app
COPY pnpm-workspace.yaml package.json pnpm-lock.yaml ./
COPY daemon/package.json daemon/
COPY sdk/package.json sdk/
COPY cli/package.json cli/
COPY examples/package.json examples/
COPY workers/typescript/package.json workers/typescript/
COPY test/package.json test/
COPY bench/package.json bench/
RUN pnpm install --frozen-lockfile

# Node sources shared by weftd, the weft CLI and the TypeScript worker.
FROM node:20-bookworm-slim AS node-app
WORKDIR /app
COPY --from=deps /app /app
COPY tsconfig.json ./
COPY daemon daemon
COPY sdk sdk
COPY cli cli
COPY workers/typescript workers/typescript
COPY examples examples
# weftd runs compiled (what `pnpm build` makes): no TypeScript loader in the daemon's process.
RUN ./node_modules/.bin/tsc -p sdk/tsconfig.build.json && ./node_modules/.bin/tsc -p daemon/tsconfig.build.json
USER node

# The TypeScript worker: `--queue` and `--handlers` come from the command.
FROM node-app AS worker-ts
ENTRYPOINT ["node", "--import", "tsx/esm", "workers/typescript/src/bin.ts"]
CMD ["--queue", "ts", "--handlers", "examples/handlers/ts/handlers.ts"]

# The weft CLI, e.g. `docker run --rm weft-cli runs ls --address weftd:7233`.
FROM node-app AS cli
ENTRYPOINT ["node", "--import", "tsx/esm", "cli/src/main.ts"]

FROM python:3.12-slim-bookworm AS worker-py
WORKDIR /app
COPY workers/python workers/python
RUN pip install --no-cache-dir -c workers/python/constraints.txt ./workers/python
COPY examples/handlers/python examples/handlers/python
USER nobody
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "weft_worker"]
CMD ["--queue", "py", "--handlers", "examples/handlers/python/handlers.py"]

FROM golang:1.26-bookworm AS go-build
WORKDIR /src
COPY workers/go workers/go
COPY examples/handlers/go examples/handlers/go
RUN cd examples/handlers/go && CGO_ENABLED=0 go build -o /out/weft-go-examples .

FROM debian:bookworm-slim AS worker-go
COPY --from=go-build /out/weft-go-examples /usr/local/bin/weft-go-examples
USER nobody
ENTRYPOINT ["weft-go-examples"]
CMD ["--queue", "go"]

# weftd, the default target: listens on all interfaces inside the container.
FROM node-app AS weftd
ENV WEFT_ADDR=0.0.0.0:7233 WEFT_METRICS_ADDR=0.0.0.0:9233
EXPOSE 7233 9233
ENTRYPOINT ["node", "--conditions=weft-dist", "daemon/dist/main.js"]
