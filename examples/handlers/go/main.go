// The Go worker of the ETL example (queue "go"): totals per customer of the orders that the Python
// `transform` step converted to EUR cents.
//
//	cd examples/handlers/go && go run . --address 127.0.0.1:7233 --queue go
//
// examples/handlers/ts/fallback.ts computes the same result in TypeScript.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weft/weft/workers/go/weft"
)

type eurOrder struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	EurCents int64  `json:"eur_cents"`
}

type transformed struct {
	Date   string     `json:"date"`
	Orders []eurOrder `json:"orders"`
}

// aggregate is ETL step 3: the EUR total of each customer (encoding/json sorts the map's keys).
func aggregate(_ context.Context, t *weft.Task) (any, error) {
	var in transformed
	if err := t.DecodeParentOutput("transform", &in); err != nil {
		return nil, weft.NonRetryableWithType("BadInput", fmt.Errorf("transform output: %w", err))
	}
	if in.Date == "" {
		return nil, weft.NonRetryableWithType("BadInput", errors.New("transform output has no date"))
	}
	totals := map[string]int64{}
	for _, o := range in.Orders {
		totals[o.Customer] += o.EurCents
	}
	return map[string]any{"date": in.Date, "totals": totals, "count": len(in.Orders)}, nil
}

func main() {
	address := flag.String("address", os.Getenv("WEFT_ADDRESS"), "weftd address host:port (env WEFT_ADDRESS)")
	queue := flag.String("queue", "go", "task queue to poll")
	workerID := flag.String("worker-id", "", "identity shown on task runs (default <hostname>:<pid>)")
	token := flag.String("token", os.Getenv("WEFT_TOKEN"), "bearer token (env WEFT_TOKEN)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if *address == "" {
		logger.Error("--address is required")
		os.Exit(2)
	}
	conn, err := weft.Dial(*address)
	if err != nil {
		logger.Error("dial", "err", err)
		os.Exit(1)
	}
	defer conn.Close()
	w := weft.NewWorker(conn, weft.Options{
		Queue:         *queue,
		WorkerID:      *workerID,
		Token:         *token,
		Logger:        logger,
		ShutdownGrace: 5 * time.Second,
	})
	w.Register("aggregate", aggregate)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		logger.Error("worker", "err", err)
		os.Exit(1)
	}
}
