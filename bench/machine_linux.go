//go:build linux

package bench

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes this machine for the report.
func machineInfo(allowed []int, gst, gstWhy string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), AllowedCPUs: allowed, OS: runtime.GOOS, Arch: runtime.GOARCH,
		GoVersion: runtime.Version(), Time: time.Now().UTC().Format(time.RFC3339)}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch {
			case k == "model name" && m.CPUModel == "":
				m.CPUModel = v
			case k == "flags" && strings.Contains(" "+v+" ", " hypervisor "):
				m.Hypervisor = true
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				m.MemoryBytes = kb << 10
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.Revision = s.Value
			}
		}
	}
	if gst != "" {
		m.GStreamer = gstVersion(gst)
	} else {
		m.GStreamer = "absent: " + gstWhy
	}
	return m
}
