//go:build ignore

// gencsrc copies the C legs' sources into csrc/ (go generate ./bench/): the
// originals live beside the transport, framebus/include and
// framebus/testdata/c, where the transport's tests build them too.
package main

import (
	"log"
	"os"
	"path/filepath"
)

// The same list as cSourceFiles in csrc.go.
var files = map[string]string{
	"framebus.h": "../framebus/include/framebus.h",
	"crc32c.h":   "../framebus/testdata/c/crc32c.h",
	"fbguard.h":  "../framebus/testdata/c/fbguard.h",
	"benchctl.h": "../framebus/testdata/c/benchctl.h",
	"producer.c": "../framebus/testdata/c/producer.c",
	"consumer.c": "../framebus/testdata/c/consumer.c",
	"ping.c":     "../framebus/testdata/c/ping.c",
}

func main() {
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("csrc", dst), b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
