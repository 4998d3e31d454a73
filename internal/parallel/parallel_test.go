package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEachRunsEveryItemWithBoundedConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	items := make([]int, 100)
	errs := Each(context.Background(), 4, items, func(context.Context, int) error {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		inFlight.Add(-1)
		return nil
	})
	assert.Len(t, errs, 100)
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.LessOrEqual(t, peak.Load(), int32(4))
}

func TestEachStopsStartingWhereStartRefuses(t *testing.T) {
	var ran atomic.Int32
	errs := Each(context.Background(), 2, make([]int, 10), func(context.Context, int) error {
		ran.Add(1)
		return nil
	}, func(i int) bool { return i < 3 })
	assert.Equal(t, int32(3), ran.Load())
	for i, err := range errs {
		if i < 3 {
			assert.NoError(t, err)
		} else {
			assert.True(t, errors.Is(err, ErrNotStarted), "item %d: %v", i, err)
		}
	}
}
