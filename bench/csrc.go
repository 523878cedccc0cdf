package bench

import "embed"

//go:generate go run gencsrc.go

// cSources are the C legs' sources: framebus/include/framebus.h and the
// programs of framebus/testdata/c (cSourceFiles), copied into csrc/ by
// go generate because an embed pattern cannot reach outside the package;
// TestBenchCSourcesUpToDate fails when a copy differs from its original.
//
//go:embed csrc/*.c csrc/*.h
var cSources embed.FS

// cSourceFiles maps each file of csrc/ to its original, relative to this
// package's directory (gencsrc.go has the same list).
var cSourceFiles = map[string]string{
	"framebus.h": "../framebus/include/framebus.h",
	"crc32c.h":   "../framebus/testdata/c/crc32c.h",
	"fbguard.h":  "../framebus/testdata/c/fbguard.h",
	"benchctl.h": "../framebus/testdata/c/benchctl.h",
	"producer.c": "../framebus/testdata/c/producer.c",
	"consumer.c": "../framebus/testdata/c/consumer.c",
	"ping.c":     "../framebus/testdata/c/ping.c",
}
