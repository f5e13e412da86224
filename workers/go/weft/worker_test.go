package weft_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"github.com/weft/weft/workers/go/weft"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// onMessage is a slog handler that calls fn once, when a record with message msg is logged.
type onMessage struct {
	msg  string
	fn   func()
	once sync.Once
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(h.fn)
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

type taskSpec struct {
	id, handler string
	dependsOn   []string
	input       any
	heartbeat   time.Duration
	maxAttempts int32
}

var counter struct {
	sync.Mutex
	n int
}

func uniqueName(prefix string) string {
	counter.Lock()
	defer counter.Unlock()
	counter.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), counter.n)
}

func jsonValue(t *testing.T, v any) *structpb.Value {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := &structpb.Value{}
	if err := protojson.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func plain(v *structpb.Value) any {
	if v == nil || v.GetKind() == nil {
		return nil
	}
	return v.AsInterface()
}

// runWorkflow submits a workflow of tasks on queue and triggers it; returns the run id.
func runWorkflow(t *testing.T, c weftv1.WorkflowServiceClient, queue string, runInput any, tasks ...taskSpec) string {
	t.Helper()
	name := uniqueName("wf")
	def := &weftv1.WorkflowDefinition{Name: name}
	for _, s := range tasks {
		d := &weftv1.TaskDefinition{Id: s.id, Handler: s.handler, Queue: queue, DependsOn: s.dependsOn}
		if s.input != nil {
			d.Input = jsonValue(t, s.input)
		}
		if s.heartbeat > 0 {
			d.Timeouts = &weftv1.TaskTimeouts{Heartbeat: durationpb.New(s.heartbeat)}
		}
		if s.maxAttempts > 0 {
			d.Retry = &weftv1.RetryPolicy{MaxAttempts: s.maxAttempts, InitialBackoff: durationpb.New(100 * time.Millisecond)}
		}
		def.Tasks = append(def.Tasks, d)
	}
	if _, err := c.SubmitWorkflow(callCtx(t), &weftv1.SubmitWorkflowRequest{Definition: def}); err != nil {
		t.Fatal(err)
	}
	req := &weftv1.TriggerRequest{Workflow: name}
	if runInput != nil {
		req.Input = jsonValue(t, runInput)
	}
	res, err := c.Trigger(callCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return res.GetRun().GetId()
}

func getRun(t *testing.T, c weftv1.WorkflowServiceClient, runID string) *weftv1.Run {
	t.Helper()
	res, err := c.GetRun(callCtx(t), &weftv1.GetRunRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetRun()
}

func waitFinished(t *testing.T, c weftv1.WorkflowServiceClient, runID string) *weftv1.Run {
	t.Helper()
	var run *weftv1.Run
	if !waitUntil(20*time.Second, func() bool {
		run = getRun(t, c, runID)
		return run.GetStatus() != weftv1.RunStatus_RUN_STATUS_RUNNING
	}) {
		t.Fatalf("run %s did not finish: %v", runID, run)
	}
	return run
}

func taskOf(run *weftv1.Run, id string) *weftv1.TaskRun {
	for _, tr := range run.GetTasks() {
		if tr.GetTaskId() == id {
			return tr
		}
	}
	return nil
}

// startWorker runs w until the test ends; stop() stops it early and waits for Run to return.
func startWorker(t *testing.T, address string, opts weft.Options, handlers map[string]weft.Handler, dialOpts ...grpc.DialOption) (stop func()) {
	t.Helper()
	conn, err := weft.Dial(address, dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	w := weft.NewWorker(conn, opts)
	for name, h := range handlers {
		w.Register(name, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("the worker did not stop")
			}
			conn.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestHandlersGetTheTaskAndReturnOutputs(t *testing.T) {
	queue := uniqueName("go-ctx")
	c := client(t, daemon.address())
	startWorker(t, daemon.address(), weft.Options{Queue: queue, WorkerID: "go-ctx", Concurrency: 2}, map[string]weft.Handler{
		"first": func(ctx context.Context, task *weft.Task) (any, error) {
			var in []any
			var runInput struct{ N int }
			if err := task.DecodeInput(&in); err != nil {
				return nil, err
			}
			if err := task.DecodeRunInput(&runInput); err != nil {
				return nil, err
			}
			return map[string]any{"input": in, "n": runInput.N, "attempt": task.Attempt}, nil
		},
		"second": func(ctx context.Context, task *weft.Task) (any, error) {
			var parent map[string]any
			if err := task.DecodeParentOutput("a", &parent); err != nil {
				return nil, err
			}
			return map[string]any{"parent": parent, "queue": task.Queue, "handler": task.Handler,
				"maxAttempts": task.MaxAttempts, "worker": task.WorkerID, "version": task.WorkflowVersion}, nil
		},
	})
	runID := runWorkflow(t, c, queue, map[string]any{"n": 4},
		taskSpec{id: "a", handler: "first", input: []any{1, "x"}},
		taskSpec{id: "b", handler: "second", dependsOn: []string{"a"}})
	run := waitFinished(t, c, runID)
	if run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run %v", run)
	}
	got, _ := json.Marshal(plain(run.GetOutput()))
	want := fmt.Sprintf(`{"b":{"handler":"second","maxAttempts":3,"parent":{"attempt":1,"input":[1,"x"],"n":4},"queue":%q,"version":1,"worker":"go-ctx"}}`, queue)
	if string(got) != want {
		t.Fatalf("output\n got %s\nwant %s", got, want)
	}
	if w := taskOf(run, "a").GetWorkerId(); w != "go-ctx" {
		t.Fatalf("worker id %q", w)
	}
}

type quotaError struct{}

func (quotaError) Error() string     { return "over quota" }
func (quotaError) ErrorType() string { return "Quota" }

func TestFailuresRetriesPanicsAndNonRetryableErrors(t *testing.T) {
	queue := uniqueName("go-fail")
	c := client(t, daemon.address())
	startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: 5}, map[string]weft.Handler{
		"fail": func(ctx context.Context, task *weft.Task) (any, error) {
			return nil, fmt.Errorf("boom on attempt %d", task.Attempt)
		},
		"refuse": func(ctx context.Context, task *weft.Task) (any, error) {
			return nil, weft.NonRetryableWithType("Refused", errors.New("never"))
		},
		"quota": func(ctx context.Context, task *weft.Task) (any, error) { return nil, quotaError{} },
		"panicOnce": func(ctx context.Context, task *weft.Task) (any, error) {
			if task.Attempt == 1 {
				var m map[string]int
				m["x"] = 1 // a nil-map write: a real runtime panic
			}
			return task.Attempt, nil
		},
		"unserialisable": func(ctx context.Context, task *weft.Task) (any, error) { return make(chan int), nil },
	})
	type outcome struct {
		status  weftv1.RunStatus
		attempt int32
		errType string
		message string
	}
	want := map[string]outcome{
		"fail":           {weftv1.RunStatus_RUN_STATUS_FAILED, 2, "Error", "boom on attempt 2"},
		"refuse":         {weftv1.RunStatus_RUN_STATUS_FAILED, 1, "Refused", "never"},
		"quota":          {weftv1.RunStatus_RUN_STATUS_FAILED, 2, "Quota", "over quota"},
		"panicOnce":      {weftv1.RunStatus_RUN_STATUS_SUCCEEDED, 2, "", ""},
		"unserialisable": {weftv1.RunStatus_RUN_STATUS_FAILED, 1, "OutputNotSerializable", "the handler's output is not JSON-serialisable: json: unsupported type: chan int"},
	}
	runs := map[string]string{}
	for name := range want {
		runs[name] = runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: name, maxAttempts: 2})
	}
	for name, w := range want {
		run := waitFinished(t, c, runs[name])
		tr := taskOf(run, "t")
		got := outcome{run.GetStatus(), tr.GetAttempt(), tr.GetError().GetType(), tr.GetError().GetMessage()}
		if name == "panicOnce" {
			got.errType, got.message = "", ""
		}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
	}
	if out := plain(taskOf(getRun(t, c, runs["panicOnce"]), "t").GetOutput()); out != float64(2) {
		t.Errorf("panicOnce output %v", out)
	}
}

func TestCancellingTheRunCancelsTheHandlerContext(t *testing.T) {
	queue := uniqueName("go-cancel")
	c := client(t, daemon.address())
	started := make(chan struct{})
	causes := make(chan error, 1)
	startWorker(t, daemon.address(), weft.Options{Queue: queue}, map[string]weft.Handler{
		"wait": func(ctx context.Context, task *weft.Task) (any, error) {
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return "ignored", nil
		},
	})
	runID := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "wait", heartbeat: 600 * time.Millisecond})
	<-started
	if _, err := c.Cancel(callCtx(t), &weftv1.CancelRequest{RunId: runID, Reason: "go test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, weft.ErrRunCancelled) {
			t.Fatalf("cause %v", cause)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	if run := waitFinished(t, c, runID); run.GetStatus() != weftv1.RunStatus_RUN_STATUS_CANCELLED {
		t.Fatalf("run %v", run)
	}
}

func TestHeartbeatReportsProgress(t *testing.T) {
	queue := uniqueName("go-progress")
	c := client(t, daemon.address())
	release := make(chan struct{})
	startWorker(t, daemon.address(), weft.Options{Queue: queue}, map[string]weft.Handler{
		"slow": func(ctx context.Context, task *weft.Task) (any, error) {
			if err := task.Heartbeat(map[string]int{"done": 50}); err != nil {
				return nil, err
			}
			<-release
			return "ok", nil
		},
	})
	runID := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "slow"})
	var progress any
	ok := waitUntil(15*time.Second, func() bool {
		progress = plain(taskOf(getRun(t, c, runID), "t").GetProgress())
		return progress != nil
	})
	close(release)
	if !ok || fmt.Sprint(progress) != "map[done:50]" {
		t.Fatalf("progress %v", progress)
	}
	if run := waitFinished(t, c, runID); run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run %v", run)
	}
}

