package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/framebus/framebus/internal/cli"
)

// stopSignals end every command cleanly: Ctrl-C, a service manager's stop,
// and the hang-up of the terminal or session the command runs in (which
// would otherwise kill it without its clean path: a producer's consumers
// would see "producer gone" instead of the end of the stream).
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// runContext is the context of a command that runs until one of stopSignals
// or, with d > 0, for d at most. Calling the returned function releases it
// (a second signal then kills the process at once, as by default).
func runContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	if d <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}

// spinUsage is the help of every consumer's --spin flag.
var spinUsage = "spin for each frame around the moment it is due instead of sleeping until woken: lower latency for a little CPU (--spin alone: a " +
	cli.DefaultSpin.String() + " budget; --spin=D another)"
