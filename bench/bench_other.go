//go:build !linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
)

var errUnsupported = fmt.Errorf("framebus bench runs on Linux only (CPU pinning, futexes, /dev/shm): %w", errors.ErrUnsupported)

// Run is Linux-only.
func Run(ctx context.Context, cfg Config) (*Report, error) { return nil, errUnsupported }

// Child is Linux-only.
func Child(ctx context.Context, in io.Reader, out io.Writer) error { return errUnsupported }
