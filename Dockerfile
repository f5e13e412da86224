# weftd image. Build from the repository root: docker build -t weftd .
FROM node:20-bookworm-slim AS deps
RUN npm install -g pnpm@10
WORKDIR /app
COPY pnpm-workspace.yaml package.json pnpm-lock.yaml ./
COPY daemon/package.json daemon/
COPY sdk/package.json sdk/
COPY workers/typescript/package.json workers/typescript/
COPY test/package.json test/
COPY bench/package.json bench/
RUN pnpm install --frozen-lockfile

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=deps /app /app
COPY daemon daemon
COPY sdk sdk
COPY workers/typescript workers/typescript
USER node
ENV WEFT_ADDR=0.0.0.0:7233 WEFT_METRICS_ADDR=0.0.0.0:9233
EXPOSE 7233 9233
ENTRYPOINT ["node", "--import", "tsx/esm", "daemon/src/main.ts"]
