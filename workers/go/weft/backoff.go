package weft

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is exponential with jitter: each delay doubles up to max and is drawn from its upper
// half, so that many loops failing together do not retry in lockstep.
type backoff struct {
	initial, max time.Duration
	attempt      int
}

func (b *backoff) next() time.Duration {
	ceiling := b.initial << min(b.attempt, 30)
	if ceiling > b.max || ceiling <= 0 {
		ceiling = b.max
	}
	b.attempt = min(b.attempt+1, 30)
	half := ceiling / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (b *backoff) reset() { b.attempt = 0 }

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
