package testutil

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that a test may read while a process writes.
type Buffer struct {
	Max int // keep only the first Max bytes (0: all)

	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if s.Max > 0 {
		p = p[:min(n, max(0, s.Max-s.b.Len()))]
	}
	s.b.Write(p)
	return n, nil
}

// String is what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len is how many bytes were written so far.
func (s *Buffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
