package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/internal/cli"
	"github.com/framebus/framebus/internal/metrics"
	"github.com/framebus/framebus/internal/sdnotify"

	"github.com/rs/zerolog"
)

var metricsCmd = &cli.Command{
	Name:    "metrics",
	Args:    "[--listen ADDR] [--dir DIR]",
	Summary: "export every bus of the directory to Prometheus (/metrics)",
	Description: `Serves the metrics of every bus in the bus directory on
http://ADDR/metrics, in the Prometheus exposition formats, for a Prometheus
server to scrape. It reads the buses when it is scraped, never joining them
(as 'framebus stat' does): publishing and reading frames cost nothing more.

Per bus (label bus): framebus_frames_published_total, framebus_last_seq,
framebus_source_drops_total, framebus_producer_up,
framebus_heartbeat_age_seconds, framebus_consumers,
framebus_consumers_reclaimed_total, framebus_version_mismatch_total,
framebus_generation, framebus_frame_bytes, framebus_fps, framebus_bus_info
(format and state as labels), framebus_bus_valid (0 for a corrupt
segment) and framebus_producer_info (pid and pidns as labels). Per consumer
entry (labels bus, entry, pid; the pid as the consumer wrote it, in its own
PID namespace, never resolved): framebus_consumer_info (pidns as a label),
framebus_consumer_up,
framebus_consumer_frames_delivered_total,
framebus_consumer_frames_dropped_total, framebus_consumer_lag_frames,
framebus_consumer_torn_retries_total,
framebus_consumer_heartbeat_age_seconds. Then the exporter's own process
and Go metrics.

ADDR is PORT or :PORT (127.0.0.1) or HOST:PORT (0.0.0.0:9655 to be reached
from elsewhere). The URL is printed on stdout. 'framebus view NAME --http'
serves the same /metrics beside its preview. It runs until SIGINT, SIGTERM
or SIGHUP (exit 0); under systemd (Type=notify) it says READY=1 once it
listens.`,
	Examples: `framebus metrics --listen :9655
		framebus metrics --listen 0.0.0.0:9655 --dir /run/framebus
		curl -s http://127.0.0.1:9655/metrics | grep framebus_consumer_lag_frames`,
	Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		o := &metricsOpts{}
		fs.StringVar(&o.listen, "listen", "127.0.0.1:9655", "serve on `ADDR` (PORT, :PORT or HOST:PORT; host default 127.0.0.1)")
		fs.StringVar(&o.dir, "dir", "", dirUsage)
		return o.run
	},
}

type metricsOpts struct{ listen, dir string }

// listenAddr turns PORT and :PORT into 127.0.0.1:PORT.
func listenAddr(flagName, addr string) (string, error) {
	if _, err := strconv.ParseUint(addr, 10, 16); err == nil {
		return net.JoinHostPort("127.0.0.1", addr), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", cli.Usagef("%s %q: want HOST:PORT, :PORT or PORT", flagName, addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", cli.Usagef("%s %q: bad port", flagName, addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

func (o *metricsOpts) run(ctx context.Context, args []string) error {
	log := zerolog.Ctx(ctx)
	if err := noArgs(args); err != nil {
		return err
	}
	addr, err := listenAddr("--listen", o.listen)
	if err != nil {
		return err
	}
	dir := framebus.Dir(o.dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return cli.Usagef("--dir %s: not a directory", dir)
	}
	ctx, stop := runContext(ctx, 0)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--listen %s: %v", o.listen, err)
	}
	url := "http://" + ln.Addr().String() + "/metrics"
	fmt.Fprintf(stdout, "metrics of the buses in %s: %s\n", dir, url)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(dir))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>framebus metrics</title><p>framebus buses in %s: <a href=\"/metrics\">/metrics</a></p>\n", dir)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Info().Str("dir", dir).Str("url", url).Msg("serving metrics")
	if _, err := sdnotify.Notify("READY=1\nSTATUS=serving " + url); err != nil {
		log.Warn().Err(err).Msg("cannot notify the service manager ($NOTIFY_SOCKET)")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("--listen %s: %v", o.listen, err)
	case <-ctx.Done():
	}
	sdnotify.Notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
