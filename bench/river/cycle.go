package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// cycleRate inserts and works at once, as the engine's full cycle does: s.Producers goroutines
// InsertMany s.CycleBatch jobs at a time, pausing while more than s.CycleBacklog jobs wait (a
// closed loop, so the figure is the rate the cycle sustains), and one client works them with
// s.Workers workers. Returns committed completions and insertions per second.
func cycleRate(ctx context.Context, db *database, s settings) (float64, float64, error) {
	var worked, inserted atomic.Int64
	client, err := newClient(db, s, s.Workers, &worked)
	if err != nil {
		return 0, 0, err
	}
	started := time.Now()
	if err := client.Start(ctx); err != nil {
		return 0, 0, fmt.Errorf("start the cycle's client: %w", err)
	}
	defer client.Stop(ctx) //nolint:errcheck // measurement already taken
	deadline := started.Add(seconds(s))
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range s.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := noops(s.CycleBatch)
			for time.Now().Before(deadline) {
				if inserted.Load()-worked.Load() > int64(s.CycleBacklog) {
					time.Sleep(time.Millisecond)
					continue
				}
				if _, err := client.InsertMany(ctx, batch); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				inserted.Add(int64(len(batch)))
			}
		}()
	}
	time.Sleep(time.Until(deadline))
	done, err := db.completed(ctx)
	elapsed := time.Since(started).Seconds()
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if err != nil {
		return 0, 0, err
	}
	return float64(done) / elapsed, float64(inserted.Load()) / elapsed, nil
}
