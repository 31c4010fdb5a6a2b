package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// insertRate runs s.Clients goroutines that each insert `batch` jobs per call (Insert for 1,
// InsertMany above) for the measurement's length; committed jobs per second.
func insertRate(ctx context.Context, client *river.Client[pgx.Tx], s settings, batch int) (float64, error) {
	var inserted atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(seconds(s))
	started := time.Now()
	var wg sync.WaitGroup
	for range s.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := noops(batch)
			for time.Now().Before(deadline) {
				var err error
				if batch == 1 {
					_, err = client.Insert(ctx, noopArgs{}, nil)
				} else {
					_, err = client.InsertMany(ctx, params)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				inserted.Add(int64(batch))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(inserted.Load()) / time.Since(started).Seconds(), nil
}
