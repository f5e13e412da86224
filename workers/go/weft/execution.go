package weft

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const reportTimeout = 10 * time.Second

// execution is one attempt of one task under its lease: runs the handler, heartbeats, reports.
type execution struct {
	w          *Worker
	assignment *weftv1.TaskAssignment
	logger     *slog.Logger
	ctx        context.Context
	cancel     context.CancelCauseFunc
	hb         *heartbeater
	leaseLost  atomic.Bool
	abandoned  atomic.Bool
}

type failure struct {
	err       *weftv1.TaskError
	retryable *bool
}

func newExecution(w *Worker, a *weftv1.TaskAssignment) *execution {
	// Not derived from Run's context: stopping the worker lets in-flight tasks finish.
	ctx, cancel := context.WithCancelCause(context.Background())
	e := &execution{
		w:          w,
		assignment: a,
		logger: w.logger.With(slog.String("runId", a.GetRunId()), slog.String("taskId", a.GetTaskId()),
			slog.Int("attempt", int(a.GetAttempt())), slog.String("handler", a.GetHandler())),
		ctx:    ctx,
		cancel: cancel,
	}
	e.hb = newHeartbeater(&heartbeater{
		client:   w.client,
		leaseID:  a.GetLeaseId(),
		interval: heartbeatInterval(a, w.opts.HeartbeatInterval),
		health:   w.health,
		callOpts: w.outgoing,
		onCancel: func() {
			// Heartbeats stop: the daemon has said all it will say about this attempt.
			e.hb.halt()
			e.logger.Info("run cancelled; cancelling the task's context")
			e.cancel(ErrRunCancelled)
		},
		onLeaseLost: func(err error) {
			e.leaseLost.Store(true)
			e.hb.halt()
			e.logger.Warn("lease lost on heartbeat; cancelling the task's context", rpcAttrs(err)...)
			e.cancel(ErrLeaseLost)
		},
	})
	return e
}

// run runs the attempt to the end: the handler, then the report of its result. handlerSettled is
// called once the handler has returned, saying whether an output will be delivered: the task's
// slot is free while its result is reported.
func (e *execution) run(handlerSettled func(outputFollows bool)) {
	started := time.Now()
	e.logger.Debug("task started")
	output, fail := e.execute()
	e.hb.halt()
	handlerSettled(fail == nil && !e.abandoned.Load() && !e.leaseLost.Load())
	defer e.cancel(context.Canceled)
	if e.abandoned.Load() {
		return
	}
	if e.leaseLost.Load() {
		e.logger.Warn("lease lost; the result of this attempt is not reported")
		return
	}
	durationMs := time.Since(started).Milliseconds()
	leaseID := e.assignment.GetLeaseId()
	client := e.w.client
	if fail == nil {
		e.logger.Info("task completed", slog.Int64("durationMs", durationMs))
		if e.w.complete(e, output) {
			return
		}
		// The daemon does not implement CompleteTasks: one CompleteTask for this task.
		e.report("CompleteTask", func(ctx context.Context) error {
			_, err := client.CompleteTask(ctx, &weftv1.CompleteTaskRequest{LeaseId: leaseID, Output: output})
			return err
		})
		return
	}
	e.logger.Warn("task failed", slog.Int64("durationMs", durationMs), slog.String("errorType", fail.err.GetType()),
		slog.String("error", fail.err.GetMessage()), slog.Bool("retryable", fail.retryable == nil || *fail.retryable))
	e.report("FailTask", func(ctx context.Context) error {
		_, err := client.FailTask(ctx, &weftv1.FailTaskRequest{LeaseId: leaseID, Error: fail.err, Retryable: fail.retryable})
		return err
	})
}

// abandon cancels the handler's context and drops its result: the shutdown grace ran out.
func (e *execution) abandon() {
	if e.abandoned.Swap(true) {
		return
	}
	e.hb.halt()
	e.logger.Warn("task abandoned at shutdown; its lease will expire on the daemon",
		slog.Duration("grace", e.w.opts.ShutdownGrace))
	e.cancel(ErrWorkerShutdown)
}

