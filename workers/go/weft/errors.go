package weft

import (
	"errors"
	"fmt"
)

// Causes of a handler context's cancellation, read with context.Cause(ctx).
var (
	// ErrRunCancelled: the run was cancelled (the daemon answered cancel_requested to a heartbeat).
	ErrRunCancelled = errors.New("weft: the run was cancelled; the task should stop")
	// ErrLeaseLost: the lease is gone (expired or reassigned); another worker may run the task,
	// and this attempt's result is not reported.
	ErrLeaseLost = errors.New("weft: the lease was lost; the result of this attempt will not be reported")
	// ErrWorkerShutdown: the worker's shutdown grace period ran out; the task is abandoned and its
	// lease expires on the daemon.
	ErrWorkerShutdown = errors.New("weft: the worker shut down before the task finished")
)

// nonRetryableError marks an error that fails the task at once.
type nonRetryableError struct {
	err     error
	errType string
}

func (e *nonRetryableError) Error() string { return e.err.Error() }
func (e *nonRetryableError) Unwrap() error { return e.err }

// ErrorType reports the type given to NonRetryableWithType, else that of the wrapped error.
func (e *nonRetryableError) ErrorType() string {
	if e.errType != "" {
		return e.errType
	}
	return errorType(e.err)
}

// NonRetryable wraps err so that returning it from a handler fails the task at once, whatever
// attempts its retry policy has left. A nil err stays nil.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &nonRetryableError{err: err}
}

// NonRetryableWithType is NonRetryable with the task error's type set to errType.
func NonRetryableWithType(errType string, err error) error {
	if err == nil {
		return nil
	}
	return &nonRetryableError{err: err, errType: errType}
}

// IsNonRetryable reports whether err (or an error it wraps) was marked with NonRetryable.
func IsNonRetryable(err error) bool {
	var nr *nonRetryableError
	return errors.As(err, &nr)
}

// TypedError is implemented by errors that name their own task error type (the TaskError.type the
// daemon records); other errors are reported with type "Error".
type TypedError interface {
	error
	ErrorType() string
}

func errorType(err error) string {
	var typed TypedError
	if errors.As(err, &typed) && typed.ErrorType() != "" {
		return typed.ErrorType()
	}
	return "Error"
}

// PanicError is the error a handler's panic becomes: the attempt fails (retryable) with type
// "Panic" and the stack as details, and the worker carries on.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string     { return fmt.Sprint(e.Value) }
func (e *PanicError) ErrorType() string { return "Panic" }
