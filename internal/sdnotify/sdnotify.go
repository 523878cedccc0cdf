// Package sdnotify tells a service manager about a service's state through
// the datagram socket named by $NOTIFY_SOCKET (systemd's sd_notify
// protocol, Type=notify units): READY=1 once the service does its job,
// STOPPING=1 when it ends, WATCHDOG=1 while it is healthy, STATUS=... for
// people. Without $NOTIFY_SOCKET every call does nothing.
//
// It is the whole protocol in a few lines (one unixgram datagram of
// newline-separated assignments; a name starting with '@' is in the
// abstract namespace), so it needs no dependency.
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notify sends state (assignments, one per line, e.g. "READY=1\nSTATUS=ok")
// to $NOTIFY_SOCKET. It returns false and no error when the variable is
// unset (not run by a service manager), and an error when it is set but
// the message cannot be sent.
func Notify(state string) (bool, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// WatchdogInterval is the interval of WATCHDOG=1 messages the service
// manager asks for ($WATCHDOG_USEC, for this process: $WATCHDOG_PID unset
// or ours), half its timeout; 0 when it asks for none.
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}
