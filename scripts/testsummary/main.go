// Command testsummary runs go test -json and prints what make test's
// reader needs: go test's own lines for each package (ok, FAIL), the output
// of every test that failed, then the tests that were skipped and why, and
// a last line of counts: "N passed, N failed, N skipped". It exits with go
// test's status (1 when a test or a build failed).
//
//	go run ./scripts/testsummary [-json FILE] -- go test -json ./...
//
// -json keeps the whole event stream (every test's output) in FILE.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string // build-output, build-fail
}

type testKey struct{ pkg, test string }

type result struct {
	key    testKey
	output []string
	reason string
}

type summary struct {
	w        io.Writer
	running  map[testKey][]string // the output of tests not ended yet
	counts   map[string]int       // per action: pass, fail, skip
	pkgCount map[string]map[string]int
	skipped  []result
	failed   []result
	pkgFail  []string
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, running: map[testKey][]string{}, counts: map[string]int{}, pkgCount: map[string]map[string]int{}}
}

func (s *summary) add(e event) {
	if e.Action == "build-output" {
		fmt.Fprint(s.w, e.Output)
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			// The package's own lines: ok, FAIL, a panic outside a test,
			// coverage; not the bare PASS that -v-style output repeats.
			if o := strings.TrimSpace(e.Output); o == "PASS" || o == "" {
				return
			}
			if strings.HasPrefix(e.Output, "ok  \t") {
				e.Output = strings.TrimRight(e.Output, "\n") + s.pkgCounts(e.Package) + "\n"
			}
			if strings.HasPrefix(e.Output, "FAIL") {
				s.cutShort(e.Package)
			}
			fmt.Fprint(s.w, e.Output)
		case "fail":
			s.pkgFail = append(s.pkgFail, e.Package)
			s.cutShort(e.Package)
		}
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "run":
		s.running[k] = nil
	case "output":
		s.running[k] = append(s.running[k], e.Output)
	case "pass", "fail", "skip":
		out := s.running[k]
		delete(s.running, k)
		s.end(e, out)
	}
}

// cutShort fails the tests of pkg that never ended (a panic, the timeout).
func (s *summary) cutShort(pkg string) {
	for k, out := range s.running {
		if k.pkg == pkg {
			s.end(event{Action: "fail", Package: k.pkg, Test: k.test}, out)
		}
	}
}

func (s *summary) end(e event, out []string) {
	delete(s.running, testKey{e.Package, e.Test})
	s.counts[e.Action]++
	pc := s.pkgCount[e.Package]
	if pc == nil {
		pc = map[string]int{}
		s.pkgCount[e.Package] = pc
	}
	pc[e.Action]++
	r := result{key: testKey{e.Package, e.Test}, output: out}
	switch e.Action {
	case "fail":
		s.failed = append(s.failed, r)
		// As go test prints a failure: the test's output, now.
		for _, o := range out {
			if !strings.HasPrefix(o, "=== ") {
				fmt.Fprint(s.w, o)
			}
		}
		if len(out) == 0 || !strings.Contains(strings.Join(out, ""), "--- FAIL") {
			fmt.Fprintf(s.w, "--- FAIL: %s (%s; it did not end: a panic or the timeout)\n", e.Test, e.Package)
		}
	case "skip":
		r.reason = skipReason(out)
		s.skipped = append(s.skipped, r)
	}
}

func (s *summary) pkgCounts(pkg string) string {
	pc := s.pkgCount[pkg]
	if pc == nil {
		return ""
	}
	t := fmt.Sprintf("\t(%d passed", pc["pass"])
	if pc["skip"] > 0 {
		t += fmt.Sprintf(", %d skipped", pc["skip"])
	}
	return t + ")"
}

// skipReason is what t.Skip said: the test's log lines (file.go:N: ...),
// without the RUN and SKIP markers.
func skipReason(out []string) string {
	var lines []string
	for _, o := range out {
		t := strings.TrimSpace(o)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		lines = append(lines, t)
	}
	if len(lines) == 0 {
		return "(no reason given)"
	}
	// The reason is the last thing it logged; earlier lines are context.
	return lines[len(lines)-1]
}

func (s *summary) finish(status error) int {
	for k, out := range s.running { // the stream ended under them
		s.end(event{Action: "fail", Package: k.pkg, Test: k.test}, out)
	}
	fmt.Fprintln(s.w)
	if len(s.skipped) > 0 {
		sort.Slice(s.skipped, func(i, j int) bool {
			a, b := s.skipped[i].key, s.skipped[j].key
			return a.pkg < b.pkg || a.pkg == b.pkg && a.test < b.test
		})
		fmt.Fprintf(s.w, "Skipped (%d):\n", len(s.skipped))
		for _, r := range s.skipped {
			fmt.Fprintf(s.w, "  %s %s: %s\n", short(r.key.pkg), r.key.test, r.reason)
		}
	}
	if len(s.failed) > 0 {
		fmt.Fprintf(s.w, "Failed (%d):\n", len(s.failed))
		for _, r := range s.failed {
			fmt.Fprintf(s.w, "  %s %s\n", short(r.key.pkg), r.key.test)
		}
	}
	for _, p := range s.pkgFail {
		fmt.Fprintf(s.w, "FAIL\t%s\n", p)
	}
	code := 0
	if status != nil || len(s.failed) > 0 || len(s.pkgFail) > 0 {
		code = 1
		if status != nil && len(s.failed) == 0 && len(s.pkgFail) == 0 {
			fmt.Fprintf(s.w, "FAIL: go test: %v\n", status)
		}
	}
	verdict := "PASS"
	if code != 0 {
		verdict = "FAIL"
	}
	fmt.Fprintln(s.w, verdict)
	fmt.Fprintf(s.w, "%d passed, %d failed, %d skipped\n", s.counts["pass"], s.counts["fail"], s.counts["skip"])
	return code
}

// module is the prefix the summary leaves out of package paths.
const module = "github.com/framebus/framebus/"

func short(pkg string) string { return strings.TrimPrefix(pkg, module) }

func main() {
	keep := flag.String("json", "", "keep go test's JSON event stream in `FILE`")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-json FILE] -- go test -json PACKAGES...")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	var log io.Writer = io.Discard
	if *keep != "" {
		f, err := os.Create(*keep)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
		defer f.Close()
		log = f
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	s := newSummary(os.Stdout)
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		log.Write(line)
		log.Write([]byte{'\n'})
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Println(string(line)) // not an event: as it came
			continue
		}
		s.add(e)
	}
	status := cmd.Wait()
	os.Exit(s.finish(status))
}
