package bench

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchCSourcesUpToDate: the embedded copies of the C legs are their
// originals byte for byte (after editing framebus/testdata/c, libframebus
// or framebus/include/framebus.h, run go generate ./bench/), csrc/ holds
// nothing else, and nothing of libframebus/src is left out.
func TestBenchCSourcesUpToDate(t *testing.T) {
	for name, orig := range cSourceFiles {
		want, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cSources.ReadFile("csrc/" + name)
		if err != nil {
			t.Fatalf("csrc/%s: %v (run go generate ./bench/)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("bench/csrc/%s differs from %s: run go generate ./bench/", name, orig)
		}
	}
	err := fs.WalkDir(cSources, "csrc", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if _, ok := cSourceFiles[strings.TrimPrefix(path, "csrc/")]; !ok {
			t.Errorf("bench/%s has no original in cSourceFiles", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every source of libframebus is embedded (the C legs compile them all).
	lib, err := filepath.Glob("../libframebus/src/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range lib {
		if !strings.HasSuffix(f, ".c") && !strings.HasSuffix(f, ".h") {
			continue
		}
		if _, ok := cSourceFiles["lib/"+filepath.Base(f)]; !ok {
			t.Errorf("%s is not in cSourceFiles (bench/csrc.go and bench/gencsrc.go)", f)
		}
	}
}
