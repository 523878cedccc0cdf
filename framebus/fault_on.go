//go:build framebus_faults

package framebus

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A build with -tags framebus_faults kills its own process with SIGKILL at
// one step of the commit, chosen by FRAMEBUS_FAULT=STEP:N (STEP one of
// FaultSteps, N the 1-based count of frames begun by this process). It is how
// the crash tests put a kill -9 at an exact point of the protocol.
const faultsOn = true

var (
	faultStep  = -1
	faultFrame uint64
	begun      uint64
)

func init() {
	v := os.Getenv("FRAMEBUS_FAULT")
	step, n, ok := strings.Cut(v, ":")
	if !ok {
		return
	}
	for i, s := range FaultSteps {
		if s == step {
			faultStep = i
		}
	}
	faultFrame, _ = strconv.ParseUint(n, 10, 64)
}

func fault(step int) {
	if step == stepBeforeOdd {
		begun++
	}
	if step == faultStep && begun == faultFrame {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not deliverable late, but never continue
	}
}
