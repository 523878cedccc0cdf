package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// framebus --version and framebus version say the module, the Go version,
// the tags and what the build has; --json says it as an object.
func TestVersion(t *testing.T) {
	a, b := run(t, "--version"), run(t, "version")
	if a.Code != 0 || b.Code != 0 || a.Stdout != b.Stdout {
		t.Fatalf("--version exit %d, version exit %d:\n%s\n%s", a.Code, b.Code, a.Stdout, b.Stdout)
	}
	for _, want := range []string{"framebus ", "module   github.com/framebus/framebus", "go       " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		"sources  ", "replay", "rtsp", "stdin"} {
		if !strings.Contains(a.Stdout, want) {
			t.Errorf("--version does not say %q:\n%s", want, a.Stdout)
		}
	}
	if hasOpenCV != strings.Contains(a.Stdout, "opencv   OpenCV 4.") {
		t.Errorf("--version on OpenCV (the build has it: %v):\n%s", hasOpenCV, a.Stdout)
	}
	if !hasOpenCV && !strings.Contains(a.Stdout, "opencv   not in this build: needs -tags framebus_opencv") {
		t.Errorf("a build without OpenCV does not say so:\n%s", a.Stdout)
	}
	if hasMedia != strings.Contains(a.Stdout, "media    pion/mediadevices drivers") {
		t.Errorf("--version on the media drivers (the build has them: %v):\n%s", hasMedia, a.Stdout)
	}
	j := run(t, "version", "--json")
	var bi buildInfo
	if j.Code != 0 || json.Unmarshal([]byte(j.Stdout), &bi) != nil || bi.Module != "github.com/framebus/framebus" || bi.Go != runtime.Version() {
		t.Fatalf("version --json: exit %d %q", j.Code, j.Stdout)
	}
	if tags := buildTags(); tags != "" && strings.Join(bi.Tags, ",") != tags {
		t.Errorf("tags %v, the binary was built with %q", bi.Tags, tags)
	}
	if r := run(t, "version", "extra"); r.Code != 2 {
		t.Errorf("version extra: exit %d", r.Code)
	}
	if r := run(t, "--help"); !strings.Contains(r.Stdout, "--version") || !strings.Contains(r.Stdout, "\n  completion ") {
		t.Errorf("--help does not list --version and completion:\n%s", r.Stdout)
	}
}

// The commit comes from the toolchain's VCS stamp, else from the
// Makefile's -ldflags (a git worktree is not stamped).
func TestVersionCommitFallback(t *testing.T) {
	old, oldM := buildCommit, buildModified
	defer func() { buildCommit, buildModified = old, oldM }()
	buildCommit, buildModified = "0123456789abcdef", "true"
	bi := readBuildInfo()
	if bi.Commit == "" || (bi.Commit == "0123456789abcdef") != (bi.CommitTime == "") {
		t.Errorf("commit %q time %q", bi.Commit, bi.CommitTime)
	}
	var b bytes.Buffer
	writeVersion(&b, false)
	if !strings.Contains(b.String(), "commit   ") || strings.Contains(b.String(), "unknown") {
		t.Errorf("version:\n%s", b.String())
	}
}

