package weft

import (
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isTransient reports whether a failed call may succeed once the daemon is reachable again. A
// connection the daemon dropped (it restarted) shows as UNAVAILABLE or CANCELED.
func isTransient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}

// isLeaseLost reports whether the daemon no longer honours the lease the call was made with.
func isLeaseLost(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.NotFound:
		return true
	}
	return false
}

// rpcAttrs are log attributes describing a failed call: its code and message.
func rpcAttrs(err error) []any {
	s := status.Convert(err)
	return []any{slog.String("code", s.Code().String()), slog.String("error", s.Message())}
}
