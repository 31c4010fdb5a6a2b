package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// workRate queues s.Backlog jobs, then lets a client with s.Workers workers drain them; jobs
// whose completion committed per second, until the measurement's length or the backlog ends.
func workRate(ctx context.Context, db *database, s settings) (float64, error) {
	if err := queueBacklog(ctx, db, s); err != nil {
		return 0, err
	}
	var worked atomic.Int64
	client, err := newClient(db, s, s.Workers, &worked)
	if err != nil {
		return 0, err
	}
	started := time.Now()
	if err := client.Start(ctx); err != nil {
		return 0, fmt.Errorf("start the working client: %w", err)
	}
	defer client.Stop(ctx) //nolint:errcheck // measurement already taken
	deadline := started.Add(seconds(s))
	for time.Now().Before(deadline) && worked.Load() < int64(s.Backlog) {
		time.Sleep(10 * time.Millisecond)
	}
	done, err := db.completed(ctx)
	if err != nil {
		return 0, err
	}
	// Drained early: wait for the last completions to commit, so the figure counts them all.
	for done < int64(s.Backlog) && worked.Load() >= int64(s.Backlog) && time.Since(deadline) < 5*time.Second {
		time.Sleep(2 * time.Millisecond)
		if done, err = db.completed(ctx); err != nil {
			return 0, err
		}
	}
	return float64(done) / time.Since(started).Seconds(), nil
}

// queueBacklog inserts the work measurement's jobs beforehand with InsertManyFast (COPY).
func queueBacklog(ctx context.Context, db *database, s settings) error {
	client, err := newClient(db, s, 0, new(atomic.Int64))
	if err != nil {
		return err
	}
	const chunk = 10000
	for left := s.Backlog; left > 0; left -= chunk {
		if _, err := client.InsertManyFast(ctx, noops(min(left, chunk))); err != nil {
			return fmt.Errorf("queue the backlog: %w", err)
		}
	}
	_, err = db.pool.Exec(ctx, "ANALYZE "+db.jobs)
	return err
}
