package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/weft/weft/workers/go/weft"
)

// handlers mirror test/fixtures/handlers.ts and test/fixtures/handlers.py. Each start is
// appended to the file named by WEFT_TEST_JOURNAL (one JSON line), so that a test can wait for
// "task X attempt N started in process P" without sleeping.
var handlers = map[string]weft.Handler{
	"echo":             echo,
	"add":              add,
	"stuckOnce":        stuckOnce,
	"gated":            gated,
	"fail":             fail,
	"failNonRetryable": failNonRetryable,
	"crashOnce":        crashOnce,
	"ignoreCancel":     ignoreCancel,
	"untilCancelled":   untilCancelled,
}

var journalMu sync.Mutex

func journal(t *weft.Task, event string, extra map[string]any) {
	path := os.Getenv("WEFT_TEST_JOURNAL")
	if path == "" {
		return
	}
	line := map[string]any{"event": event, "runId": t.RunID, "taskId": t.TaskID, "attempt": t.Attempt, "pid": os.Getpid()}
	for k, v := range extra {
		line[k] = v
	}
	b, _ := json.Marshal(line)
	journalMu.Lock()
	defer journalMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

func gateOpen() bool {
	gate := os.Getenv("WEFT_TEST_GATE")
	if gate == "" {
		return false
	}
	_, err := os.Stat(gate)
	return err == nil
}

// reason names a cancellation cause the way the other runtimes' fixtures do.
func reason(ctx context.Context) string {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, weft.ErrRunCancelled):
		return "run_cancelled"
	case errors.Is(cause, weft.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(cause, weft.ErrWorkerShutdown):
		return "worker_shutdown"
	case cause != nil:
		return cause.Error()
	}
	return ""
}

// echo returns its input with the outputs of its parents.
func echo(_ context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	return map[string]any{"task": t.TaskID, "input": t.Input, "parents": t.ParentOutputs}, nil
}

// add adds 1 to the sum of its parents' numeric outputs (the run input when it has none).
func add(_ context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	var base float64
	if len(t.ParentOutputs) == 0 {
		if err := t.DecodeRunInput(&base); err != nil {
			return nil, weft.NonRetryable(fmt.Errorf("run input is not a number: %w", err))
		}
	}
	for id := range t.ParentOutputs {
		var v float64
		if err := t.DecodeParentOutput(id, &v); err != nil {
			return nil, weft.NonRetryable(fmt.Errorf("output of %s is not a number: %w", id, err))
		}
		base += v
	}
	return base + 1, nil
}

// stuckOnce blocks until cancelled on its first attempt (for kill tests); returns on the next ones.
func stuckOnce(ctx context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	if t.Attempt == 1 {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	return map[string]any{"task": t.TaskID, "attempt": t.Attempt, "input": t.Input}, nil
}

// gated waits until the file named by WEFT_TEST_GATE exists, then returns (for restart tests).
func gated(ctx context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !gateOpen() {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-tick.C:
		}
	}
	return map[string]any{"task": t.TaskID, "attempt": t.Attempt, "input": t.Input}, nil
}

// fail fails every attempt (retryable).
func fail(_ context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	return nil, fmt.Errorf("boom on attempt %d", t.Attempt)
}

// failNonRetryable fails the task at once with an error of type BadInput.
func failNonRetryable(_ context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	return nil, weft.NonRetryableWithType("BadInput", errors.New("bad input"))
}

// crashOnce panics on its first attempt.
func crashOnce(_ context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	if t.Attempt == 1 {
		panic("kaboom")
	}
	return map[string]any{"attempt": t.Attempt}, nil
}

// ignoreCancel works until WEFT_TEST_GATE exists whatever happens, then returns.
func ignoreCancel(ctx context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	deadline := time.Now().Add(30 * time.Second)
	for !gateOpen() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var why any
	if r := reason(ctx); r != "" {
		why = r
	}
	journal(t, "end", map[string]any{"cancelled": ctx.Err() != nil, "reason": why})
	return map[string]any{"ignored": true}, nil
}

// untilCancelled waits for cancellation on its first attempt and records why; returns on the
// next ones.
func untilCancelled(ctx context.Context, t *weft.Task) (any, error) {
	journal(t, "start", nil)
	if t.Attempt == 1 {
		<-ctx.Done()
		journal(t, "cancelled", map[string]any{"reason": reason(ctx)})
		return nil, fmt.Errorf("cancelled: %s", reason(ctx))
	}
	return map[string]any{"attempt": t.Attempt}, nil
}
