package bench

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/framebus/framebus/framebus"
)

// The spin mode needs a consumer that learns the frame period and spins on
// its slot for a bounded time just before the next frame is due, sleeping on
// the semaphore otherwise. That wait lives inside Consumer.Next, so it cannot
// be built on the public API; it is framebus.ConsumerOptions.Spin (the
// maximum spin window, a time.Duration) once the package has it. Until then
// the spin rows are skipped with ErrNoSpin's reason. The field is looked up
// by reflection so that this file compiles before and after it exists.
const spinField = "Spin"

// ErrNoSpin says the framebus package has no spinning consumer yet.
var ErrNoSpin = errors.New("framebus.ConsumerOptions has no Spin field yet: the spin-then-sleep consumer wait is not in the framebus package (see docs/BENCHMARKS.md)")

// SpinSupported reports whether framebus consumers can spin.
func SpinSupported() error {
	f, ok := reflect.TypeOf(framebus.ConsumerOptions{}).FieldByName(spinField)
	switch {
	case !ok:
		return ErrNoSpin
	case f.Type != reflect.TypeOf(time.Duration(0)):
		return fmt.Errorf("framebus.ConsumerOptions.%s is a %v, want a time.Duration (the maximum spin window)", spinField, f.Type)
	}
	return nil
}

// setSpin sets the spin window in o.
func setSpin(o *framebus.ConsumerOptions, d time.Duration) error {
	if err := SpinSupported(); err != nil {
		return err
	}
	reflect.ValueOf(o).Elem().FieldByName(spinField).SetInt(int64(d))
	return nil
}
