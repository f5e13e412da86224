package weft

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxUnusedCredits is the most credits the daemon lets a Work stream hold unused.
const maxUnusedCredits = 1000

// streamLoop takes tasks over Work streams until ctx is done, opening a new stream with backoff
// when one breaks. Against a daemon without Work (UNIMPLEMENTED, an older weftd) it polls with
// PollTask instead, for the rest of the worker's life.
func (w *Worker) streamLoop(ctx context.Context, handlers []string) {
	b := backoff{initial: w.opts.RetryInitialDelay, max: w.opts.RetryMaxDelay}
	for ctx.Err() == nil {
		received, err := w.runStream(ctx, handlers)
		if status.Code(err) == codes.Unimplemented {
			w.logger.Info("the daemon does not implement Work (an older weftd); polling with PollTask")
			w.pollLoop(ctx, handlers)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if received {
			b.reset()
		}
		if err != nil {
			w.health.failed("Work", err)
		}
		sleep(ctx, b.next())
	}
}

// runStream runs one Work stream until it ends: the daemon ended it, it broke, or ctx is done and
// the daemon answered the half-close. It reports whether the daemon sent anything, and why the
// stream ended (nil: the daemon ended it normally).
func (w *Worker) runStream(ctx context.Context, handlers []string) (bool, error) {
	// Not derived from ctx: at shutdown the stream is half-closed, so that the outputs sent are
	// answered and the tasks the daemon already took arrive; it is cut only if that takes longer
	// than the shutdown grace.
	streamCtx, cut := context.WithCancel(w.outgoing(context.Background()))
	defer cut()
	stream, err := w.client.Work(streamCtx)
	if err != nil {
		return false, err
	}
	s := &workStream{w: w, stream: stream, wake: make(chan struct{}, 1), ended: make(chan struct{}), sent: map[string]*pendingCompletion{}}
	w.stream.Store(s)
	go func() {
		select {
		case <-s.ended:
		case <-ctx.Done():
			select {
			case <-s.ended:
			case <-time.After(w.opts.ShutdownGrace):
				cut()
			}
		}
	}()
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		if err := s.sendLoop(ctx, handlers); err != nil && !errors.Is(err, io.EOF) {
			// The stream broke; Recv reports why.
			w.logger.Debug("sending on the Work stream failed", slog.String("error", err.Error()))
		}
	}()
	received := false
	var recvErr error
	for {
		res, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		if !received {
			received = true
			w.health.ok()
		}
		s.receive(res)
	}
	w.stream.CompareAndSwap(s, nil)
	s.close()
	cut()
	<-sending
	return received, recvErr
}

// workStream is one Work stream of a worker: it grants the daemon a credit per free slot and
// starts each assignment the daemon sends; it sends task outputs and settles each on its answer.
// An output the stream cannot deliver (it broke or ended first), or whose answer asks for a retry,
// goes to the completion batcher, which delivers it with CompleteTasks.
type workStream struct {
	w      *Worker
	stream grpc.BidiStreamingClient[weftv1.WorkRequest, weftv1.WorkResponse]
	// wake tells the send loop that outputs wait; ended is closed once the stream has ended.
	wake  chan struct{}
	ended chan struct{}

	mu sync.Mutex
	// granted counts the credits the daemon holds unused.
	granted int
	// outbox holds the outputs to send; sent those sent and not yet answered, by lease.
	outbox []*pendingCompletion
	sent   map[string]*pendingCompletion
	// draining is set once the stream takes no more outputs (it is half-closed or ended).
	draining bool
}

// offer queues an output to send; false when the stream takes no more (the send loop is woken
// all the same, for the credit of the output's slot).
func (s *workStream) offer(c *pendingCompletion) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		s.signal()
		return false
	}
	s.outbox = append(s.outbox, c)
	s.signal()
	return true
}

func (s *workStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sendLoop sends the first message (queue, identity, a credit per free slot), then a message
// whenever slots free or outputs wait, until the stream ends or ctx is done; then it sends the
// outputs still queued and half-closes the stream.
func (s *workStream) sendLoop(ctx context.Context, handlers []string) error {
	req := &weftv1.WorkRequest{Queue: s.w.opts.Queue, WorkerId: s.w.opts.WorkerID, Handlers: handlers}
	for {
		stopping := ctx.Err() != nil
		if !s.fill(req, stopping) {
			return nil
		}
		if req.GetQueue() != "" || req.GetCredits() > 0 || len(req.GetCompletions()) > 0 {
			if err := s.stream.Send(req); err != nil {
				return err
			}
		}
		if stopping {
			return s.stream.CloseSend()
		}
		req = &weftv1.WorkRequest{}
		select {
		case <-s.wake:
			// Handlers that return at the same moment send their outputs and credits together.
			runtime.Gosched()
		case <-ctx.Done():
		case <-s.ended:
			return nil
		}
	}
}

// fill adds to req the credits of the slots freed (none when stopping) and the outputs queued (at
// most maxCompletionsPerCall; the rest wake the loop again). False once the stream has ended.
func (s *workStream) fill(req *weftv1.WorkRequest, stopping bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		return false
	}
	if stopping {
		s.draining = true
	} else if credits := min(s.w.freeSlots(), maxUnusedCredits) - s.granted; credits > 0 {
		req.Credits = uint32(credits)
		s.granted += credits
	}
	n := min(len(s.outbox), maxCompletionsPerCall)
	for _, c := range s.outbox[:n] {
		if c.e.abandoned.Load() {
			// The task was abandoned at shutdown before its output went out: the output is dropped.
			c.finish(true)
			continue
		}
		req.Completions = append(req.Completions, &weftv1.CompleteTaskRequest{LeaseId: c.leaseID, Output: c.output})
		s.sent[c.leaseID] = c
	}
	s.outbox = s.outbox[n:]
	if len(s.outbox) > 0 {
		s.signal()
	} else {
		s.outbox = nil
	}
	return true
}

// receive starts the assignments of a message and settles the outputs it answers.
func (s *workStream) receive(res *weftv1.WorkResponse) {
	s.mu.Lock()
	// Under the lock, so that the send loop never counts a credit used and its slot free at once.
	for _, a := range res.GetAssignments() {
		s.granted--
		// Assignments that arrive while closing are still run: this worker holds their leases.
		s.w.start(a)
	}
	type answer struct {
		c      *pendingCompletion
		result *weftv1.CompleteTaskResult
	}
	answers := make([]answer, 0, len(res.GetResults()))
	for _, result := range res.GetResults() {
		if c, ok := s.sent[result.GetLeaseId()]; ok {
			delete(s.sent, result.GetLeaseId())
			answers = append(answers, answer{c, result})
		}
	}
	s.mu.Unlock()
	for _, a := range answers {
		if err := resultError(a.result, a.c.leaseID); err == nil {
			a.c.finish(true)
		} else {
			s.w.completions.settle(a.c, err, "Work")
		}
	}
}

// close ends the stream's part: outputs queued or sent and not answered go to the completion
// batcher.
func (s *workStream) close() {
	s.mu.Lock()
	s.draining = true
	left := s.outbox
	for _, c := range s.sent {
		left = append(left, c)
	}
	s.outbox = nil
	s.sent = nil
	s.granted = 0
	s.mu.Unlock()
	close(s.ended)
	for _, c := range left {
		s.w.completions.enqueue(c)
	}
}
