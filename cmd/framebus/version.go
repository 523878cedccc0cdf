package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/framebus/framebus/capture"
)

// feature is something a build has because of a build tag (OpenCV, the
// media drivers, a codec). The files behind those tags add theirs in init.
type feature struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
}

var features []feature

// buildCommit and buildModified are set by the Makefile (-ldflags -X) from
// git, for the builds the Go toolchain does not stamp (a git worktree,
// GOFLAGS=-buildvcs=false). The toolchain's own stamp wins.
var buildCommit, buildModified string

func addFeature(name, detail string) { features = append(features, feature{name, detail}) }

// buildInfo is what framebus version prints.
type buildInfo struct {
	Module     string    `json:"module"`
	Version    string    `json:"version"`
	Commit     string    `json:"commit,omitempty"`
	CommitTime string    `json:"commit_time,omitempty"`
	Modified   bool      `json:"modified,omitempty"` // built from a tree with changes
	Go         string    `json:"go"`
	Platform   string    `json:"platform"`
	CGO        bool      `json:"cgo"`
	Tags       []string  `json:"tags"`
	Features   []feature `json:"features"`
	Lacks      []string  `json:"lacks"`
	Sources    []string  `json:"sources"`
}

// knownFeatures are the features a full build (make build) has, and the tag
// each needs, so that a build without them says what it lacks.
var knownFeatures = []struct{ name, needs string }{
	{"opencv", "-tags framebus_opencv (the file: source, view, analyze, MJPEG record)"},
	{"media", "-tags framebus_media with cgo (the camera and screen sources)"},
}

func readBuildInfo() buildInfo {
	bi := buildInfo{Module: "github.com/framebus/framebus", Version: "(unknown)", Go: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, Tags: []string{}, Sources: capture.Sources()}
	if info, ok := debug.ReadBuildInfo(); ok {
		bi.Module, bi.Version, bi.Go = info.Main.Path, info.Main.Version, info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Commit = s.Value
			case "vcs.time":
				bi.CommitTime = s.Value
			case "vcs.modified":
				bi.Modified = s.Value == "true"
			case "-tags":
				bi.Tags = strings.Split(s.Value, ",")
			case "CGO_ENABLED":
				bi.CGO = s.Value == "1"
			}
		}
	}
	if bi.Commit == "" && buildCommit != "" {
		bi.Commit, bi.Modified = buildCommit, buildModified == "true"
	}
	bi.Features = append([]feature{}, features...)
	sort.Slice(bi.Features, func(i, j int) bool { return bi.Features[i].Name < bi.Features[j].Name })
	bi.Lacks = []string{}
	for _, k := range knownFeatures {
		has := false
		for _, f := range bi.Features {
			has = has || f.Name == k.name
		}
		if !has {
			bi.Lacks = append(bi.Lacks, k.name+": "+k.needs)
		}
	}
	return bi
}

// writeVersion is cli.App.Version: framebus --version and framebus version.
func writeVersion(w io.Writer, asJSON bool) error {
	bi := readBuildInfo()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(bi)
	}
	fmt.Fprintf(w, "framebus %s\n", bi.Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("module", bi.Module)
	if bi.Commit != "" {
		var notes []string
		if bi.CommitTime != "" {
			notes = append(notes, bi.CommitTime)
		}
		if bi.Modified {
			notes = append(notes, "with local changes")
		}
		c := bi.Commit
		if len(notes) > 0 {
			c += " (" + strings.Join(notes, ", ") + ")"
		}
		row("commit", c)
	} else {
		row("commit", "unknown (not built from a VCS checkout)")
	}
	cgo := "without cgo"
	if bi.CGO {
		cgo = "with cgo"
	}
	row("go", bi.Go+" "+bi.Platform+", "+cgo)
	tags := strings.Join(bi.Tags, ",")
	if tags == "" {
		tags = "none"
	}
	row("tags", tags)
	for _, f := range bi.Features {
		row(f.Name, f.Detail)
	}
	for _, l := range bi.Lacks {
		name, needs, _ := strings.Cut(l, ": ")
		row(name, "not in this build: needs "+needs)
	}
	row("sources", strings.Join(bi.Sources, ", "))
	return tw.Flush()
}
