// Package weft is the Go worker runtime of Weft: it takes tasks of a task queue from weftd over gRPC
// (a Work stream), runs the registered handlers, heartbeats while they run, and reports their
// results.
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
	"sync/atomic"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	// pollTimeoutMargin is the slack on top of the poll's wait before the client gives up.
	pollTimeoutMargin = 10 * time.Second
	// maxTasksPerPoll is the most assignments one PollTask may ask for (the daemon's limit).
	maxTasksPerPoll = 256
)

// Worker takes tasks of one task queue and runs their handlers, at most Options.Concurrency at once,
// with heartbeats while a handler runs. By default it opens one Work stream: it grants the daemon a
// credit per free slot, starts each assignment as it arrives, and sends outputs on the stream, those
// of the same moment in one message. With Options.NoStream, or against a daemon without Work, one
// poll loop asks PollTask for as many tasks as there are free slots, and outputs go out batched
// (CompleteTasks). Failures go out with FailTask.
type Worker struct {
	client      weftv1.WorkerServiceClient
	opts        Options
	optErr      error
	logger      *slog.Logger
	health      *daemonHealth
	completions *completionBatcher
	// stream is the Work stream open now, if any.
	stream atomic.Pointer[workStream]

	// slotFreed wakes the poll loop when it waits for a free slot.
	slotFreed chan struct{}
	// running counts the started executions that have not finished (handler and report).
	running sync.WaitGroup

	mu         sync.Mutex
	handlers   map[string]Handler
	started    bool
	executions map[*execution]struct{}
	// busySlots counts the executions whose handler has not returned: the slots in use.
	busySlots int
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
	w := &Worker{
		client:     weftv1.NewWorkerServiceClient(conn),
		opts:       resolved,
		optErr:     err,
		logger:     logger,
		health:     &daemonHealth{logger: logger},
		slotFreed:  make(chan struct{}, 1),
		handlers:   map[string]Handler{},
		executions: map[*execution]struct{}{},
	}
	w.completions = &completionBatcher{w: w}
	return w
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

// WorkerID is the identity the worker takes tasks with.
func (w *Worker) WorkerID() string { return w.opts.WorkerID }

// Run takes tasks until ctx is done, then stops gracefully: no new tasks, in-flight tasks get
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
	polling := make(chan struct{})
	go func() {
		defer close(polling)
		if w.opts.NoStream {
			w.pollLoop(ctx, names)
		} else {
			w.streamLoop(ctx, names)
		}
	}()
	<-ctx.Done()
	w.mu.Lock()
	inFlight := len(w.executions)
	w.mu.Unlock()
	w.logger.Info("worker closing", slog.Int("inFlight", inFlight), slog.Duration("grace", w.opts.ShutdownGrace))
	drained := make(chan struct{})
	go func() {
		// Every execution is started by the poll loop, so none starts once it has returned.
		<-polling
		w.running.Wait()
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

// pollLoop polls until ctx is done, asking for as many tasks as there are free slots, and waits
// for a slot to free while every slot is busy.
func (w *Worker) pollLoop(ctx context.Context, handlers []string) {
	b := backoff{initial: w.opts.RetryInitialDelay, max: w.opts.RetryMaxDelay}
	for ctx.Err() == nil {
		free := w.freeSlots()
		if free <= 0 {
			select {
			case <-w.slotFreed:
			case <-ctx.Done():
				return
			}
			continue
		}
		req := &weftv1.PollTaskRequest{
			Queue:    w.opts.Queue,
			WorkerId: w.opts.WorkerID,
			Handlers: handlers,
			Wait:     durationpb.New(w.opts.PollWait),
			MaxTasks: uint32(min(free, maxTasksPerPoll)),
		}
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
		// Assignments that arrive while closing are still run: this worker holds their leases.
		if a := res.GetAssignment(); a != nil {
			w.start(a)
		}
		for _, a := range res.GetMoreAssignments() {
			w.start(a)
		}
	}
}

func (w *Worker) freeSlots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opts.Concurrency - w.busySlots
}

// start runs an assignment in its own goroutine; its slot is busy until its handler returns.
func (w *Worker) start(a *weftv1.TaskAssignment) {
	e := newExecution(w, a)
	w.mu.Lock()
	w.executions[e] = struct{}{}
	w.busySlots++
	w.mu.Unlock()
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer func() {
			w.mu.Lock()
			delete(w.executions, e)
			w.mu.Unlock()
		}()
		e.run(w.freeSlot)
	}()
}

// freeSlot marks a handler returned and wakes the poll loop if it waits for a slot. The Work
// stream grants the slot's credit with the task's output when one follows (one message for both),
// else at once.
func (w *Worker) freeSlot(outputFollows bool) {
	w.mu.Lock()
	w.busySlots--
	w.mu.Unlock()
	select {
	case w.slotFreed <- struct{}{}:
	default:
	}
	if s := w.stream.Load(); s != nil && !outputFollows {
		s.signal()
	}
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
