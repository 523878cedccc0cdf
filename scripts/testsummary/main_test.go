package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func feed(s *summary, events ...event) {
	for _, e := range events {
		s.add(e)
	}
}

// A run with a pass, a skip with its reason, a failure with its output and
// a package that panicked: go test's lines, the failure's output, the
// skipped tests with why, and the counts last.
func TestSummary(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	const a, b = "github.com/framebus/framebus/viewer", "github.com/framebus/framebus/cmd/framebus"
	feed(s,
		event{Action: "run", Package: a, Test: "TestOK"},
		event{Action: "output", Package: a, Test: "TestOK", Output: "=== RUN   TestOK\n"},
		event{Action: "pass", Package: a, Test: "TestOK"},
		event{Action: "run", Package: a, Test: "TestBrowser"},
		event{Action: "output", Package: a, Test: "TestBrowser", Output: "=== RUN   TestBrowser\n"},
		event{Action: "output", Package: a, Test: "TestBrowser", Output: "    view_test.go:12: chromium is not installed\n"},
		event{Action: "output", Package: a, Test: "TestBrowser", Output: "--- SKIP: TestBrowser (0.00s)\n"},
		event{Action: "skip", Package: a, Test: "TestBrowser"},
		event{Action: "output", Package: a, Output: "PASS\n"},
		event{Action: "output", Package: a, Output: "ok  \t" + a + "\t0.5s\n"},
		event{Action: "pass", Package: a},
		event{Action: "run", Package: b, Test: "TestBad"},
		event{Action: "output", Package: b, Test: "TestBad", Output: "=== RUN   TestBad\n"},
		event{Action: "output", Package: b, Test: "TestBad", Output: "    main_test.go:9: want 1, got 2\n"},
		event{Action: "output", Package: b, Test: "TestBad", Output: "--- FAIL: TestBad (0.01s)\n"},
		event{Action: "fail", Package: b, Test: "TestBad"},
		event{Action: "run", Package: b, Test: "TestPanics"},
		event{Action: "output", Package: b, Test: "TestPanics", Output: "panic: boom\n"},
		event{Action: "output", Package: b, Output: "FAIL\t" + b + "\t0.2s\n"},
		event{Action: "fail", Package: b},
	)
	code := s.finish(errors.New("exit status 1"))
	got := out.String()
	t.Logf("\n%s", got)
	for _, want := range []string{
		"ok  \t" + a + "\t0.5s\t(1 passed, 1 skipped)\n",
		"    main_test.go:9: want 1, got 2\n--- FAIL: TestBad (0.01s)\n",
		"panic: boom\n--- FAIL: TestPanics",
		"Skipped (1):\n  viewer TestBrowser: view_test.go:12: chromium is not installed\n",
		"Failed (2):\n  cmd/framebus TestBad\n  cmd/framebus TestPanics\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	if !strings.HasSuffix(got, "FAIL\n1 passed, 2 failed, 1 skipped\n") || code != 1 {
		t.Errorf("the end: %q, exit %d; want FAIL and the counts last, exit 1", got[max(0, len(got)-60):], code)
	}
}

// All passed: PASS, the counts last, exit 0; go test failing alone (a
// build failure with no test event) is a failure.
func TestSummaryPass(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	feed(s, event{Action: "run", Package: "p", Test: "T"}, event{Action: "pass", Package: "p", Test: "T"})
	if code := s.finish(nil); code != 0 || !strings.HasSuffix(out.String(), "PASS\n1 passed, 0 failed, 0 skipped\n") {
		t.Errorf("exit %d: %q", code, out.String())
	}
	out.Reset()
	s = newSummary(&out)
	if code := s.finish(errors.New("exit status 2")); code != 1 || !strings.HasSuffix(out.String(), "FAIL\n0 passed, 0 failed, 0 skipped\n") {
		t.Errorf("exit %d: %q", code, out.String())
	}
}
