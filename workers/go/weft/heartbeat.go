package weft

import (
	"context"
	"sync"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	fallbackHeartbeatInterval = 10 * time.Second
	minimumHeartbeatInterval  = 10 * time.Millisecond
)

// heartbeatInterval is override, else a third of the assignment's heartbeat timeout.
func heartbeatInterval(a *weftv1.TaskAssignment, override time.Duration) time.Duration {
	if override > 0 {
		return override
	}
	var window time.Duration
	if a.GetHeartbeatTimeout() != nil {
		window = a.GetHeartbeatTimeout().AsDuration()
	} else if a.GetLeaseDeadline() != nil {
		window = time.Until(a.GetLeaseDeadline().AsTime())
	}
	if window <= 0 {
		return fallbackHeartbeatInterval
	}
	return max(window/3, minimumHeartbeatInterval)
}

// heartbeater keeps one lease alive while its handler runs and relays what the daemon answers.
type heartbeater struct {
	client      weftv1.WorkerServiceClient
	leaseID     string
	interval    time.Duration
	health      *daemonHealth
	onCancel    func()
	onLeaseLost func(error)
	callOpts    func(context.Context) context.Context
	wake        chan struct{}
	mu          sync.Mutex
	progress    *structpb.Value
	stopped     bool
	stop        chan struct{}
	stopOnce    sync.Once
	done        chan struct{}
}

func newHeartbeater(h *heartbeater) *heartbeater {
	h.wake = make(chan struct{}, 1)
	h.stop = make(chan struct{})
	return h
}

func (h *heartbeater) start() { go h.run() }

// halt stops heartbeating; answers to calls in flight are ignored.
func (h *heartbeater) halt() {
	h.stopOnce.Do(func() {
		h.mu.Lock()
		h.stopped = true
		h.mu.Unlock()
		close(h.stop)
	})
}

func (h *heartbeater) isStopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopped
}

// beat keeps progress (when not nil) for this and later heartbeats and sends one soon.
func (h *heartbeater) beat(progress any) error {
	if progress != nil {
		v, err := toValue(progress)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.progress = v
		h.mu.Unlock()
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return nil
}

func (h *heartbeater) run() {
	timer := time.NewTimer(h.interval)
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-timer.C:
		case <-h.wake:
		}
		h.send()
		// Go 1.23+ timers: Reset drops a pending expiry, no draining needed.
		timer.Reset(h.interval)
	}
}

func (h *heartbeater) send() {
	h.mu.Lock()
	req := &weftv1.HeartbeatRequest{LeaseId: h.leaseID, Progress: h.progress}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(h.callOpts(context.Background()), max(h.interval, time.Second))
	defer cancel()
	res, err := h.client.Heartbeat(ctx, req)
	if h.isStopped() {
		return
	}
	if err != nil {
		if isLeaseLost(err) {
			h.onLeaseLost(err)
			return
		}
		// The next automatic heartbeat retries; the lease outlives a couple of missed ones.
		h.health.failed("Heartbeat", err)
		return
	}
	h.health.ok()
	if res.GetCancelRequested() {
		h.onCancel()
	}
}
