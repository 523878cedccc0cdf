package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args []string
		pos  []string
		json bool
		dir  string
	}{
		{[]string{"cam0", "--json"}, []string{"cam0"}, true, ""},
		{[]string{"--json", "cam0", "--dir", "/x"}, []string{"cam0"}, true, "/x"},
		{[]string{"a", "--dir=/y", "b"}, []string{"a", "b"}, false, "/y"},
		{[]string{"--dir", "/z", "--", "--json", "c"}, []string{"--json", "c"}, false, "/z"},
		{[]string{}, nil, false, ""},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		d := fs.String("dir", "", "")
		pos, err := Parse(fs, c.args)
		if err != nil || !reflect.DeepEqual(pos, c.pos) || *j != c.json || *d != c.dir {
			t.Errorf("Parse(%q) = %q, %v; json %v dir %q", c.args, pos, err, *j, *d)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if _, err := Parse(fs, []string{"x", "--nope"}); ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "--nope") {
		t.Errorf("unknown flag: %v (exit %d)", err, ExitCode(err))
	}
	if _, err := Parse(fs, []string{"x", "--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string][2]uint32{"1280x720": {1280, 720}, "1X1": {1, 1}, "16384x16384": {16384, 16384}} {
		w, h, err := ParseSize(s)
		if err != nil || w != want[0] || h != want[1] {
			t.Errorf("ParseSize(%q) = %d, %d, %v", s, w, h, err)
		}
	}
	for _, s := range []string{"", "1920x", "x1080", "0x0", "10x0", "-1x5", "100000x100000", "16385x1", "1920*1080", "axb", "1e3x2"} {
		if _, _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]uint32{"0600": 0o600, "660": 0o660, "0640": 0o640} {
		if m, err := ParseMode(s); err != nil || uint32(m) != want {
			t.Errorf("ParseMode(%q) = %o, %v", s, m, err)
		}
	}
	for _, s := range []string{"0666", "0400", "9", "01777", "rw"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
}

func TestAppExitCodes(t *testing.T) {
	var ran []string
	cmd := &Command{Name: "do", Summary: "does", Examples: "app do x", Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
		fail := fs.String("fail", "", "")
		return func(_ context.Context, args []string) error {
			ran = append(ran, args...)
			switch *fail {
			case "usage":
				return Usagef("bad")
			case "run":
				return errors.New("broke")
			}
			return nil
		}
	}}
	var out, errw bytes.Buffer
	app := &App{Name: "app", Commands: []*Command{cmd}, Stdout: &out, Stderr: &errw}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"do", "x"}, 0}, {[]string{"do", "x", "--fail", "usage"}, 2}, {[]string{"do", "--fail", "run", "x"}, 1},
		{[]string{"nope"}, 2}, {[]string{}, 2}, {[]string{"--help"}, 0}, {[]string{"do", "--help"}, 0}, {[]string{"--bad"}, 2},
	} {
		errw.Reset()
		if got := app.Run(context.Background(), c.args); got != c.code {
			t.Errorf("%q: exit %d, want %d (%s)", c.args, got, c.code, errw.String())
		}
		if c.code != 0 && strings.Count(errw.String(), "\n") < 1 {
			t.Errorf("%q: no message", c.args)
		}
	}
	if !strings.Contains(out.String(), "Examples:\n  app do x") {
		t.Errorf("help:\n%s", out.String())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1228800: "1.2 MiB", 8 << 30: "8.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
