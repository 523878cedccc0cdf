//go:build ignore

// gencsrc copies the C legs' sources into csrc/ (go generate ./bench/): the
// originals live beside the transport, framebus/include,
// framebus/testdata/c and libframebus, where the transport's tests build
// them too.
package main

import (
	"log"
	"os"
	"path/filepath"
)

// The same list as cSourceFiles in csrc.go.
var files = map[string]string{
	"framebus/framebus.h":    "../framebus/include/framebus.h",
	"framebus/libframebus.h": "../libframebus/include/framebus/libframebus.h",
	"lib/internal.h":         "../libframebus/src/internal.h",
	"lib/crc32c.h":           "../libframebus/src/crc32c.h",
	"lib/fbguard.h":          "../libframebus/src/fbguard.h",
	"lib/common.c":           "../libframebus/src/common.c",
	"lib/consumer.c":         "../libframebus/src/consumer.c",
	"lib/guard.c":            "../libframebus/src/guard.c",
	"lib/inspect.c":          "../libframebus/src/inspect.c",
	"lib/producer.c":         "../libframebus/src/producer.c",
	"benchctl.h":             "../framebus/testdata/c/benchctl.h",
	"producer.c":             "../framebus/testdata/c/producer.c",
	"consumer.c":             "../framebus/testdata/c/consumer.c",
	"ping.c":                 "../framebus/testdata/c/ping.c",
}

func main() {
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join("csrc", dst)), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("csrc", dst), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
