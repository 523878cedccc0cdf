package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// runContext is the context of a command that runs until SIGINT or SIGTERM
// or, with d > 0, for d at most. Calling the returned function releases it.
func runContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	if d <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}
