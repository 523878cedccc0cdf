package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tourStep is one command of README.md's 30-second tour and the lines the
// README shows it printing.
type tourStep struct {
	cmd string
	out []string
}

// readmeTour reads the commands of README.md's "A 30-second tour": the
// lines starting with "$ " of the section's first console block, each with
// the output lines shown under it.
func readmeTour(t *testing.T, readme string) []tourStep {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## A 30-second tour\n")
	if !ok {
		t.Fatal(`README.md has no "## A 30-second tour" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "```console\n")
	if !ok {
		t.Fatal("the tour has no console block")
	}
	block, _, _ = strings.Cut(block, "```")
	var steps []tourStep
	for _, line := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(line, "$ "):
			steps = append(steps, tourStep{cmd: strings.TrimPrefix(line, "$ ")})
		case line != "" && len(steps) > 0:
			steps[len(steps)-1].out = append(steps[len(steps)-1].out, line)
		}
	}
	if len(steps) < 4 {
		t.Fatalf("the tour has %d commands, want the capture, tail, stat, ls and more", len(steps))
	}
	return steps
}

var logStamp = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d+ `)

// outputKey is what a shown output line must match in the real output: a
// log line's level and message, a key=value line's key, a table's first
// word; "" for lines that vary (table rows of pids, ^C).
func outputKey(line string) string {
	if logStamp.MatchString(line) {
		rest := logStamp.ReplaceAllString(line, "")
		lvl, msg, _ := strings.Cut(rest, " ")
		msg, _, _ = strings.Cut(msg, "=")
		return lvl + " " + msg[:strings.LastIndex(msg+" ", " ")]
	}
	word := strings.Fields(line)
	if len(word) == 0 || word[0] == "^C" || strings.Trim(word[0], "0123456789") == "" {
		return ""
	}
	if k, _, ok := strings.Cut(word[0], "="); ok {
		return k + "="
	}
	return word[0]
}

// A newcomer's first minutes (README.md's 30-second tour): make install into a fresh prefix,
// then every command of README.md's 30-second tour, as written there, in
// one shell whose PATH has only that prefix's bin/ for framebus. Each must
// succeed and print what the README shows (by its keys), with no warning
// or error; the ffmpeg step must leave a playable 1280x720 file. DESTDIR
// is honoured too.
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command with make (not with -short)")
	}
	needInterop(t, "make", "ffmpeg", "ffprobe")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	steps := readmeTour(t, filepath.Join(root, "README.md"))

	// make install, as a user types it (the Makefile's own MAKEFLAGS, when
	// make test runs this, are not passed on).
	env := []string{}
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "FRAMEBUS_DIR" {
			env = append(env, e)
		}
	}
	makeIt := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "make", append([]string{"-s", "-C", root}, args...)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	prefix := t.TempDir()
	makeIt("install", "PREFIX="+prefix)
	stage := t.TempDir()
	makeIt("install", "DESTDIR="+stage, "PREFIX=/usr")
	for _, p := range []string{prefix + "/bin/framebus", prefix + "/share/bash-completion/completions/framebus",
		prefix + "/share/zsh/site-functions/_framebus", stage + "/usr/bin/framebus", stage + "/usr/share/zsh/site-functions/_framebus"} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("make install left no %s: %v", p, err)
		}
	}

	// The tour, in one shell: a command ending in & runs in the
	// background (the next one comes 2 s later, as a reader would type
	// it); one the README stops with ^C gets SIGINT after 2 s.
	var sh strings.Builder
	fmt.Fprintf(&sh, "set -e\n[ \"$(command -v framebus)\" = %q ] || { echo \"framebus is $(command -v framebus)\"; exit 3; }\n", prefix+"/bin/framebus")
	for _, s := range steps {
		interrupted := false
		for _, o := range s.out {
			interrupted = interrupted || o == "^C"
		}
		fmt.Fprintf(&sh, "echo '$ '%q\n", s.cmd)
		switch {
		case strings.HasSuffix(s.cmd, "&"):
			fmt.Fprintf(&sh, "%s\nsleep 2\n", s.cmd)
		case interrupted:
			fmt.Fprintf(&sh, "timeout --preserve-status -s INT 2 %s\n", s.cmd)
		default:
			fmt.Fprintf(&sh, "%s\n", s.cmd)
		}
	}
	sh.WriteString("wait\n")
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", sh.String())
	cmd.Dir = work
	cmd.Env = append(env, "PATH="+prefix+"/bin:"+os.Getenv("PATH"), "FRAMEBUS_DIR="+t.TempDir(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("the tour:\n%s", out)
	if err != nil {
		t.Fatalf("the tour failed: %v (script:\n%s)", err, sh.String())
	}
	for _, s := range steps {
		for _, o := range s.out {
			k := outputKey(o)
			if k == "" {
				continue
			}
			if !regexp.MustCompile(`(?m)^(\d\d:\d\d:\d\d\.\d+ )?` + regexp.QuoteMeta(k)).Match(out) {
				t.Errorf("%s: the README shows %q, nothing printed starts with %q", s.cmd, o, k)
			}
		}
	}
	if m := regexp.MustCompile(`(?m)^(\d\d:\d\d:\d\d\.\d+ )?(WRN|ERR|FTL) .*`).Find(out); m != nil {
		t.Errorf("the tour logged %s", m)
	}
	// The ffmpeg step's file.
	mp4 := false
	for _, s := range steps {
		mp4 = mp4 || strings.Contains(s.cmd, "cam0.mp4")
	}
	if mp4 {
		probe, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
			"-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", filepath.Join(work, "cam0.mp4")).CombinedOutput()
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(probe)), "1280,720,") {
			t.Errorf("ffprobe cam0.mp4: %s %v; want 1280x720 video", probe, err)
		} else {
			t.Logf("cam0.mp4: %s", strings.TrimSpace(string(probe)))
		}
	}
}
