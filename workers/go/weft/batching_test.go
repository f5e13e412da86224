package weft_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"github.com/weft/weft/workers/go/weft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// rpcRecorder records a worker's PollTask, CompleteTasks and CompleteTask calls through a client
// interceptor. With holdFirstCompleteTasks, the first CompleteTasks call waits before it is sent
// until release is called, so that the completions made meanwhile queue behind it.
type rpcRecorder struct {
	mu            sync.Mutex
	polls         []pollCall
	completeTasks []completeTasksCall
	completeTask  []string
	// completing counts the CompleteTask(s) calls sent and not yet recorded: the daemon may
	// answer a run's final completion, and a test read the succeeded run, before the call's
	// reply reaches this interceptor.
	completing int

	holding  bool
	holdOnce sync.Once
	held     chan struct{}
	hold     chan struct{}
}

type pollCall struct {
	maxTasks    uint32
	assignments int
}

type completeTasksCall struct {
	leaseIDs []string
	codes    []codes.Code // one per completion; nil when the call failed
	err      error
}

func newRecorder(holdFirstCompleteTasks bool) *rpcRecorder {
	return &rpcRecorder{holding: holdFirstCompleteTasks, held: make(chan struct{}), hold: make(chan struct{})}
}

func (r *rpcRecorder) dialOption() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(r.intercept)
}

// release lets the held CompleteTasks call go.
func (r *rpcRecorder) release() { close(r.hold) }

func (r *rpcRecorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == weftv1.WorkerService_CompleteTasks_FullMethodName && r.holding {
		r.holdOnce.Do(func() {
			close(r.held)
			select {
			case <-r.hold:
			case <-ctx.Done():
			}
		})
	}
	completion := method == weftv1.WorkerService_CompleteTasks_FullMethodName ||
		method == weftv1.WorkerService_CompleteTask_FullMethodName
	if completion {
		r.mu.Lock()
		r.completing++
		r.mu.Unlock()
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if completion {
		r.completing--
	}
	switch method {
	case weftv1.WorkerService_PollTask_FullMethodName:
		call := pollCall{maxTasks: req.(*weftv1.PollTaskRequest).GetMaxTasks()}
		if res := reply.(*weftv1.PollTaskResponse); err == nil && res.GetAssignment() != nil {
			call.assignments = 1 + len(res.GetMoreAssignments())
		}
		r.polls = append(r.polls, call)
	case weftv1.WorkerService_CompleteTasks_FullMethodName:
		call := completeTasksCall{err: err}
		for _, c := range req.(*weftv1.CompleteTasksRequest).GetCompletions() {
			call.leaseIDs = append(call.leaseIDs, c.GetLeaseId())
		}
		if err == nil {
			for _, result := range reply.(*weftv1.CompleteTasksResponse).GetResults() {
				call.codes = append(call.codes, codes.Code(result.GetCode()))
			}
		}
		r.completeTasks = append(r.completeTasks, call)
	case weftv1.WorkerService_CompleteTask_FullMethodName:
		if err == nil {
			r.completeTask = append(r.completeTask, req.(*weftv1.CompleteTaskRequest).GetLeaseId())
		}
	}
	return err
}

// settled waits until every completion call sent so far has been recorded, then returns the
// record. Call it once the run it watches has ended: no completion is sent after that.
func (r *rpcRecorder) settled(t *testing.T) ([]pollCall, []completeTasksCall, []string) {
	t.Helper()
	waitFor(t, "the completion calls in flight to return", 20*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.completing == 0
	})
	return r.snapshot()
}

func (r *rpcRecorder) snapshot() ([]pollCall, []completeTasksCall, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.polls), slices.Clone(r.completeTasks), slices.Clone(r.completeTask)
}

// logCapture keeps a worker's log records (message, level and attributes as strings).
type logCapture struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

type captureHandler struct {
	c     *logCapture
	attrs []slog.Attr
}

func (c *logCapture) logger() *slog.Logger { return slog.New(&captureHandler{c: c}) }

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.c.mu.Lock()
	h.c.records = append(h.c.records, rec)
	h.c.mu.Unlock()
	return nil
}
func (h *captureHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &captureHandler{c: h.c, attrs: append(slices.Clone(h.attrs), attrs...)}
}
func (h *captureHandler) WithGroup(string) slog.Handler { return h }

