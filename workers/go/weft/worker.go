// Package weft is the Go worker runtime of Weft: it polls a task queue of weftd over gRPC, runs
// the registered handlers, heartbeats while they run, and reports their results.
//
//	conn, err := weft.Dial("127.0.0.1:7233")
//	w := weft.NewWorker(conn, weft.Options{Queue: "images", Concurrency: 8})
//	w.Register("resize", func(ctx context.Context, t *weft.Task) (any, error) { ... })
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	err = w.Run(ctx) // returns once ctx is done and in-flight tasks finished
package weft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// pollTimeoutMargin is the slack on top of the poll's wait before the client gives up.
const pollTimeoutMargin = 10 * time.Second

// Worker polls one task queue and runs the tasks' handlers: Concurrency independent loops of
// PollTask → handler → CompleteTask/FailTask, with heartbeats while a handler runs.
type Worker struct {
	client weftv1.WorkerServiceClient
	opts   Options
	optErr error
	logger *slog.Logger
	health *daemonHealth

	mu         sync.Mutex
	handlers   map[string]Handler
	started    bool
	executions map[*execution]struct{}
}

// NewWorker makes a worker that talks to weftd over conn (see Dial). Invalid options are
// reported by Run.
func NewWorker(conn grpc.ClientConnInterface, opts Options) *Worker {
	resolved, err := opts.withDefaults()
	logger := resolved.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With(slog.String("queue", resolved.Queue), slog.String("workerId", resolved.WorkerID))
	return &Worker{
		client:     weftv1.NewWorkerServiceClient(conn),
		opts:       resolved,
		optErr:     err,
		logger:     logger,
		health:     &daemonHealth{logger: logger},
		handlers:   map[string]Handler{},
		executions: map[*execution]struct{}{},
	}
}

// Register adds the handler tasks name with `name`. It panics on an empty name, a nil handler, a
// name registered twice, or a call after Run.
func (w *Worker) Register(name string, h Handler) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case name == "" || h == nil:
		panic("weft: Register needs a name and a handler")
	case w.started:
		panic("weft: Register called after Run")
	case w.handlers[name] != nil:
		panic(fmt.Sprintf("weft: handler %q registered twice", name))
	}
	w.handlers[name] = h
}

// WorkerID is the identity the worker polls with.
func (w *Worker) WorkerID() string { return w.opts.WorkerID }

// Run polls until ctx is done, then stops gracefully: no new polls, in-flight tasks get
// Options.ShutdownGrace to finish, then their context is cancelled with ErrWorkerShutdown and
// they are abandoned (their leases expire on the daemon). It returns nil after a stop, or an
// error when the worker cannot start. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if w.optErr != nil {
		return w.optErr
	}
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("weft: Run was already called")
	}
	w.started = true
	names := w.handlerNamesLocked()
	w.mu.Unlock()
	if len(names) == 0 {
		return errors.New("weft: no handler registered")
	}
	w.logger.Info("worker polling", slog.Any("handlers", names), slog.Int("concurrency", w.opts.Concurrency))
	var loops sync.WaitGroup
	for range w.opts.Concurrency {
		loops.Add(1)
		go func() {
			defer loops.Done()
			w.pollLoop(ctx, names)
		}()
	}
	<-ctx.Done()
	w.mu.Lock()
	inFlight := len(w.executions)
	w.mu.Unlock()
	w.logger.Info("worker closing", slog.Int("inFlight", inFlight), slog.Duration("grace", w.opts.ShutdownGrace))
	drained := make(chan struct{})
	go func() {
		loops.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(w.opts.ShutdownGrace):
		w.mu.Lock()
		for e := range w.executions {
			e.abandon()
		}
		w.mu.Unlock()
	}
	w.logger.Info("worker closed")
	return nil
}

func (w *Worker) pollLoop(ctx context.Context, handlers []string) {
	req := &weftv1.PollTaskRequest{
		Queue:    w.opts.Queue,
		WorkerId: w.opts.WorkerID,
		Handlers: handlers,
		Wait:     durationpb.New(w.opts.PollWait),
	}
	b := backoff{initial: w.opts.RetryInitialDelay, max: w.opts.RetryMaxDelay}
	for ctx.Err() == nil {
		callCtx, cancel := context.WithTimeout(w.outgoing(ctx), w.opts.PollWait+pollTimeoutMargin)
		res, err := w.client.PollTask(callCtx, req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.health.failed("PollTask", err)
			sleep(ctx, b.next())
			continue
		}
		w.health.ok()
		b.reset()
		// An assignment that arrives while closing is still run: this worker holds its lease.
		if a := res.GetAssignment(); a != nil {
			w.execute(a)
		}
	}
}

func (w *Worker) execute(a *weftv1.TaskAssignment) {
	e := newExecution(w, a)
	w.mu.Lock()
	w.executions[e] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.executions, e)
		w.mu.Unlock()
	}()
	e.run()
}

func (w *Worker) handler(name string) (Handler, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h, ok := w.handlers[name]
	return h, ok
}

func (w *Worker) handlerNamesLocked() []string {
	names := make([]string, 0, len(w.handlers))
	for name := range w.handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (w *Worker) handlerList() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.handlerNamesLocked(), ", ")
}

// outgoing adds the bearer token, if any, to a call's context.
func (w *Worker) outgoing(ctx context.Context) context.Context {
	if w.opts.Token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+w.opts.Token)
}
