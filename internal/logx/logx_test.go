package logx

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

func TestOrNilIsSilent(t *testing.T) {
	Or(nil).Warn("nobody hears this") // must not panic
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	if Or(l) != l {
		t.Fatal("Or replaced a logger")
	}
}

func TestRepeats(t *testing.T) {
	var r Repeats
	if !r.Allow("a", 0) || r.Allow("a", 0) || r.Allow("a", 0) {
		t.Fatal("a key said once only with every 0")
	}
	if r.Held() != 2 || r.Said() != "a" {
		t.Fatalf("held %d said %q", r.Held(), r.Said())
	}
	if !r.Allow("b", 0) || !r.Allow("a", 0) {
		t.Fatal("another key goes out")
	}
	if r.Allow("a", time.Hour) {
		t.Fatal("the same key within every goes out")
	}
	if !r.Allow("a", time.Nanosecond) {
		t.Fatal("the same key after every is held back")
	}
	r.Reset()
	if r.Said() != "" || !r.Allow("a", 0) {
		t.Fatal("Reset did not forget")
	}
	for n, want := range map[int]bool{1: true, 2: false, 99: false, 100: true, 200: true} {
		if Every(n, 100) != want {
			t.Errorf("Every(%d, 100) = %v", n, !want)
		}
	}
}
