// Command weft-bench-worker is the Go worker of `pnpm bench` (scenario "worker runtimes"): one
// queue, a no-op handler named "noop", the given concurrency, and a Work stream unless -no-stream.
// It runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weft/weft/workers/go/weft"
)

func main() {
	fs := flag.NewFlagSet("weft-bench-worker", flag.ExitOnError)
	address := fs.String("address", "127.0.0.1:7233", "weftd address")
	queue := fs.String("queue", "", "task queue")
	concurrency := fs.Int("concurrency", 64, "handlers at once")
	noStream := fs.Bool("no-stream", false, "poll with PollTask instead of a Work stream")
	_ = fs.Parse(os.Args[1:])
	conn, err := weft.Dial(*address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	w := weft.NewWorker(conn, weft.Options{
		Queue:       *queue,
		Concurrency: *concurrency,
		NoStream:    *noStream,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	w.Register("noop", func(context.Context, *weft.Task) (any, error) { return nil, nil })
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
