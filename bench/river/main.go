// Command river-bench measures River (the Go job queue on PostgreSQL) inserting and working
// no-op jobs on a given PostgreSQL server, as the anchor the engine benchmark compares its
// queue with. It migrates River into a schema of its own, runs each measurement for a fixed
// time, and prints one JSON object on stdout.
//
//	river-bench -url postgres://... [-schema river_bench] [-seconds 10] [-clients 50] ...
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// settings are the knobs of one run; the JSON output repeats them beside the figures.
type settings struct {
	URL           string        `json:"-"`
	Schema        string        `json:"schema"`
	Seconds       float64       `json:"seconds"`
	Clients       int           `json:"insert_clients"`
	Batch         int           `json:"insert_batch"`
	Workers       int           `json:"max_workers"`
	Producers     int           `json:"cycle_producers"`
	CycleBatch    int           `json:"cycle_batch"`
	Backlog       int           `json:"work_backlog"`
	CycleBacklog  int           `json:"cycle_backlog_cap"`
	PoolSize      int32         `json:"pool_connections"`
	FetchCooldown time.Duration `json:"-"`
	FetchPoll     time.Duration `json:"-"`
	Phases        string        `json:"phases"`
}

// results is what the command prints: jobs per second committed in each measurement, plus the
// server's durability settings so a reader can check they are the ones compared against.
type results struct {
	Settings          settings `json:"settings"`
	FetchCooldownMs   float64  `json:"fetch_cooldown_ms"`
	FetchPollMs       float64  `json:"fetch_poll_interval_ms"`
	River             string   `json:"river_version"`
	SynchronousCommit string   `json:"synchronous_commit"`
	Fsync             string   `json:"fsync"`
	InsertSingle      *float64 `json:"insert_single_jobs_per_s,omitempty"`
	InsertMany        *float64 `json:"insert_many_jobs_per_s,omitempty"`
	Work              *float64 `json:"work_jobs_per_s,omitempty"`
	Cycle             *float64 `json:"cycle_completed_jobs_per_s,omitempty"`
	CycleInserted     *float64 `json:"cycle_inserted_jobs_per_s,omitempty"`
}

// riverVersion is the River release go.mod pins; the bench table names it.
const riverVersion = "v0.51.2"

func parseFlags() settings {
	var s settings
	var pool int
	flag.StringVar(&s.URL, "url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	flag.StringVar(&s.Schema, "schema", "river_bench", "schema River is migrated into (created if missing)")
	flag.Float64Var(&s.Seconds, "seconds", 10, "length of each measurement")
	flag.IntVar(&s.Clients, "clients", 50, "concurrent inserting clients")
	flag.IntVar(&s.Batch, "batch", 100, "jobs per InsertMany call in the insert measurement")
	flag.IntVar(&s.Workers, "workers", 50, "MaxWorkers of the working client")
	flag.IntVar(&s.Producers, "producers", 16, "inserting goroutines in the full cycle")
	flag.IntVar(&s.CycleBatch, "cycle-batch", 10, "jobs per InsertMany call in the full cycle")
	flag.IntVar(&s.Backlog, "backlog", 200000, "jobs queued before the work measurement")
	flag.IntVar(&s.CycleBacklog, "cycle-backlog", 2000, "the full cycle's producers pause above this many unworked jobs")
	flag.IntVar(&pool, "pool", 40, "pgx pool connections (the engine bench gives the engine 40)")
	// River's defaults (100 ms, 1 s) cap a 50-worker client near 500 jobs/s; its own benchmark
	// command tunes them to these values for throughput, and so does this anchor.
	flag.DurationVar(&s.FetchCooldown, "fetch-cooldown", 2*time.Millisecond, "River FetchCooldown")
	flag.DurationVar(&s.FetchPoll, "fetch-poll-interval", 20*time.Millisecond, "River FetchPollInterval")
	flag.StringVar(&s.Phases, "phases", "insert,work,cycle", "which measurements to run")
	flag.Parse()
	s.PoolSize = int32(pool)
	return s
}

func main() {
	s := parseFlags()
	if s.URL == "" {
		fail(fmt.Errorf("no PostgreSQL URL: pass -url or set DATABASE_URL"))
	}
	// River logs through slog; only warnings and errors reach stderr, stdout stays JSON.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx := context.Background()
	out, err := run(ctx, s)
	if err != nil {
		fail(err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "river-bench: %v\n", err)
	os.Exit(1)
}