func (c *logCapture) withMessage(msg string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.records {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) atLeast(level slog.Level) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range c.records {
		if r.level >= level {
			out = append(out, r)
		}
	}
	return out
}

// waitFor fails the test when check is still false after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() bool) {
	t.Helper()
	if !waitUntil(timeout, check) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// waitClosed fails the test when ch is not closed (or sent on) within timeout.
func waitClosed(t *testing.T, what string, timeout time.Duration, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// queueTasks triggers one run of n independent tasks t0..t(n-1) with handler on queue and waits
// until all of them wait in the queue.
func queueTasks(t *testing.T, c weftv1.WorkflowServiceClient, queue, handler string, n int) string {
	t.Helper()
	specs := make([]taskSpec, n)
	for i := range specs {
		specs[i] = taskSpec{id: fmt.Sprintf("t%d", i), handler: handler, input: i}
	}
	runID := runWorkflow(t, c, queue, nil, specs...)
	waitFor(t, fmt.Sprintf("the %d tasks of run %s to be queued", n, runID), 15*time.Second, func() bool {
		queued := 0
		for _, tr := range getRun(t, c, runID).GetTasks() {
			if tr.GetStatus() == weftv1.TaskStatus_TASK_STATUS_QUEUED {
				queued++
			}
		}
		return queued == n
	})
	return runID
}

func waitSucceeded(t *testing.T, c weftv1.WorkflowServiceClient, runID string) *weftv1.Run {
	t.Helper()
	run := waitFinished(t, c, runID)
	if run.GetStatus() != weftv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("run %s: %v", runID, run)
	}
	return run
}

// With NoStream: the Work stream's counterpart is TestTasksAndOutputsTravelOnOneWorkStream.
func TestABurstIsTakenInFewPollsAndCompletedInBatches(t *testing.T) {
	const n = 24
	queue := uniqueName("go-burst")
	c := client(t, daemon.address())
	runID := queueTasks(t, c, queue, "gated", n)
	rec := newRecorder(true)
	logs := &logCapture{}
	var started atomic.Int32
	release := make(chan struct{})
	startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: n, NoStream: true, Logger: logs.logger()},
		map[string]weft.Handler{
			"gated": func(ctx context.Context, task *weft.Task) (any, error) {
				started.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, context.Cause(ctx)
				}
				return task.TaskID, nil
			},
		}, rec.dialOption())

	waitFor(t, fmt.Sprintf("%d handlers to start", n), 20*time.Second, func() bool { return started.Load() == n })
	polls, _, _ := rec.snapshot()
	taken, pollsWithTasks, largest := 0, 0, 0
	for _, p := range polls {
		if p.maxTasks < 1 || p.maxTasks > n {
			t.Errorf("a poll asked for %d tasks with %d slots", p.maxTasks, n)
		}
		if p.assignments > int(p.maxTasks) {
			t.Errorf("a poll asking for %d tasks got %d", p.maxTasks, p.assignments)
		}
		if p.assignments > 0 {
			pollsWithTasks++
		}
		taken += p.assignments
		largest = max(largest, p.assignments)
	}
	if polls[0].maxTasks != n {
		t.Errorf("the first poll asked for %d tasks, want %d (every slot free)", polls[0].maxTasks, n)
	}
	if taken != n || pollsWithTasks >= n || largest < 2 {
		t.Fatalf("%d tasks taken in %d polls (largest %d): want %d tasks in fewer polls; polls %+v", taken, pollsWithTasks, largest, n, polls)
	}

	// The first CompleteTasks call is held: every other completion queues behind it.
	close(release)
	waitClosed(t, "the first CompleteTasks call", 20*time.Second, rec.held)
	waitFor(t, fmt.Sprintf("%d handlers to complete", n), 20*time.Second, func() bool {
		return len(logs.withMessage("task completed")) == n
	})
	rec.release()
	run := waitSucceeded(t, c, runID)
	for i := range n {
		id := fmt.Sprintf("t%d", i)
		if out := plain(taskOf(run, id).GetOutput()); out != id {
			t.Errorf("task %s output %v", id, out)
		}
	}
	_, calls, singles := rec.settled(t)
	if len(singles) != 0 {
		t.Errorf("%d CompleteTask calls, want none", len(singles))
	}
	leases := map[string]bool{}
	largest = 0
	for _, call := range calls {
		if call.err != nil {
			t.Errorf("CompleteTasks failed: %v", call.err)
		}
		for i, lease := range call.leaseIDs {
			if leases[lease] {
				t.Errorf("lease %s completed twice", lease)
			}
			leases[lease] = true
			if call.codes[i] != codes.OK {
				t.Errorf("lease %s answered %v", lease, call.codes[i])
			}
		}
		largest = max(largest, len(call.leaseIDs))
	}
	if len(leases) != n || len(calls) >= n || largest < 2 {
		t.Fatalf("%d completions in %d CompleteTasks calls (largest %d): want %d in fewer calls", len(leases), len(calls), largest, n)
	}
	t.Logf("%d tasks taken in %d polls, completed in %d CompleteTasks calls", n, pollsWithTasks, len(calls))
	if errs := logs.atLeast(slog.LevelWarn); len(errs) != 0 {
		t.Errorf("warnings or errors logged: %+v", errs)
	}
}

