package weft_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"github.com/weft/weft/workers/go/weft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamRecorder records a worker's Work streams through a client stream interceptor: the credits
// and outputs each message sends, the assignments and answers each message brings. The first
// message that carries outputs can be held until release (hold), or dropped with its stream
// broken as if the connection had failed (breakFirst).
type streamRecorder struct {
	hold, breakFirst bool

	mu      sync.Mutex
	streams int
	// outstanding is credits sent minus assignments received; mostOutstanding its peak.
	outstanding, mostOutstanding int
	assignments                  int
	sentLeases                   []string
	results                      map[string]codes.Code
	withheld                     []string

	once     sync.Once
	held     chan struct{}
	released chan struct{}
}

func newStreamRecorder() *streamRecorder {
	return &streamRecorder{results: map[string]codes.Code{}, held: make(chan struct{}), released: make(chan struct{})}
}

func (r *streamRecorder) dialOption() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != weftv1.WorkerService_Work_FullMethodName {
			return streamer(ctx, desc, cc, method, opts...)
		}
		ctx, cancel := context.WithCancel(ctx)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		r.mu.Lock()
		r.streams++
		r.mu.Unlock()
		return &recordedStream{ClientStream: cs, r: r, cancel: cancel}, nil
	})
}

func (r *streamRecorder) release() { close(r.released) }

func (r *streamRecorder) snapshot() (streams, mostOutstanding, assignments int, sent []string, results map[string]codes.Code, withheld []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]codes.Code, len(r.results))
	for k, v := range r.results {
		out[k] = v
	}
	return r.streams, r.mostOutstanding, r.assignments, slices.Clone(r.sentLeases), out, slices.Clone(r.withheld)
}

type recordedStream struct {
	grpc.ClientStream
	r      *streamRecorder
	cancel context.CancelFunc
	broken atomic.Bool
}

func (s *recordedStream) SendMsg(m any) error {
	req := m.(*weftv1.WorkRequest)
	r := s.r
	if len(req.GetCompletions()) > 0 && (r.hold || r.breakFirst) {
		first := false
		r.once.Do(func() { first = true })
		if first && r.hold {
			close(r.held)
			<-r.released
		}
		if first && r.breakFirst {
			r.mu.Lock()
			for _, c := range req.GetCompletions() {
				r.withheld = append(r.withheld, c.GetLeaseId())
			}
			r.mu.Unlock()
			s.broken.Store(true)
			s.cancel()
			return nil
		}
	}
	if s.broken.Load() {
		return status.Error(codes.Unavailable, "the test broke the stream")
	}
	// Counted before it is sent: the answer may arrive before SendMsg returns.
	r.mu.Lock()
	r.outstanding += int(req.GetCredits())
	r.mostOutstanding = max(r.mostOutstanding, r.outstanding)
	r.mu.Unlock()
	err := s.ClientStream.SendMsg(m)
	if err == nil {
		r.mu.Lock()
		for _, c := range req.GetCompletions() {
			r.sentLeases = append(r.sentLeases, c.GetLeaseId())
		}
		r.mu.Unlock()
	}
	return err
}

func (s *recordedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if s.broken.Load() {
		return status.Error(codes.Unavailable, "the test broke the stream")
	}
	if err == nil {
		res := m.(*weftv1.WorkResponse)
		s.r.mu.Lock()
		s.r.outstanding -= len(res.GetAssignments())
		s.r.assignments += len(res.GetAssignments())
		for _, result := range res.GetResults() {
			s.r.results[result.GetLeaseId()] = codes.Code(result.GetCode())
		}
		s.r.mu.Unlock()
	}
	return err
}

func TestTasksAndOutputsTravelOnOneWorkStream(t *testing.T) {
	const n, concurrency = 40, 8
	queue := uniqueName("go-stream")
	c := client(t, daemon.address())
	runID := queueTasks(t, c, queue, "echo", n)
	calls := newRecorder(false)
	rec := newStreamRecorder()
	logs := &logCapture{}
	var running, most atomic.Int32
	startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: concurrency, Logger: logs.logger()},
		map[string]weft.Handler{
			"echo": func(ctx context.Context, task *weft.Task) (any, error) {
				now := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
				}
				time.Sleep(time.Millisecond) // long enough for the slots to fill
				return task.TaskID, nil
			},
		}, calls.dialOption(), rec.dialOption())

	run := waitSucceeded(t, c, runID)
	for i := range n {
		id := fmt.Sprintf("t%d", i)
		if out := plain(taskOf(run, id).GetOutput()); out != id {
			t.Errorf("task %s output %v", id, out)
		}
	}
	waitFor(t, "every output to be answered", 20*time.Second, func() bool {
		_, _, _, _, results, _ := rec.snapshot()
		return len(results) == n
	})
	streams, mostOutstanding, assignments, sent, results, _ := rec.snapshot()
	if streams != 1 || assignments != n {
		t.Fatalf("%d streams brought %d assignments, want 1 stream and %d", streams, assignments, n)
	}
	if mostOutstanding > concurrency {
		t.Errorf("%d credits unused at once, more than the %d slots", mostOutstanding, concurrency)
	}
	if m := most.Load(); m > concurrency {
		t.Errorf("%d handlers ran at once with concurrency %d", m, concurrency)
	}
	seen := map[string]bool{}
	for _, lease := range sent {
		if seen[lease] {
			t.Errorf("lease %s sent twice", lease)
		}
		seen[lease] = true
		if code, ok := results[lease]; !ok || code != codes.OK {
			t.Errorf("lease %s answered %v (answered: %v)", lease, code, ok)
		}
	}
	if len(seen) != n {
		t.Errorf("%d outputs sent on the stream, want %d", len(seen), n)
	}
	polls, completeTasks, completeTask := calls.settled(t)
	if len(polls) != 0 || len(completeTasks) != 0 || len(completeTask) != 0 {
		t.Errorf("unary calls made: %d PollTask, %d CompleteTasks, %d CompleteTask; want none", len(polls), len(completeTasks), len(completeTask))
	}
	if errs := logs.atLeast(slog.LevelWarn); len(errs) != 0 {
		t.Errorf("warnings or errors logged: %+v", errs)
	}
}

