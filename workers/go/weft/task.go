package weft

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Handler runs one task. Its ctx is cancelled when the run is cancelled, the lease is lost or the
// worker's shutdown grace runs out (context.Cause says which: ErrRunCancelled, ErrLeaseLost,
// ErrWorkerShutdown). The returned value, marshalled with encoding/json, is the task's output; an
// error fails the attempt, and one wrapped with NonRetryable fails the task at once. A panic fails
// the attempt with a *PanicError.
type Handler func(ctx context.Context, t *Task) (any, error)

// Task is what a handler knows about the attempt it runs.
type Task struct {
	// RunID is the run's id.
	RunID string
	// TaskID is the task's id within the workflow.
	TaskID string
	// Workflow is the workflow name; WorkflowVersion the version the run executes.
	Workflow        string
	WorkflowVersion uint32
	// Handler is the handler name the task asked for; Queue the queue it came from.
	Handler string
	Queue   string
	// Attempt is the attempt number, starting at 1; MaxAttempts what the retry policy allows.
	Attempt     int
	MaxAttempts int
	// Input is the task's static input as JSON ("null" when it has none).
	Input json.RawMessage
	// RunInput is the run's input as JSON.
	RunInput json.RawMessage
	// ParentOutputs are the outputs of the task's parents as JSON, keyed by parent task id.
	ParentOutputs map[string]json.RawMessage
	// AttemptDeadline is when the attempt's start-to-close timeout fires; zero when none.
	AttemptDeadline time.Time
	// WorkerID is the identity of the worker running the task.
	WorkerID string
	// Logger carries queue, workerId, runId, taskId and attempt attributes.
	Logger *slog.Logger

	heartbeat func(progress any) error
}

// DecodeInput unmarshals the task's input into v.
func (t *Task) DecodeInput(v any) error { return json.Unmarshal(t.Input, v) }

// DecodeRunInput unmarshals the run's input into v.
func (t *Task) DecodeRunInput(v any) error { return json.Unmarshal(t.RunInput, v) }

// DecodeParentOutput unmarshals the output of parent task id into v.
func (t *Task) DecodeParentOutput(id string, v any) error {
	raw, ok := t.ParentOutputs[id]
	if !ok {
		return fmt.Errorf("weft: task %q has no parent %q", t.TaskID, id)
	}
	return json.Unmarshal(raw, v)
}

// Heartbeat sends a heartbeat soon, with an optional progress report (any JSON-marshallable
// value; nil for none) that later automatic heartbeats repeat. Heartbeats are also sent
// automatically; a lost lease or a cancellation shows on the handler's ctx. It fails only when
// progress cannot be marshalled.
func (t *Task) Heartbeat(progress any) error {
	if t.heartbeat == nil {
		return nil
	}
	return t.heartbeat(progress)
}
