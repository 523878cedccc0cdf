package bench

import "os"

// ChildEnv marks a child process: when it is set, the binary plays the role
// its stdin describes (Child) instead of running a benchmark. The framebus
// command checks it in "framebus bench"; a test binary that runs Run checks
// it in TestMain.
const ChildEnv = "FRAMEBUS_BENCH_CHILD"

// IsChild reports whether this process is a benchmark child.
func IsChild() bool { return os.Getenv(ChildEnv) != "" }
