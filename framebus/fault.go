package framebus

// Points of the commit protocol where a test build can kill the producer
// (see fault_on.go). In a normal build faultsOn is the constant false and
// every hook is compiled out of the hot path.
const (
	stepBeforeOdd  = iota // before the odd lock store (step 2)
	stepMidData           // half the data written (Publish only)
	stepBeforeEven        // data and descriptor written, lock still odd
	stepBeforeFlip        // committed (even), active not yet flipped
	stepBeforeWake        // flipped, consumers not yet woken
	stepAfterWake         // the whole commit done
	numSteps
)

// FaultSteps names the fault points, in commit order, for tests and tools.
var FaultSteps = [numSteps]string{"before-odd", "mid-data", "before-even", "before-flip", "before-wake", "after-wake"}