func TestConcurrencyBoundsTheRunningHandlers(t *testing.T) {
	for _, noStream := range []bool{false, true} {
		t.Run(map[bool]string{false: "Work stream", true: "PollTask"}[noStream], func(t *testing.T) {
			concurrencyBoundsTheRunningHandlers(t, noStream)
		})
	}
}

func concurrencyBoundsTheRunningHandlers(t *testing.T, noStream bool) {
	const n, concurrency = 10, 3
	queue := uniqueName("go-bound")
	c := client(t, daemon.address())
	runID := queueTasks(t, c, queue, "gated", n)
	rec := newRecorder(false)
	var started, running, most atomic.Int32
	tokens := make(chan struct{}, n)
	startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: concurrency, NoStream: noStream},
		map[string]weft.Handler{
			"gated": func(ctx context.Context, task *weft.Task) (any, error) {
				started.Add(1)
				now := running.Add(1)
				defer running.Add(-1)
				for {
					m := most.Load()
					if now <= m || most.CompareAndSwap(m, now) {
						break
					}
				}
				select {
				case <-tokens:
				case <-ctx.Done():
					return nil, context.Cause(ctx)
				}
				return nil, nil
			},
		}, rec.dialOption())

	// Handlers finish two at a time; each round, the freed slots are filled again.
	for released := 0; released < n; released += 2 {
		want := int32(min(released+concurrency, n))
		waitFor(t, fmt.Sprintf("%d handlers to start (%d released)", want, released), 20*time.Second,
			func() bool { return started.Load() == want })
		if r := running.Load(); r > concurrency {
			t.Fatalf("%d handlers running with concurrency %d", r, concurrency)
		}
		tokens <- struct{}{}
		tokens <- struct{}{}
	}
	waitSucceeded(t, c, runID)
	if m := most.Load(); m != concurrency {
		t.Fatalf("at most %d handlers ran at once, want %d", m, concurrency)
	}
	polls, _, _ := rec.snapshot()
	for _, p := range polls {
		if p.maxTasks < 1 || p.maxTasks > concurrency {
			t.Errorf("a poll asked for %d tasks with concurrency %d", p.maxTasks, concurrency)
		}
	}
	if started.Load() != n {
		t.Fatalf("%d handlers started, want %d", started.Load(), n)
	}
}

