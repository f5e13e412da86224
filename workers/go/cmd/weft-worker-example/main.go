// Command weft-worker-example runs a Go worker with the handlers of handlers.go: the same names
// and behaviour as test/fixtures/handlers.ts, so that the end-to-end tests can route tasks to a
// Go queue. Its flags mirror the TypeScript and Python worker CLIs.
//
//	weft-worker-example --address 127.0.0.1:7233 --queue images --concurrency 8
package main

import (
	"google.golang.org/grpc"

	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weft/weft/workers/go/weft"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("weft-worker-example", flag.ContinueOnError)
	address := fs.String("address", os.Getenv("WEFT_ADDRESS"), "daemon address host:port (env WEFT_ADDRESS)")
	queue := fs.String("queue", "", "task queue to poll")
	concurrency := fs.Int("concurrency", 10, "most tasks run at once")
	workerID := fs.String("worker-id", "", "identity shown on task runs (default <hostname>:<pid>)")
	pollWaitMs := fs.Int("poll-wait-ms", 20_000, "long-poll wait")
	heartbeatMs := fs.Int("heartbeat-interval-ms", 0, "heartbeat interval (default: heartbeat timeout / 3)")
	graceMs := fs.Int("shutdown-grace-ms", 30_000, "grace period on SIGTERM/SIGINT")
	token := fs.String("token", os.Getenv("WEFT_TOKEN"), "bearer token (env WEFT_TOKEN)")
	caFile := fs.String("ca", "", "PEM CA that signed the daemon's certificate: connect with TLS")
	certFile := fs.String("cert", "", "PEM client certificate, for mTLS (with --key)")
	keyFile := fs.String("key", "", "PEM client private key, for mTLS (with --cert)")
	noStream := fs.Bool("no-stream", false, "poll with PollTask and complete with CompleteTasks instead of one Work stream (for a proxy that does not carry bidirectional streams)")
	fs.String("handlers", "", "ignored: the handlers are compiled in (accepted for parity with the other CLIs)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *address == "" || *queue == "" {
		fmt.Fprintln(os.Stderr, "--address and --queue are required")
		fs.Usage()
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: logLevel()}))
	var dialOptions []grpc.DialOption
	if *caFile != "" || *certFile != "" {
		tlsOption, err := weft.WithTLSFiles(*caFile, *certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		dialOptions = append(dialOptions, tlsOption)
	}
	conn, err := weft.Dial(*address, dialOptions...)
	if err != nil {
		logger.Error("cannot create the client", slog.Any("err", err))
		return 1
	}
	defer conn.Close()
	w := weft.NewWorker(conn, weft.Options{
		Queue:             *queue,
		Concurrency:       *concurrency,
		WorkerID:          *workerID,
		Token:             *token,
		PollWait:          time.Duration(*pollWaitMs) * time.Millisecond,
		HeartbeatInterval: time.Duration(*heartbeatMs) * time.Millisecond,
		ShutdownGrace:     time.Duration(*graceMs) * time.Millisecond,
		NoStream:          *noStream,
		Logger:            logger,
	})
	for name, h := range handlers {
		w.Register(name, h)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// A second signal abandons in-flight tasks at once.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, os.Interrupt)
		<-again
		logger.Warn("second signal received; abandoning in-flight tasks")
		os.Exit(1)
	}()
	if err := w.Run(ctx); err != nil {
		logger.Error("worker failed", slog.Any("err", err))
		return 1
	}
	return 0
}

func logLevel() slog.Level {
	switch strings.ToLower(os.Getenv("WEFT_LOG_LEVEL")) {
	case "debug", "trace":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error", "fatal":
		return slog.LevelError
	}
	return slog.LevelInfo
}
