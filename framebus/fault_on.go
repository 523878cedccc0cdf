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

	// FRAMEBUS_CONSUMER_FAULT=N: the consumer truncates its own segment
	// file after reading its Nth frame, before it accounts for it (see
	// consumerFault).
	consumerFaultFrame, consumerRead uint64
)

func init() {
	consumerFaultFrame, _ = strconv.ParseUint(os.Getenv("FRAMEBUS_CONSUMER_FAULT"), 10, 64)
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

// consumerFault runs between a consumer's intact read of a frame and its
// accounting (the entry's last_seq, dropped and delivered stores). At the
// chosen frame it truncates the segment file, so those stores fault exactly
// there, as they can when someone truncates the file under a live consumer:
// the test that uses it proves that such a fault neither loses the frame
// from the caller's count nor counts it twice.
func consumerFault(path string) {
	consumerRead++
	if consumerRead == consumerFaultFrame {
		os.Truncate(path, 0)
	}
}