func (e *execution) execute() (*structpb.Value, *failure) {
	a := e.assignment
	handler, ok := e.w.handler(a.GetHandler())
	if !ok {
		msg := fmt.Sprintf("worker %s has no handler %q (it has: %s)", e.w.opts.WorkerID, a.GetHandler(), e.w.handlerList())
		return nil, &failure{err: &weftv1.TaskError{Type: "HandlerNotFound", Message: msg}, retryable: proto.Bool(false)}
	}
	e.hb.start()
	result, err := e.call(handler)
	if err != nil {
		return nil, failureFrom(err)
	}
	value, err := toValue(result)
	if err != nil {
		msg := "the handler's output is not JSON-serialisable: " + err.Error()
		return nil, &failure{err: &weftv1.TaskError{Type: "OutputNotSerializable", Message: msg}, retryable: proto.Bool(false)}
	}
	return value, nil
}

// call runs the handler, turning a panic into a *PanicError.
func (e *execution) call(h Handler) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: string(debug.Stack())}
		}
	}()
	return h(e.ctx, e.task())
}

func (e *execution) task() *Task {
	a := e.assignment
	parents := make(map[string]json.RawMessage, len(a.GetParentOutputs()))
	for id, v := range a.GetParentOutputs() {
		parents[id] = rawJSON(v)
	}
	t := &Task{
		RunID:           a.GetRunId(),
		TaskID:          a.GetTaskId(),
		Workflow:        a.GetWorkflow(),
		WorkflowVersion: a.GetWorkflowVersion(),
		Handler:         a.GetHandler(),
		Queue:           a.GetQueue(),
		Attempt:         int(a.GetAttempt()),
		MaxAttempts:     int(a.GetMaxAttempts()),
		Input:           rawJSON(a.GetInput()),
		RunInput:        rawJSON(a.GetRunInput()),
		ParentOutputs:   parents,
		WorkerID:        e.w.opts.WorkerID,
		Logger:          e.logger,
		heartbeat:       e.hb.beat,
	}
	if a.GetAttemptDeadline() != nil {
		t.AttemptDeadline = a.GetAttemptDeadline().AsTime()
	}
	return t
}

func failureFrom(err error) *failure {
	f := &failure{err: &weftv1.TaskError{Type: errorType(err), Message: err.Error()}}
	if p, ok := err.(*PanicError); ok {
		f.err.Details = p.Stack
	}
	if IsNonRetryable(err) {
		f.retryable = proto.Bool(false)
	}
	return f
}

// report delivers a result, retrying while the daemon is unavailable (the daemon deduplicates by
// lease, so a repeat is harmless). An undeliverable result is logged; its lease expires.
func (e *execution) report(rpc string, call func(ctx context.Context) error) {
	b := backoff{initial: e.w.opts.RetryInitialDelay, max: e.w.opts.RetryMaxDelay}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(e.w.outgoing(context.Background()), reportTimeout)
		err := call(ctx)
		cancel()
		if err == nil {
			e.w.health.ok()
			return
		}
		if !e.retryReport(rpc, err, attempt) {
			return
		}
		time.Sleep(b.next())
	}
}

// retryReport decides what follows attempt number `attempt` of delivering this attempt's result
// that failed with err: true when it is worth repeating after a backoff (the daemon deduplicates by
// lease, so a repeat is harmless); otherwise it logs why the result was not recorded.
func (e *execution) retryReport(rpc string, err error, attempt int) bool {
	if isLeaseLost(err) {
		e.logger.Warn("lease lost; the result was not recorded", append([]any{slog.String("rpc", rpc)}, rpcAttrs(err)...)...)
		return false
	}
	if !isTransient(err) || attempt >= e.w.opts.ReportAttempts || e.abandoned.Load() {
		e.logger.Error(rpc+" failed; the result was not recorded and the lease will expire on the daemon",
			append([]any{slog.String("rpc", rpc), slog.Int("attempts", attempt)}, rpcAttrs(err)...)...)
		return false
	}
	e.w.health.failed(rpc, err)
	return true
}
