package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// database is River's schema on the server under test.
type database struct {
	pool   *pgxpool.Pool
	schema string
	jobs   string // the schema-qualified river_job table
}

func openDatabase(ctx context.Context, s settings) (*database, error) {
	config, err := pgxpool.ParseConfig(s.URL)
	if err != nil {
		return nil, fmt.Errorf("parse the PostgreSQL URL: %w", err)
	}
	config.MaxConns = s.PoolSize
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	db := &database{pool: pool, schema: s.Schema}
	db.jobs = pgx.Identifier{s.Schema, "river_job"}.Sanitize()
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// migrate creates River's schema and runs its migrations (a no-op when they already ran).
func (db *database) migrate(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{db.schema}.Sanitize()); err != nil {
		return fmt.Errorf("create schema %s: %w", db.schema, err)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(db.pool), &rivermigrate.Config{Schema: db.schema})
	if err != nil {
		return fmt.Errorf("River migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("River migrations: %w", err)
	}
	return nil
}

// setting reads one server setting (synchronous_commit, fsync).
func (db *database) setting(ctx context.Context, name string) (string, error) {
	var value string
	err := db.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&value)
	return value, err
}

// clear removes every job, so each measurement starts from an empty table.
func (db *database) clear(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "TRUNCATE "+db.jobs); err != nil {
		return fmt.Errorf("truncate river_job: %w", err)
	}
	_, err := db.pool.Exec(ctx, "VACUUM ANALYZE "+db.jobs)
	return err
}

// completed counts committed completions.
func (db *database) completed(ctx context.Context) (int64, error) {
	var n int64
	err := db.pool.QueryRow(ctx, "SELECT count(*) FROM "+db.jobs+" WHERE state = 'completed'").Scan(&n)
	return n, err
}