// With NoStream: the Work stream's counterpart is TestAStaleLeaseOnTheStreamIsAnsweredAndTheOthersRecorded.
func TestAStaleLeaseInABatchDoesNotStopTheOthers(t *testing.T) {
	rec := newRecorder(true)
	logs := &logCapture{}
	staleLeaseStory(t, staleLease{
		queue: uniqueName("go-stale"), others: []string{"a", "b", "c"}, noStream: true, logs: logs,
		dialOption: rec.dialOption(), held: rec.held, heldWhat: "the first CompleteTasks call", release: rec.release,
	})
	_, calls, singles := rec.settled(t)
	if len(singles) != 0 {
		t.Errorf("%d CompleteTask calls, want none", len(singles))
	}
	stale := 0
	for _, call := range calls {
		if call.err != nil {
			t.Fatalf("CompleteTasks failed: %v", call.err)
		}
		recorded := 0
		for _, code := range call.codes {
			if code == codes.OK {
				recorded++
			}
		}
		if refused := len(call.codes) - recorded; refused > 0 {
			stale += refused
			if recorded == 0 {
				t.Errorf("no completion recorded in the batch with the stale lease: %+v", call)
			}
			for _, code := range call.codes {
				if code != codes.OK && code != codes.FailedPrecondition {
					t.Errorf("a completion answered %v, want OK or FailedPrecondition", code)
				}
			}
		}
	}
	if stale != 1 {
		t.Fatalf("%d completions refused, want 1 (the stale lease): %+v", stale, calls)
	}
	lost := logs.withMessage("lease lost; the result was not recorded")
	if len(lost) != 1 || lost[0].attrs["rpc"] != "CompleteTasks" || lost[0].attrs["code"] != "FailedPrecondition" ||
		lost[0].attrs["taskId"] != "s" || lost[0].attrs["attempt"] != "1" {
		t.Fatalf("lease-lost logs %+v", lost)
	}
	if errs := logs.atLeast(slog.LevelError); len(errs) != 0 {
		t.Errorf("errors logged: %+v", errs)
	}
}

// olderWeftd is a weftd from before CompleteTasks and max_tasks: it relays the other calls to the
// test's daemon, one task per poll, and answers UNIMPLEMENTED to CompleteTasks.
type olderWeftd struct {
	weftv1.UnimplementedWorkerServiceServer
	upstream weftv1.WorkerServiceClient
}

func (s *olderWeftd) PollTask(ctx context.Context, req *weftv1.PollTaskRequest) (*weftv1.PollTaskResponse, error) {
	req.MaxTasks = 0
	return s.upstream.PollTask(ctx, req)
}
func (s *olderWeftd) Heartbeat(ctx context.Context, req *weftv1.HeartbeatRequest) (*weftv1.HeartbeatResponse, error) {
	return s.upstream.Heartbeat(ctx, req)
}
func (s *olderWeftd) CompleteTask(ctx context.Context, req *weftv1.CompleteTaskRequest) (*weftv1.CompleteTaskResponse, error) {
	return s.upstream.CompleteTask(ctx, req)
}
func (s *olderWeftd) FailTask(ctx context.Context, req *weftv1.FailTaskRequest) (*weftv1.FailTaskResponse, error) {
	return s.upstream.FailTask(ctx, req)
}

