package weft

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// daemonHealth tracks whether the daemon answers, shared by every loop of a worker, so that an
// outage logs one warn line when it starts and one info line when it ends.
type daemonHealth struct {
	logger      *slog.Logger
	mu          sync.Mutex
	downSince   time.Time
	lastProblem string
}

func (h *daemonHealth) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.downSince.IsZero() {
		h.logger.Info("daemon reachable again", slog.Int64("downForMs", time.Since(h.downSince).Milliseconds()))
	}
	h.downSince = time.Time{}
	h.lastProblem = ""
}

func (h *daemonHealth) failed(rpc string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	attrs := append([]any{slog.String("rpc", rpc)}, rpcAttrs(err)...)
	if isTransient(err) {
		if h.downSince.IsZero() {
			h.downSince = time.Now()
			h.logger.Warn("daemon unavailable; retrying with backoff", attrs...)
		} else {
			h.logger.Debug("daemon still unavailable", attrs...)
		}
		return
	}
	// A non-transient error (a bad queue name, a rejected token) repeats on every attempt: log it
	// when it first appears or changes.
	s := status.Convert(err)
	problem := fmt.Sprintf("%s %s %s", rpc, s.Code(), s.Message())
	if problem != h.lastProblem {
		h.lastProblem = problem
		h.logger.Error(rpc+" failed; retrying with backoff", attrs...)
	} else {
		h.logger.Debug(rpc+" failed again", attrs...)
	}
}