func TestOutputsABrokenStreamDidNotDeliverGoOutWithCompleteTasks(t *testing.T) {
	const n = 6
	queue := uniqueName("go-stream-broken")
	c := client(t, daemon.address())
	runID := queueTasks(t, c, queue, "gated", n)
	calls := newRecorder(false)
	rec := newStreamRecorder()
	rec.breakFirst = true
	logs := &logCapture{}
	var started atomic.Int32
	release := make(chan struct{})
	startWorker(t, daemon.address(), weft.Options{Queue: queue, Concurrency: n, Logger: logs.logger()},
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
		}, calls.dialOption(), rec.dialOption())
	// Every task is taken before any output goes out, so that breaking the stream loses no assignment.
	waitFor(t, fmt.Sprintf("%d handlers to start", n), 20*time.Second, func() bool { return started.Load() == n })
	close(release)

	run := waitSucceeded(t, c, runID)
	for i := range n {
		id := fmt.Sprintf("t%d", i)
		if tr := taskOf(run, id); plain(tr.GetOutput()) != id || tr.GetAttempt() != 1 {
			t.Errorf("task %s: output %v, attempt %d; want %s, 1", id, plain(tr.GetOutput()), tr.GetAttempt(), id)
		}
	}
	waitFor(t, "the worker to open a second Work stream", 20*time.Second, func() bool {
		streams, _, _, _, _, _ := rec.snapshot()
		return streams >= 2
	})
	_, completeTasks, _ := calls.settled(t)
	_, _, _, sent, _, withheld := rec.snapshot()
	if len(withheld) == 0 {
		t.Fatal("no output was withheld: the test did not break the stream")
	}
	viaCalls := map[string]codes.Code{}
	for _, call := range completeTasks {
		for i, lease := range call.leaseIDs {
			if call.err == nil {
				viaCalls[lease] = call.codes[i]
			}
		}
	}
	for _, lease := range withheld {
		if code, ok := viaCalls[lease]; !ok || code != codes.OK {
			t.Errorf("withheld output of lease %s: CompleteTasks answered %v (sent: %v)", lease, code, ok)
		}
		if slices.Contains(sent, lease) {
			t.Errorf("withheld output of lease %s was sent on a stream too", lease)
		}
	}
	if got := len(viaCalls) + len(sent); got != n {
		t.Errorf("%d outputs delivered (%d with CompleteTasks, %d on streams), want %d", got, len(viaCalls), len(sent), n)
	}
	if warned := logs.withMessage("daemon unavailable; retrying with backoff"); len(warned) != 1 || warned[0].attrs["rpc"] != "Work" {
		t.Errorf("outage logs %+v, want one for Work", warned)
	}
}

func TestAStaleLeaseOnTheStreamIsAnsweredAndTheOthersRecorded(t *testing.T) {
	rec := newStreamRecorder()
	rec.hold = true
	logs := &logCapture{}
	// The first message with an output (a's) is held; b's and s's queue behind it, and the second
	// attempt of s takes the spare credit while the stream's messages wait.
	staleLeaseStory(t, staleLease{
		queue: uniqueName("go-stream-stale"), others: []string{"a", "b"}, logs: logs,
		dialOption: rec.dialOption(), held: rec.held, heldWhat: "the first message with an output", release: rec.release,
	})
	waitFor(t, "4 outputs to be answered", 20*time.Second, func() bool {
		_, _, _, _, results, _ := rec.snapshot()
		return len(results) == 4
	})
	_, _, _, _, results, _ := rec.snapshot()
	refused := 0
	for lease, code := range results {
		switch code {
		case codes.OK:
		case codes.FailedPrecondition:
			refused++
		default:
			t.Errorf("lease %s answered %v, want OK or FailedPrecondition", lease, code)
		}
	}
	if refused != 1 {
		t.Fatalf("%d outputs refused, want 1 (the stale lease): %v", refused, results)
	}
	// The runtime logs the refusal after the recorder saw the answer arrive: wait for the line.
	waitFor(t, "the lease-lost line to be logged", 10*time.Second, func() bool {
		return len(logs.withMessage("lease lost; the result was not recorded")) > 0
	})
	lost := logs.withMessage("lease lost; the result was not recorded")
	if len(lost) != 1 || lost[0].attrs["rpc"] != "Work" || lost[0].attrs["code"] != "FailedPrecondition" ||
		lost[0].attrs["taskId"] != "s" || lost[0].attrs["attempt"] != "1" {
		t.Fatalf("lease-lost logs %+v", lost)
	}
	if errs := logs.atLeast(slog.LevelError); len(errs) != 0 {
		t.Errorf("errors logged: %+v", errs)
	}
}