func TestStopLetsInFlightTasksFinishAndPollsNoMore(t *testing.T) {
	queue := uniqueName("go-stop")
	c := client(t, daemon.address())
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	closing := make(chan struct{})
	logger := slog.New(&onMessage{msg: "worker closing", fn: func() { close(closing) }})
	stop := startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: 2, ShutdownGrace: 15 * time.Second, Logger: logger},
		map[string]weft.Handler{
			"slow": func(ctx context.Context, task *weft.Task) (any, error) {
				once.Do(func() { close(started) })
				<-release
				return "finished", nil
			},
		})
	first := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "slow"})
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	<-closing
	close(release)
	<-stopped
	later := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "slow"})
	if run := waitFinished(t, c, first); run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("in-flight run %v", run)
	}
	if s := taskOf(getRun(t, c, later), "t").GetStatus(); s != weftv1.TaskStatus_TASK_STATUS_QUEUED {
		t.Fatalf("a stopped worker took a task: %v", s)
	}
}

func TestATaskStillRunningAfterTheGraceIsAbandoned(t *testing.T) {
	queue := uniqueName("go-abandon")
	c := client(t, daemon.address())
	started := make(chan struct{})
	causes := make(chan error, 1)
	stop := startWorker(t, daemon.address(), weft.Options{Queue: queue, ShutdownGrace: 300 * time.Millisecond},
		map[string]weft.Handler{
			"stubborn": func(ctx context.Context, task *weft.Task) (any, error) {
				close(started)
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return "too late", nil
			},
		})
	runID := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "stubborn"})
	<-started
	stop()
	if cause := <-causes; !errors.Is(cause, weft.ErrWorkerShutdown) {
		t.Fatalf("cause %v", cause)
	}
	if s := getRun(t, c, runID).GetStatus(); s != weftv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("an abandoned task's result was reported: run %v", s)
	}
}

