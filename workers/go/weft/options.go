package weft

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Options configure a Worker. Zero values take the defaults given on each field.
type Options struct {
	// Queue is the task queue to poll. Required.
	Queue string
	// Concurrency is the most handlers run at once: the worker grants the daemon a credit per free
	// slot on its Work stream (or asks PollTask for as many tasks, at most 256 per call). Default 10.
	Concurrency int
	// NoStream makes the worker take tasks with PollTask and send outputs with CompleteTasks
	// instead of a Work stream (which it also falls back to against a daemon without Work).
	// Default false: one Work stream.
	NoStream bool
	// WorkerID is the identity shown on task runs. Default "<hostname>:<pid>".
	WorkerID string
	// Token is a bearer token sent with every call. Default none.
	Token string
	// PollWait is how long each PollTask waits for a task; the daemon caps it. Default 20s.
	PollWait time.Duration
	// HeartbeatInterval is the interval of automatic heartbeats. Default: a third of each task's
	// heartbeat timeout.
	HeartbeatInterval time.Duration
	// ShutdownGrace is how long in-flight tasks get to finish once Run's context is done, before
	// their context is cancelled with ErrWorkerShutdown and they are abandoned. Default 30s.
	ShutdownGrace time.Duration
	// RetryInitialDelay is the first delay before retrying a failed call; it doubles on each
	// failure. Default 100ms.
	RetryInitialDelay time.Duration
	// RetryMaxDelay is the longest delay between retries. Default 5s.
	RetryMaxDelay time.Duration
	// ReportAttempts is how many times each task's completion (CompleteTasks, or CompleteTask
	// against an older weftd) or failure (FailTask) is tried while the daemon is unavailable.
	// Default 5.
	ReportAttempts int
	// Logger receives the worker's logs, with queue and workerId attributes, and each task's
	// runId, taskId and attempt. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults validates o and fills in the defaults, in one place.
func (o Options) withDefaults() (Options, error) {
	if o.Queue == "" {
		return o, errors.New("weft: Options.Queue must not be empty")
	}
	if o.Concurrency < 0 || o.ReportAttempts < 0 {
		return o, fmt.Errorf("weft: Options.Concurrency and ReportAttempts must not be negative")
	}
	for name, d := range map[string]time.Duration{
		"PollWait": o.PollWait, "HeartbeatInterval": o.HeartbeatInterval, "ShutdownGrace": o.ShutdownGrace,
		"RetryInitialDelay": o.RetryInitialDelay, "RetryMaxDelay": o.RetryMaxDelay,
	} {
		if d < 0 {
			return o, fmt.Errorf("weft: Options.%s must not be negative, got %s", name, d)
		}
	}
	if o.Concurrency == 0 {
		o.Concurrency = 10
	}
	if o.WorkerID == "" {
		host, _ := os.Hostname()
		o.WorkerID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.PollWait == 0 {
		o.PollWait = 20 * time.Second
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = 30 * time.Second
	}
	if o.RetryInitialDelay == 0 {
		o.RetryInitialDelay = 100 * time.Millisecond
	}
	if o.RetryMaxDelay == 0 {
		o.RetryMaxDelay = 5 * time.Second
	}
	if o.ReportAttempts == 0 {
		o.ReportAttempts = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
