// Package parallel runs a function over many items with a bounded number of workers, so that
// stopping or starting thousands of resources takes a fraction of a sequential loop while staying
// under the API rate limit (the SDK's limiter paces the calls; the bound caps connections).
package parallel

import (
	"context"
	"errors"
	"sync"
)

// ErrNotStarted is the error of an item that start refused (the caller ran out of time).
var ErrNotStarted = errors.New("not started")

// Each calls fn for every item with at most workers calls in flight and returns the errors by
// item index (nil where the call succeeded). It stops starting new calls when ctx is done, and,
// when start is given, from the first index start refuses (those items get ErrNotStarted).
func Each[T any](ctx context.Context, workers int, items []T, fn func(context.Context, T) error, start ...func(index int) bool) []error {
	errs := make([]error, len(items))
	if workers < 1 {
		workers = 1
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers && w < len(items); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(ctx, items[i])
			}
		}()
	}
	refused := false
	for i := range items {
		switch {
		case ctx.Err() != nil:
			errs[i] = ctx.Err()
			continue
		case refused || (len(start) > 0 && !start[0](i)):
			refused = true
			errs[i] = ErrNotStarted
			continue
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}
