package weft

import (
	"context"
	"fmt"
	"sync"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// maxCompletionsPerCall is the most completions in one CompleteTasks call (the daemon's limit).
const maxCompletionsPerCall = 1000

// pendingCompletion is a task's output waiting for (or between) deliveries.
type pendingCompletion struct {
	e       *execution
	leaseID string
	output  *structpb.Value
	backoff backoff
	// attempts is the number of deliveries tried so far.
	attempts int
	// done receives once: true when the completion was recorded or given up, false when the
	// daemon lacks CompleteTasks and the caller must deliver it with CompleteTask.
	done chan bool
}

func (c *pendingCompletion) finish(handled bool) { c.done <- handled }

// completionBatcher delivers a worker's task outputs with CompleteTasks without adding latency: a
// completion goes out at once when no call is in flight; those made while one is in flight go out
// together in the next call, as soon as it returns (at most maxCompletionsPerCall per call). Each
// completion is answered, retried and logged on its own, as a CompleteTask of its own would be.
// Against a daemon without CompleteTasks (UNIMPLEMENTED, an older weftd) it hands every completion
// back to its execution, which uses CompleteTask, for the rest of its life.
type completionBatcher struct {
	w *Worker

	mu      sync.Mutex
	queued  []*pendingCompletion
	sending bool
	// unbatched is set once the daemon answered UNIMPLEMENTED to CompleteTasks.
	unbatched bool
}

// complete delivers the output of e's task, on the worker's Work stream when one is open, else
// with CompleteTasks, and returns once it is recorded or given up (true), or with false when the
// daemon does not implement CompleteTasks: the caller then completes the task with CompleteTask.
func (w *Worker) complete(e *execution, output *structpb.Value) bool {
	c := &pendingCompletion{
		e:       e,
		leaseID: e.assignment.GetLeaseId(),
		output:  output,
		backoff: backoff{initial: w.opts.RetryInitialDelay, max: w.opts.RetryMaxDelay},
		done:    make(chan bool, 1),
	}
	if s := w.stream.Load(); s == nil || !s.offer(c) {
		w.completions.enqueue(c)
	}
	return <-c.done
}

func (b *completionBatcher) enqueue(c *pendingCompletion) {
	b.mu.Lock()
	if b.unbatched {
		b.mu.Unlock()
		c.finish(false)
		return
	}
	b.queued = append(b.queued, c)
	start := !b.sending
	b.sending = true
	b.mu.Unlock()
	if start {
		go b.sendQueued()
	}
}

// sendQueued sends what is queued, one call at a time, until the queue is empty.
func (b *completionBatcher) sendQueued() {
	for {
		b.mu.Lock()
		if len(b.queued) == 0 || b.unbatched {
			b.sending = false
			b.mu.Unlock()
			return
		}
		n := min(len(b.queued), maxCompletionsPerCall)
		taken := b.queued[:n:n]
		b.queued = b.queued[n:]
		if len(b.queued) == 0 {
			b.queued = nil
		}
		b.mu.Unlock()
		batch := make([]*pendingCompletion, 0, len(taken))
		for _, c := range taken {
			if c.e.abandoned.Load() {
				// The task was abandoned at shutdown before its output went out: the output is dropped.
				c.finish(true)
				continue
			}
			batch = append(batch, c)
		}
		if len(batch) > 0 {
			b.send(batch)
		}
	}
}

func (b *completionBatcher) send(batch []*pendingCompletion) {
	req := &weftv1.CompleteTasksRequest{Completions: make([]*weftv1.CompleteTaskRequest, len(batch))}
	for i, c := range batch {
		req.Completions[i] = &weftv1.CompleteTaskRequest{LeaseId: c.leaseID, Output: c.output}
	}
	ctx, cancel := context.WithTimeout(b.w.outgoing(context.Background()), reportTimeout)
	res, err := b.w.client.CompleteTasks(ctx, req)
	cancel()
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			b.fallBack(batch)
			return
		}
		for _, c := range batch {
			b.settle(c, err, "CompleteTasks")
		}
		return
	}
	b.w.health.ok()
	results := res.GetResults()
	for i, c := range batch {
		var result *weftv1.CompleteTaskResult
		if i < len(results) {
			result = results[i]
		}
		b.settle(c, resultError(result, c.leaseID), "CompleteTasks")
	}
}

// settle ends a delivery attempt made with rpc (err nil: recorded): the completion is done, or
// delivered again with CompleteTasks after its own backoff.
func (b *completionBatcher) settle(c *pendingCompletion, err error, rpc string) {
	c.attempts++
	if err == nil || !c.e.retryReport(rpc, err, c.attempts) {
		c.finish(true)
		return
	}
	time.AfterFunc(c.backoff.next(), func() {
		if c.e.abandoned.Load() {
			c.finish(true)
			return
		}
		b.enqueue(c)
	})
}

// fallBack hands the batch and every queued completion back to their executions for CompleteTask,
// now and for the rest of the worker's life.
func (b *completionBatcher) fallBack(batch []*pendingCompletion) {
	b.mu.Lock()
	b.unbatched = true
	queued := b.queued
	b.queued = nil
	b.mu.Unlock()
	b.w.logger.Info("the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one")
	for _, c := range append(batch, queued...) {
		c.finish(false)
	}
}

// resultError is the error CompleteTask would have answered for this completion, or nil when the
// output was recorded.
func resultError(result *weftv1.CompleteTaskResult, leaseID string) error {
	if result == nil || result.GetLeaseId() != leaseID {
		return status.Error(codes.Internal, fmt.Sprintf("CompleteTasks answered no result for lease %s", leaseID))
	}
	code := codes.Code(result.GetCode())
	if code == codes.OK {
		return nil
	}
	if code > codes.Unauthenticated {
		code = codes.Unknown
	}
	return status.Error(code, result.GetMessage())
}