func startOlderWeftd(t *testing.T) string {
	t.Helper()
	upstream, err := grpc.NewClient("passthrough:///"+daemon.address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	weftv1.RegisterWorkerServiceServer(srv, &olderWeftd{upstream: weftv1.NewWorkerServiceClient(upstream)})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func TestAgainstADaemonWithoutCompleteTasksEachTaskIsCompletedWithCompleteTask(t *testing.T) {
	const n = 5
	queue := uniqueName("go-older")
	c := client(t, daemon.address())
	first := queueTasks(t, c, queue, "echo", n)
	rec := newRecorder(true)
	logs := &logCapture{}
	startWorker(t, startOlderWeftd(t), weft.Options{Queue: queue, Concurrency: n, Logger: logs.logger()},
		map[string]weft.Handler{
			"echo": func(ctx context.Context, task *weft.Task) (any, error) { return task.Input, nil },
		}, rec.dialOption())
	// The first CompleteTasks call is held until every output waits, so that the fallback also
	// takes the queued ones.
	waitClosed(t, "the first CompleteTasks call", 20*time.Second, rec.held)
	waitFor(t, fmt.Sprintf("%d handlers to complete", n), 20*time.Second, func() bool {
		return len(logs.withMessage("task completed")) == n
	})
	rec.release()
	run := waitSucceeded(t, c, first)
	for i := range n {
		if out := plain(taskOf(run, fmt.Sprintf("t%d", i)).GetOutput()); out != float64(i) {
			t.Errorf("task t%d output %v", i, out)
		}
	}
	// After the fallback, CompleteTasks is not tried again.
	second := runWorkflow(t, c, queue, nil, taskSpec{id: "t", handler: "echo", input: "again"})
	if out := plain(taskOf(waitSucceeded(t, c, second), "t").GetOutput()); out != "again" {
		t.Errorf("second run output %v", out)
	}

	_, calls, singles := rec.settled(t)
	if len(calls) != 1 || status.Code(calls[0].err) != codes.Unimplemented {
		t.Fatalf("CompleteTasks calls %+v, want one answered Unimplemented", calls)
	}
	if len(singles) != n+1 {
		t.Fatalf("%d CompleteTask calls, want %d", len(singles), n+1)
	}
	if got := logs.withMessage("the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one"); len(got) != 1 {
		t.Fatalf("%d fallback log lines, want 1", len(got))
	}
	if got := logs.withMessage("the daemon does not implement Work (an older weftd); polling with PollTask"); len(got) != 1 {
		t.Fatalf("%d Work fallback log lines, want 1", len(got))
	}
	if errs := logs.atLeast(slog.LevelWarn); len(errs) != 0 {
		t.Errorf("warnings or errors logged: %+v", errs)
	}
}

// staleLease is the story of a stale lease among completions held back: tasks `others` and "s" (a
// 500 ms heartbeat timeout, 2 attempts) start; "a" finishes first and its completion is held (held
// is closed once it is, release lets it go); the others and "s" finish behind it. "s"'s lease
// expires meanwhile and a second attempt returns "retried".
type staleLease struct {
	queue      string
	others     []string
	noStream   bool
	logs       *logCapture
	dialOption grpc.DialOption
	held       <-chan struct{}
	heldWhat   string
	release    func()
}

// staleLeaseStory runs the story and checks the run: every task on attempt 1 but "s", on attempt 2
// with output "retried".
func staleLeaseStory(t *testing.T, st staleLease) {
	t.Helper()
	c := client(t, daemon.address())
	ids := append(slices.Clone(st.others), "s")
	var started atomic.Int32
	gates := map[string]chan struct{}{}
	for _, id := range ids {
		gates[id] = make(chan struct{})
	}
	retried := make(chan struct{})
	hold := func(ctx context.Context, task *weft.Task) (any, error) {
		if task.TaskID == "s" && task.Attempt > 1 {
			close(retried)
			return "retried", nil
		}
		started.Add(1)
		select {
		case <-gates[task.TaskID]:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		return task.TaskID, nil
	}
	// One slot more than tasks: the credit or poll that takes the second attempt of "s".
	startWorker(t, daemon.address(), weft.Options{Queue: st.queue, Concurrency: len(ids) + 1, NoStream: st.noStream, Logger: st.logs.logger()},
		map[string]weft.Handler{"hold": hold}, st.dialOption)
	specs := make([]taskSpec, 0, len(ids))
	for _, id := range st.others {
		specs = append(specs, taskSpec{id: id, handler: "hold"})
	}
	// Its heartbeats stop when its handler returns: its lease expires while its output waits.
	specs = append(specs, taskSpec{id: "s", handler: "hold", heartbeat: 500 * time.Millisecond, maxAttempts: 2})
	runID := runWorkflow(t, c, st.queue, nil, specs...)
	n := len(ids)
	waitFor(t, fmt.Sprintf("%d handlers to start", n), 20*time.Second, func() bool { return started.Load() == int32(n) })

	close(gates["a"])
	waitClosed(t, st.heldWhat, 20*time.Second, st.held)
	for _, id := range ids[1:] {
		close(gates[id])
	}
	completed := func(k int) func() bool {
		return func() bool { return len(st.logs.withMessage("task completed")) == k }
	}
	waitFor(t, fmt.Sprintf("%d handlers to complete", n), 20*time.Second, completed(n))
	// The lease of s's first attempt expired: the daemon gave the task to a second attempt.
	waitClosed(t, "the second attempt of s", 20*time.Second, retried)
	waitFor(t, fmt.Sprintf("%d handlers to complete", n+1), 20*time.Second, completed(n+1))
	st.release()

	run := waitSucceeded(t, c, runID)
	for _, id := range ids {
		want := int32(1)
		if id == "s" {
			want = 2
		}
		if tr := taskOf(run, id); tr.GetAttempt() != want {
			t.Errorf("task %s: attempt %d, want %d", id, tr.GetAttempt(), want)
		}
	}
	if out := plain(taskOf(run, "s").GetOutput()); out != "retried" {
		t.Errorf("task s output %v", out)
	}
}