// completer sources the bash script in a bash subprocess and completes
// words as bash would (COMP_WORDS, COMP_CWORD, then the function).
func completer(t *testing.T, dir string) func(words ...string) []string {
	t.Helper()
	needInterop(t, "bash")
	r := run(t, "completion", "bash")
	if r.Code != 0 {
		t.Fatalf("completion bash: exit %d %s", r.Code, r.Stderr)
	}
	script := filepath.Join(t.TempDir(), "framebus.bash")
	os.WriteFile(script, []byte(r.Stdout), 0o600)
	return func(words ...string) []string {
		t.Helper()
		sh := `source "$1" || exit 9; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _framebus; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", sh, "bash", script, "framebus"}, words...)...)
		cmd.Env = append(os.Environ(), "FRAMEBUS_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completing %q: %v\n%s", words, err, out)
		}
		got := strings.Fields(string(out))
		sort.Strings(got)
		return got
	}
}

// The bash completion, made from the command table: commands, flags,
// flag values, directories and files, and the buses of the bus directory.
func TestCompletionBash(t *testing.T) {
	dir, other, files := t.TempDir(), t.TempDir(), t.TempDir()
	startCapture(t, dir, "cam0")
	startCapture(t, dir, "cam1")
	startCapture(t, other, "door")
	os.WriteFile(filepath.Join(files, "clip.mkv"), nil, 0o600)
	os.Mkdir(filepath.Join(files, "clips"), 0o700)
	complete := completer(t, dir)
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"ca"}, []string{"capture", "cat"}},
		{[]string{"me"}, []string{"metrics"}},
		{[]string{"--log-level", "w"}, []string{"warn"}},
		{[]string{"--log-level", "warn", "st"}, []string{"stat"}},
		{[]string{"--ver"}, []string{"--version"}},
		{[]string{"capture", "--so"}, []string{"--source"}},
		{[]string{"capture", "--source", "r"}, []string{"replay", "rtsp", "rtsp://", "rtsps"}},
		{[]string{"capture", "--format", "N"}, []string{"NV12"}},
		{[]string{"capture", "--checksum", "--lo"}, []string{"--log-format", "--log-level", "--loop"}},
		{[]string{"capture", "--name", ""}, nil},
		{[]string{"tail", ""}, []string{"cam0", "cam1"}},
		{[]string{"tail", "c"}, []string{"cam0", "cam1"}},
		{[]string{"stat", "--dir", other, ""}, []string{"door"}},
		{[]string{"tail", "cam0", ""}, nil},
		{[]string{"tail", "--timeout", "5s", ""}, []string{"cam0", "cam1"}},
		{[]string{"record", "cam0", "--out", filepath.Join(files, "cl")}, []string{filepath.Join(files, "clip.mkv"), filepath.Join(files, "clips")}},
		{[]string{"record", "--dir", files + "/"}, []string{filepath.Join(files, "clips")}},
		{[]string{"cat", "cam1", "--y"}, []string{"--y4m"}},
		{[]string{"completion", ""}, []string{"bash", "zsh"}},
		{[]string{"help", "rec"}, []string{"record"}},
		{[]string{"analyze", "--detect", ""}, []string{"faces", "motion"}},
	} {
		if got := complete(c.words...); !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("framebus %s<TAB>: %q, want %q", strings.Join(c.words, " "), got, c.want)
		}
	}
	if r := run(t, "completion", "fish"); r.Code != 2 || !strings.Contains(r.Stderr, "bash or zsh") {
		t.Errorf("completion fish: exit %d %q", r.Code, r.Stderr)
	}
}

// The zsh completion parses, and registers itself both when sourced after
// compinit and when autoloaded from $fpath.
func TestCompletionZsh(t *testing.T) {
	needInterop(t, "zsh")
	r := run(t, "completion", "zsh")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "#compdef framebus\n") {
		t.Fatalf("completion zsh: exit %d", r.Code)
	}
	fdir := t.TempDir()
	script := filepath.Join(fdir, "_framebus")
	os.WriteFile(script, []byte(r.Stdout), 0o600)
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	home := t.TempDir()
	for name, prog := range map[string]string{
		"sourced":    `autoload -Uz compinit && compinit -u -D && source "$1" && print -r -- "$_comps[framebus]"`,
		"autoloaded": `fpath=("$2" $fpath); autoload -Uz compinit && compinit -u -D && print -r -- "$_comps[framebus]"`,
	} {
		cmd := exec.Command("zsh", "-f", "-c", prog, "zsh", script, fdir)
		cmd.Env = append(os.Environ(), "HOME="+home, "ZDOTDIR="+home)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "_framebus" {
			t.Errorf("%s: %v %q", name, err, out)
		}
	}
}
