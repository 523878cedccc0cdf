package bench

import (
	"bytes"
	"io/fs"
	"os"
	"testing"
)

// TestBenchCSourcesUpToDate: the embedded copies of the C legs are their
// originals byte for byte (after editing framebus/testdata/c or
// framebus/include/framebus.h, run go generate ./bench/), and csrc/ holds
// nothing else.
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
	ents, err := fs.ReadDir(cSources, "csrc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := cSourceFiles[e.Name()]; !ok {
			t.Errorf("bench/csrc/%s has no original in cSourceFiles", e.Name())
		}
	}
}
