// Package pidns says what a pid recorded in a segment means to this process
// (PROTOCOL.md amendment 8, creation and liveness across PID namespaces): a pid is only a process's number in its own PID
// namespace, and containers sharing a bus directory have namespaces of their
// own. The segment records the namespace next to each pid; Describe compares
// it with ours and, on Linux, finds the process's number here when it lives
// in a namespace below ours (a container of this host).
package pidns

import (
	"fmt"

	"github.com/framebus/framebus/framebus"
)

// PID is a recorded pid and what it means here.
type PID struct {
	PID     uint32 `json:"pid"`
	NS      uint64 `json:"pidns"`              // its namespace, 0 when not recorded
	Foreign bool   `json:"foreign"`            // recorded in another namespace than ours
	Here    uint32 `json:"pid_here,omitempty"` // its number in our namespace, when it could be found
}

// Resolve interprets pid, recorded with namespace ns.
func Resolve(pid uint32, ns uint64) PID {
	p := PID{PID: pid, NS: ns}
	ours := framebus.PIDNamespace()
	if ns == 0 || ours == 0 || ns == ours || pid == 0 {
		return p
	}
	p.Foreign = true
	p.Here = lookup(pid, ns)
	return p
}

// String is "pid 1234", or for a foreign one "pid 1 in another PID
// namespace (4026532281; pid 5678 here)".
func (p PID) String() string {
	if !p.Foreign {
		return fmt.Sprintf("pid %d", p.PID)
	}
	if p.Here != 0 {
		return fmt.Sprintf("pid %d in another PID namespace (%d; pid %d here)", p.PID, p.NS, p.Here)
	}
	return fmt.Sprintf("pid %d in another PID namespace (%d)", p.PID, p.NS)
}

// Short is the form for a table cell: "1234", or "1@4026532281" ("=5678"
// added when known).
func (p PID) Short() string {
	switch {
	case !p.Foreign:
		return fmt.Sprint(p.PID)
	case p.Here != 0:
		return fmt.Sprintf("%d@%d=%d", p.PID, p.NS, p.Here)
	}
	return fmt.Sprintf("%d@%d", p.PID, p.NS)
}
