package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/report"
)

var statCmd = &cli.Command{
	Name:    "stat",
	Args:    "NAME [--watch] [--json] [--dir DIR]",
	Summary: "show a bus: format, producer, rates, counters and consumers",
	Description: `Reads the bus NAME without joining it (it never registers as a consumer)
and shows its generation, state, format, the producer's pid, liveness and
heartbeat age, the publish rate, the last sequence number, source drops,
reclaimed consumers, and one row per consumer entry: delivered, dropped,
lag (frames behind the newest), torn-read retries and heartbeat age.

The publish rate is the average since the bus generation was created; with
--watch, it is measured over the last second, and the status is redrawn
every second until interrupted.

--json prints one object whose keys are the field names of PROTOCOL.md
section 3 plus "consumers" (section 3.5 names, with lag) and a few derived
values (state_name, producer_alive, heartbeat_age_ns, publish_fps); with
--watch, one object per line per second.

The layout is validated before anything else is believed; a corrupt segment
is an error (exit 1): 'framebus dump NAME' shows its raw fields.`,
	Examples: `framebus stat cam0
		framebus stat cam0 --watch
		framebus stat cam0 --json | jq '.consumers[] | {pid, lag}'
		framebus stat cam0 --dir /tmp/buses --json`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &statOpts{}
		fs.BoolVar(&o.watch, "watch", false, "redraw every second until interrupted")
		fs.BoolVar(&o.json, "json", false, "print JSON")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		return o.run
	},
}

type statOpts struct {
	watch, json bool
	dir         string
}

func (o *statOpts) run(ctx context.Context, args []string) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if !o.watch {
		s, err := framebus.Inspect(name, o.dir)
		if err != nil {
			return busError(name, o.dir, err)
		}
		return o.print(report.NewStatus(s, nil), s.NowNS, false)
	}
	ctx, stop := runContext(ctx, 0)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev *framebus.Snapshot
	for {
		s, err := framebus.Inspect(name, o.dir)
		if err != nil {
			// Keep watching: the producer may be starting or restarting.
			prev = nil
			msg := busError(name, o.dir, err).Error()
			if o.json {
				json.NewEncoder(stdout).Encode(map[string]string{"name": name, "error": msg})
			} else {
				if cli.IsTerminal(os.Stdout) {
					fmt.Fprint(stdout, "\x1b[H\x1b[2J")
				}
				fmt.Fprintf(stdout, "%s\n%s (watching; Ctrl-C ends)\n\n", time.Now().Format("15:04:05"), msg)
			}
		} else {
			if err := o.print(report.NewStatus(s, prev), s.NowNS, true); err != nil {
				return err
			}
			prev = s
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (o *statOpts) print(st *report.Status, now int64, watch bool) error {
	if o.json {
		enc := json.NewEncoder(stdout)
		if !watch {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(st)
	}
	var b bytes.Buffer
	if watch {
		if cli.IsTerminal(os.Stdout) {
			b.WriteString("\x1b[H\x1b[2J") // redraw in place
		}
		fmt.Fprintf(&b, "%s\n", time.Now().Format("15:04:05"))
	}
	report.WriteStatus(&b, st, now)
	if watch {
		b.WriteString("\n")
	}
	w := bufio.NewWriter(stdout)
	w.Write(b.Bytes())
	return w.Flush()
}