func TestReconnectsAfterTheDaemonRestarts(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	d, err := startWeftd(port, uniqueName("gotest-restart"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.stop() }()
	queue := uniqueName("go-restart")
	startWorker(t, d.address(), weft.Options{Queue: queue, RetryMaxDelay: 500 * time.Millisecond}, map[string]weft.Handler{
		"echo": func(ctx context.Context, task *weft.Task) (any, error) { return task.Input, nil },
	})
	c := client(t, d.address())
	if run := waitFinished(t, c, runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "echo", input: 1})); run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run before the restart %v", run)
	}
	d.kill()
	if d, err = startWeftd(port, d.prefix); err != nil {
		t.Fatal(err)
	}
	run := waitFinished(t, c, runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "echo", input: 2}))
	if run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED || fmt.Sprint(plain(run.GetOutput())) != "map[t:2]" {
		t.Fatalf("run after the restart %v", run)
	}
}

func TestRunReportsInvalidOptionsAndMissingHandlers(t *testing.T) {
	conn, err := weft.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := weft.NewWorker(conn, weft.Options{}).Run(context.Background()); err == nil {
		t.Fatal("an empty queue was accepted")
	}
	if err := weft.NewWorker(conn, weft.Options{Queue: "q", Logger: quiet}).Run(context.Background()); err == nil {
		t.Fatal("a worker without handlers was accepted")
	}
	w := weft.NewWorker(conn, weft.Options{Queue: "q"})
	w.Register("h", func(context.Context, *weft.Task) (any, error) { return nil, nil })
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
	}()
	w.Register("h", func(context.Context, *weft.Task) (any, error) { return nil, nil })
}

func TestNonRetryableWrapsAndKeepsTheCause(t *testing.T) {
	cause := errors.New("bad input")
	err := weft.NonRetryable(fmt.Errorf("decoding: %w", cause))
	if !weft.IsNonRetryable(err) || !errors.Is(err, cause) || weft.IsNonRetryable(cause) {
		t.Fatalf("NonRetryable(%v)", err)
	}
	if weft.NonRetryable(nil) != nil {
		t.Fatal("NonRetryable(nil) is not nil")
	}
	if !weft.IsNonRetryable(fmt.Errorf("wrapped: %w", err)) {
		t.Fatal("a wrapped non-retryable error lost its mark")
	}
}
