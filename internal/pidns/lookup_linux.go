package pidns

import (
	"os"
	"strconv"
	"strings"
)

// lookup finds, in /proc, the process whose PID namespace is ns and whose
// number there is pid, and returns its number here (0: not found, e.g. the
// namespace is not below ours). The NSpid line of /proc/N/status lists a
// process's numbers from our namespace down to its own.
func lookup(pid uint32, ns uint64) uint32 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	want := "pid:[" + strconv.FormatUint(ns, 10) + "]"
	for _, e := range ents {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || l != want {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 && f[len(f)-1] == strconv.FormatUint(uint64(pid), 10) {
					return uint32(n)
				}
			}
		}
	}
	return 0
}
