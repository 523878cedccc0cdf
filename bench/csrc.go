package bench

import "embed"

//go:generate go run gencsrc.go

// cSources are the C legs' sources: libframebus (its public header and
// sources, and the wire contract framebus/include/framebus.h, laid out as
// the compiler looks for them: csrc/framebus/ and csrc/lib/) and the
// programs of framebus/testdata/c over it (cSourceFiles), copied into csrc/ by
// go generate because an embed pattern cannot reach outside the package;
// TestBenchCSourcesUpToDate fails when a copy differs from its original.
//
//go:embed csrc/*.c csrc/*.h csrc/framebus/*.h csrc/lib/*.c csrc/lib/*.h
var cSources embed.FS

// cSourceFiles maps each file of csrc/ to its original, relative to this
// package's directory (gencsrc.go has the same list).
var cSourceFiles = map[string]string{
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
