package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/pidns"
	"github.com/framebus/framebus/internal/report"

	"github.com/rs/zerolog"
)

var lsCmd = &cli.Command{
	Name:    "ls",
	Args:    "[--json] [--dir DIR]",
	Summary: "list the buses of a directory",
	Description: `Lists every bus in the bus directory: name, generation, state, format,
size and producer (its pid, "gone" for a stale bus that 'framebus gc'
removes, or "no permission to check" for another user's bus). A segment
that cannot be read or is corrupt is listed with why.`,
	Examples: `framebus ls
		framebus ls --json
		framebus ls --dir /tmp/buses`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		var asJSON bool
		var dir string
		fs.BoolVar(&asJSON, "json", false, "print a JSON array")
		fs.StringVar(&dir, "dir", "", dirUsage)
		return func(ctx context.Context, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			buses, err := framebus.List(dir)
			if err != nil {
				return fmt.Errorf("%v", report.Cause(err))
			}
			list := report.NewList(buses)
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			if len(list) == 0 {
				log := zerolog.Ctx(ctx)
				log.Info().Str("dir", framebus.Dir(dir)).Msg("no buses")
				return nil
			}
			report.WriteList(stdout, list)
			return nil
		}
	},
}

var rmCmd = &cli.Command{
	Name:    "rm",
	Args:    "NAME [--force] [--dir DIR]",
	Summary: "remove a bus",
	Description: `Removes the bus NAME: its segment and lock file. A bus whose producer is
alive is refused unless --force is given; then its consumers are woken and
its name removed, and the live producer publishes the bus again as a new
generation within its heartbeat interval, even while its source is idle (as
after systemd's RemoveIPC; capture logs it, and rm says so). --force does
not stop a producer: to end a live bus, stop its producer (SIGINT/SIGTERM
to capture).`,
	Examples: `framebus rm cam0
		framebus rm cam0 --force`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		var force bool
		var dir string
		fs.BoolVar(&force, "force", false, "remove the bus even if its producer is alive")
		fs.StringVar(&dir, "dir", "", dirUsage)
		return func(ctx context.Context, args []string) error {
			name, err := oneName(args)
			if err != nil {
				return err
			}
			// A live producer survives --force: it publishes the bus again.
			// Look at it first, to say so.
			var live *framebus.Snapshot
			if force {
				if s, err := framebus.Inspect(name, dir); err == nil && s.OwnerAlive {
					live = s
				}
			}
			if err := framebus.Remove(name, dir, force); err != nil {
				var be *framebus.BusyError
				if errors.As(err, &be) {
					return fmt.Errorf("bus %s is published by a live producer (%s): stop it, or --force removes the bus anyway", name, pidns.Resolve(be.PID, be.PIDNS))
				}
				return busError(name, dir, err)
			}
			fmt.Fprintf(stdout, "removed bus %s\n", name)
			if live != nil {
				h := live.Header
				fmt.Fprintf(stdout, "its producer (%s) is alive: it publishes bus %s again, as generation %d, within its heartbeat interval (%v), and its consumers follow it; to end the bus, stop the producer\n",
					pidns.Resolve(h.ProducerPID, h.ProducerPIDNS), name, h.Generation+1, time.Duration(h.HeartbeatIntervalMS)*time.Millisecond)
			}
			return nil
		}
	},
}

var gcCmd = &cli.Command{
	Name:    "gc",
	Args:    "[--dir DIR]",
	Summary: "remove stale buses (no live producer) and leftover temporary files",
	Description: `Removes every bus of the directory whose producer is gone (no process
holds its lock: killed, crashed), with its lock file, and the temporary
files that dead producers left. Live buses are never touched, nor any file
it cannot prove is framebus's: a segment must start with framebus's magic,
a lock file be empty, a temporary file have a creation's name and content;
another file named framebus.* stays. Prints each path it removed.`,
	Examples: `framebus gc
		framebus gc --dir /tmp/buses`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		var dir string
		fs.StringVar(&dir, "dir", "", dirUsage)
		return func(ctx context.Context, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			removed, err := framebus.GC(dir)
			for _, p := range removed {
				fmt.Fprintf(stdout, "removed %s\n", p)
			}
			if err != nil {
				return fmt.Errorf("%v", report.Cause(err))
			}
			if len(removed) == 0 {
				log := zerolog.Ctx(ctx)
				log.Info().Str("dir", framebus.Dir(dir)).Msg("nothing to remove")
			}
			return nil
		}
	},
}

var dumpCmd = &cli.Command{
	Name:    "dump",
	Args:    "NAME [--dir DIR]",
	Summary: "print every field of a bus segment, as stored",
	Description: `Reads the segment of the bus NAME without joining it and prints the header
field by field (offset, PROTOCOL.md name, value, meaning), the slot
descriptors and the consumer entries in use. On a corrupt segment it still
prints the raw header fields, then the layout error (exit 1).`,
	Examples: `framebus dump cam0
		framebus dump cam0 --dir /tmp/buses | less`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		var dir string
		fs.StringVar(&dir, "dir", "", dirUsage)
		return func(ctx context.Context, args []string) error {
			name, err := oneName(args)
			if err != nil {
				return err
			}
			s, err := framebus.Inspect(name, dir)
			if s != nil {
				report.WriteDump(stdout, s)
			}
			if err != nil {
				return busError(name, dir, err)
			}
			return nil
		}
	},
}
