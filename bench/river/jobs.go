package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// noopArgs is the job every measurement inserts: no arguments, no work.
type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

// noopWorker completes every job at once and counts the jobs it ran.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	worked *atomic.Int64
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.worked.Add(1)
	return nil
}

// newClient is a River client as a user would configure it: with maxWorkers > 0 it also works
// the default queue with that many workers, otherwise it only inserts.
func newClient(db *database, s settings, maxWorkers int, worked *atomic.Int64) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{worked: worked})
	config := &river.Config{
		Schema:            db.schema,
		Workers:           workers,
		FetchCooldown:     s.FetchCooldown,
		FetchPollInterval: s.FetchPoll,
		// River logs to stdout by default; stdout carries the JSON, so warnings go to stderr.
		Logger: slog.Default(),
	}
	if maxWorkers > 0 {
		config.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}}
	}
	return river.NewClient(riverpgxv5.New(db.pool), config)
}

// noops is a batch of n no-op jobs for InsertMany.
func noops(n int) []river.InsertManyParams {
	batch := make([]river.InsertManyParams, n)
	for i := range batch {
		batch[i] = river.InsertManyParams{Args: noopArgs{}}
	}
	return batch
}

// seconds turns the -seconds flag into a duration.
func seconds(s settings) time.Duration {
	return time.Duration(s.Seconds * float64(time.Second))
}
