package main

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
)

// run migrates River and takes the measurements s.Phases names, each on an empty job table.
func run(ctx context.Context, s settings) (*results, error) {
	db, err := openDatabase(ctx, s)
	if err != nil {
		return nil, err
	}
	defer db.pool.Close()
	out := &results{Settings: s, River: riverVersion}
	if out.SynchronousCommit, err = db.setting(ctx, "synchronous_commit"); err != nil {
		return nil, err
	}
	if out.Fsync, err = db.setting(ctx, "fsync"); err != nil {
		return nil, err
	}
	out.FetchCooldownMs = milliseconds(cmp.Or(s.FetchCooldown, river.FetchCooldownDefault))
	out.FetchPollMs = milliseconds(cmp.Or(s.FetchPoll, river.FetchPollIntervalDefault))
	phases := strings.Split(s.Phases, ",")
	for _, phase := range phases {
		if err := db.clear(ctx); err != nil {
			return nil, err
		}
		if err := measure(ctx, db, s, strings.TrimSpace(phase), out); err != nil {
			return nil, fmt.Errorf("%s: %w", phase, err)
		}
	}
	return out, db.clear(ctx)
}

func measure(ctx context.Context, db *database, s settings, phase string, out *results) error {
	switch phase {
	case "insert":
		client, err := newClient(db, s, 0, new(atomic.Int64))
		if err != nil {
			return err
		}
		single, err := insertRate(ctx, client, s, 1)
		if err != nil {
			return err
		}
		if err := db.clear(ctx); err != nil {
			return err
		}
		many, err := insertRate(ctx, client, s, s.Batch)
		if err != nil {
			return err
		}
		out.InsertSingle, out.InsertMany = &single, &many
	case "work":
		work, err := workRate(ctx, db, s)
		if err != nil {
			return err
		}
		out.Work = &work
	case "cycle":
		completed, inserted, err := cycleRate(ctx, db, s)
		if err != nil {
			return err
		}
		out.Cycle, out.CycleInserted = &completed, &inserted
	default:
		return fmt.Errorf("unknown phase %q (insert, work, cycle)", phase)
	}
	return nil
}

func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
