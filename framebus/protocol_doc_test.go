package framebus

// Cross-checks of the wire contract: docs/PROTOCOL.md is parsed into a layout table (the
// spec), the C header include/framebus.h is measured by compiling testdata/c/layout.c, and
// the two must agree field by field and constant by constant; the Go structs of wire.go,
// described in the same keys by reflection, must agree with both
// (TestLayoutMatchesProtocolAndC). layout_test.go checks the Go layout against the
// document's offsets typed out by hand and against golden bytes.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

const (
	// protocolDocPath is the wire contract, relative to this package's directory.
	protocolDocPath = "../docs/PROTOCOL.md"
	// sharedProtocolPath is the contract as handed to the project, when present.
	sharedProtocolPath = "../../shared/PROTOCOL.md"
)

// specField is the place of one field inside its structure (the control-block header, a
// slot descriptor or a consumer entry): byte offset from the structure's start and size in
// bytes (whole array for arrays).
type specField struct {
	Offset, Size int
}

// Keys of the maps used below:
//
//	fields:    "header.<name>" (PROTOCOL.md sections 3.1-3.3), "slot.<name>" (3.4),
//	           "entry.<name>" (3.5); reserved bytes are not listed.
//	constants: the C header's names without the FRAMEBUS_ prefix: MAGIC, ABI_VERSION,
//	           HEADER_SIZE, SLOT_DESC_SIZE, CONSUMER_ENTRY_SIZE, PAYLOAD_ALIGN, MIN_SLOTS,
//	           MAX_SLOTS, MAX_CONSUMERS, USER_META_MAX, MAX_PLANES, STATE_*, FLAG_CHECKSUM,
//	           FRAME_EOS, ENTRY_*, FOURCC_*.

// requiredSpecConstants must be found in PROTOCOL.md, or parseProtocolTables fails.
var requiredSpecConstants = []string{
	"MAGIC", "ABI_VERSION", "HEADER_SIZE", "SLOT_DESC_SIZE", "CONSUMER_ENTRY_SIZE",
	"PAYLOAD_ALIGN",
}

// expectedSpecConstants are the constants the parser knows how to extract today. A test
// requires all of them, so a reworded PROTOCOL.md that defeats the parser is noticed.
var expectedSpecConstants = []string{
	"MAGIC", "ABI_VERSION", "HEADER_SIZE", "SLOT_DESC_SIZE", "CONSUMER_ENTRY_SIZE",
	"PAYLOAD_ALIGN", "MIN_SLOTS", "MAX_SLOTS", "MAX_CONSUMERS", "USER_META_MAX", "MAX_PLANES",
	"STATE_INITIALIZING", "STATE_READY", "STATE_BROKEN", "STATE_RETIRED",
	"FLAG_CHECKSUM", "FLAG_SHARED_WAKE", "FLAG_HOLDS", "HOLD_PENDING_SHIFT", "FRAME_EOS", "ENTRY_FREE", "ENTRY_CLAIMING", "ENTRY_ACTIVE",
	"FOURCC_AB24", "FOURCC_RGB3", "FOURCC_BGR3", "FOURCC_GREY", "FOURCC_YUYV",
	"FOURCC_NV12", "FOURCC_YU12", "FOURCC_MJPG",
}

// structSizeConstant names the constant that gives the size of each structure.
var structSizeConstant = map[string]string{
	"header": "HEADER_SIZE",
	"slot":   "SLOT_DESC_SIZE",
	"entry":  "CONSUMER_ENTRY_SIZE",
}

var (
	sectionRe      = regexp.MustCompile(`^#{1,6}\s+(?:3\.([1-5])|Amendment \d+ layout)\b`)
	headingRe      = regexp.MustCompile(`^#{1,6}\s`)
	identRe        = regexp.MustCompile(`^[a-z][a-z0-9_]*`)
	typeRe         = regexp.MustCompile(`^u(8|16|32|64)(?:\[(\d+)\])?$`)
	hexRe          = regexp.MustCompile(`\b0x([0-9A-Fa-f]+)\b`)
	equalsRe       = regexp.MustCompile(`=\s*(\d+)`)
	leadIntRe      = regexp.MustCompile(`^\s*(\d+)\b`)
	multipleRe     = regexp.MustCompile(`multiple of (\d+)`)
	atMostRe       = regexp.MustCompile(`at most (\d+)`)
	slotRangeRe    = regexp.MustCompile(`^slot_count:\s*(\d+)\b.*\bup to (\d+)`)
	rangeRe        = regexp.MustCompile(`\((\d+)-(\d+)\)`)
	pendingShiftRe = regexp.MustCompile(`bit (\d+) \+ i: its grant on slot i is in progress`)
	bitRe          = regexp.MustCompile(`\bbit (\d+)\b`)
	enumRe         = regexp.MustCompile(`\b(\d+)\s+([A-Za-z]+)`)
	fourccRe       = regexp.MustCompile("`([A-Za-z0-9 ]{4})`")
)

// section3Prefix maps a subsection of PROTOCOL.md section 3 to its field-name prefix.
var section3Prefix = map[string]string{
	"1": "header.", "2": "header.", "3": "header.", "4": "slot.", "5": "entry.",
}

// stripMarkdown removes inline markdown emphasis and code marks and collapses spaces.
func stripMarkdown(s string) string {
	s = strings.NewReplacer("`", "", "**", "", "*", "").Replace(s)
	return strings.Join(strings.Fields(s), " ")
}

// splitTableRow splits a markdown table row into trimmed cells.
func splitTableRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	cells := strings.Split(line, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

func isSeparatorRow(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}

// typeSize returns the size in bytes of a PROTOCOL.md type cell: "u32" -> 4,
// "u64 atomic" -> 8, "u8[64]" -> 64, "u32[4]" -> 16. ok is false for an empty cell
// (a reserved range row).
func typeSize(cell string) (size int, ok bool, err error) {
	t := stripMarkdown(cell)
	t = strings.Join(strings.Fields(strings.ReplaceAll(t, "atomic", "")), "")
	if t == "" {
		return 0, false, nil
	}
	m := typeRe.FindStringSubmatch(t)
	if m == nil {
		return 0, false, fmt.Errorf("unknown type %q", cell)
	}
	bits, _ := strconv.Atoi(m[1])
	n := 1
	if m[2] != "" {
		n, _ = strconv.Atoi(m[2])
	}
	return bits / 8 * n, true, nil
}

// parseProtocolTables reads the layout tables of PROTOCOL.md sections 3.1-3.5 and the
// constants stated in them. Reserved rows (no type, as "52-63" and "304-511", or a field
// named "reserved") are skipped; a typed range ("64-127 | u8[64]") must match its type.
func parseProtocolTables(path string) (map[string]specField, map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	fields := make(map[string]specField)
	consts := make(map[string]uint64)
	setConst := func(name string, v uint64) error {
		if old, ok := consts[name]; ok && old != v {
			return fmt.Errorf("constant %s stated twice: %d and %d", name, old, v)
		}
		consts[name] = v
		return nil
	}

	prefix, section := "", ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if m := sectionRe.FindStringSubmatch(line); m != nil {
			prefix, section = section3Prefix[m[1]], "3."+m[1]
			if m[1] == "" { // an amendment's header (or consumer entry) words (section 7)
				prefix, section = "header.", "7"
				if strings.Contains(line, "consumer entry") {
					prefix = "entry."
				}
			}
			continue
		}
		if headingRe.MatchString(line) {
			prefix, section = "", ""
			continue
		}
		if prefix == "" || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		cells := splitTableRow(line)
		if len(cells) < 3 || isSeparatorRow(cells) || stripMarkdown(cells[0]) == "off" {
			continue
		}
		where := fmt.Sprintf("%s:%d (section %s)", path, lineNo, section)

		// The offset is "N" or an inclusive range "N-M" (52-63 reserved, 64-127 user_meta).
		offCell := stripMarkdown(cells[0])
		startCell, endCell, isRange := strings.Cut(offCell, "-")
		off, err := strconv.Atoi(strings.TrimSpace(startCell))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: bad offset %q", where, cells[0])
		}
		size, ok, err := typeSize(cells[1])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", where, err)
		}
		fieldText := stripMarkdown(cells[2])
		name := identRe.FindString(fieldText)
		if !ok || name == "" || name == "reserved" {
			continue // reserved bytes
		}
		if isRange {
			end, err := strconv.Atoi(strings.TrimSpace(endCell))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: bad offset range %q", where, cells[0])
			}
			if end-off+1 != size {
				return nil, nil, fmt.Errorf("%s: %s spans %q (%d bytes) but its type %q is %d bytes",
					where, name, offCell, end-off+1, cells[1], size)
			}
		}
		key := prefix + name
		// An amendment may restate a field of section 3 to give it a new
		// meaning (a flag bit), at the same place.
		if old, dup := fields[key]; dup && !(section == "7" && old == (specField{Offset: off, Size: size})) {
			return nil, nil, fmt.Errorf("%s: field %s listed twice", where, key)
		}
		fields[key] = specField{Offset: off, Size: size}

		meaning := ""
		if len(cells) > 3 {
			meaning = stripMarkdown(strings.Join(cells[3:], "|"))
		}
		text := strings.TrimSpace(fieldText + " " + meaning)
		rawRow := strings.Join(cells[2:], "|")
		if err := extractConstants(key, text, meaning, rawRow, setConst); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", where, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if len(fields) == 0 {
		return nil, nil, fmt.Errorf("%s: no layout tables found in section 3", path)
	}
	var missing []string
	for _, name := range requiredSpecConstants {
		if _, ok := consts[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%s: constants not found: %s", path, strings.Join(missing, ", "))
	}
	return fields, consts, nil
}

// extractConstants reads the constants a table row states. text is the field cell and the
// meaning cell without markdown, meaning the meaning cell alone, raw the unstripped cells.
func extractConstants(key, text, meaning, raw string, set func(string, uint64) error) error {
	parse := func(s string) uint64 {
		v, _ := strconv.ParseUint(s, 10, 64) // the regexps only match digits
		return v
	}
	var errs []error
	add := func(name string, v uint64) { errs = append(errs, set(name, v)) }
	switch key {
	case "header.magic":
		if m := hexRe.FindStringSubmatch(text); m != nil {
			v, err := strconv.ParseUint(m[1], 16, 32)
			if err != nil {
				return fmt.Errorf("magic %q: %v", m[0], err)
			}
			add("MAGIC", v)
		}
	case "header.abi_version":
		if m := leadIntRe.FindStringSubmatch(meaning); m != nil {
			add("ABI_VERSION", parse(m[1]))
		}
	case "header.header_size":
		if m := equalsRe.FindStringSubmatch(text); m != nil {
			add("HEADER_SIZE", parse(m[1]))
		}
	case "header.slot_desc_size":
		if m := equalsRe.FindStringSubmatch(text); m != nil {
			add("SLOT_DESC_SIZE", parse(m[1]))
		}
	case "header.consumer_entry_size":
		if m := equalsRe.FindStringSubmatch(text); m != nil {
			add("CONSUMER_ENTRY_SIZE", parse(m[1]))
		}
	case "header.payload_offset":
		if m := multipleRe.FindStringSubmatch(text); m != nil {
			add("PAYLOAD_ALIGN", parse(m[1]))
		}
	case "header.slot_count":
		if m := slotRangeRe.FindStringSubmatch(text); m != nil {
			add("MIN_SLOTS", parse(m[1]))
			add("MAX_SLOTS", parse(m[2]))
		}
	case "header.consumer_capacity":
		if m := atMostRe.FindStringSubmatch(text); m != nil {
			add("MAX_CONSUMERS", parse(m[1]))
		}
	case "header.plane_count":
		if m := rangeRe.FindStringSubmatch(text); m != nil {
			add("MAX_PLANES", parse(m[2]))
		}
	case "slot.user_meta_len":
		if m := rangeRe.FindStringSubmatch(text); m != nil {
			add("USER_META_MAX", parse(m[2]))
		}
	case "header.state", "entry.state":
		kind := "STATE_"
		if key == "entry.state" {
			kind = "ENTRY_"
		}
		for _, m := range enumRe.FindAllStringSubmatch(text, -1) {
			add(kind+strings.ToUpper(m[2]), parse(m[1]))
		}
	case "header.flags":
		if m := bitRe.FindStringSubmatch(text); m != nil && strings.Contains(text, "CRC") {
			add("FLAG_CHECKSUM", 1<<parse(m[1]))
		}
		if m := bitRe.FindStringSubmatch(text); m != nil && strings.Contains(text, "wake_seq") {
			add("FLAG_SHARED_WAKE", 1<<parse(m[1]))
		}
		if m := bitRe.FindStringSubmatch(text); m != nil && strings.Contains(text, "honours holds") {
			add("FLAG_HOLDS", 1<<parse(m[1]))
		}
	case "entry.hold_mask":
		// "bit i (0-7): holds slot i; bit 8 + i: its grant on slot i is in progress"
		if m := pendingShiftRe.FindStringSubmatch(text); m != nil {
			add("HOLD_PENDING_SHIFT", parse(m[1]))
		}
	case "slot.frame_flags":
		if m := bitRe.FindStringSubmatch(text); m != nil && strings.Contains(text, "end of stream") {
			add("FRAME_EOS", 1<<parse(m[1]))
		}
	case "header.pixel_format":
		// "a V4L2 fourcc, first character in the low byte: `AB24` ..."
		for _, m := range fourccRe.FindAllStringSubmatch(raw, -1) {
			c := m[1]
			v := uint64(c[0]) | uint64(c[1])<<8 | uint64(c[2])<<16 | uint64(c[3])<<24
			add("FOURCC_"+strings.TrimSpace(c), v)
		}
	}
	return errors.Join(errs...)
}

// parseLayoutOutput parses the output of testdata/c/layout.c: "<struct>.<field> <off>
// <size>", "const <NAME> <value>" and "sizeof <struct> <size>" lines. Structure sizes are
// returned among the constants as SIZEOF_HEADER, SIZEOF_SLOT and SIZEOF_ENTRY.
func parseLayoutOutput(out []byte) (map[string]specField, map[string]uint64, error) {
	fields := make(map[string]specField)
	consts := make(map[string]uint64)
	for i, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(err error) error { return fmt.Errorf("layout output line %d %q: %v", i+1, line, err) }
		if len(f) != 3 {
			return nil, nil, bad(errors.New("want 3 words"))
		}
		switch f[0] {
		case "const", "sizeof":
			v, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				return nil, nil, bad(err)
			}
			name := f[1]
			if f[0] == "sizeof" {
				name = "SIZEOF_" + strings.ToUpper(name)
			}
			if _, dup := consts[name]; dup {
				return nil, nil, bad(errors.New("duplicate"))
			}
			consts[name] = v
		default:
			if !strings.Contains(f[0], ".") {
				return nil, nil, bad(errors.New("want <struct>.<field>"))
			}
			off, err1 := strconv.Atoi(f[1])
			size, err2 := strconv.Atoi(f[2])
			if err := errors.Join(err1, err2); err != nil {
				return nil, nil, bad(err)
			}
			if _, dup := fields[f[0]]; dup {
				return nil, nil, bad(errors.New("duplicate"))
			}
			fields[f[0]] = specField{Offset: off, Size: size}
		}
	}
	return fields, consts, nil
}

// cLayout compiles testdata/c/layout.c against include/framebus.h and returns the layout
// and constants the C compiler sees (structure sizes as SIZEOF_HEADER, SIZEOF_SLOT and
// SIZEOF_ENTRY). It skips the test when gcc is missing, unless FRAMEBUS_REQUIRE_GCC=1.
func cLayout(t *testing.T) (map[string]specField, map[string]uint64) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_GCC") == "1" {
			t.Fatalf("FRAMEBUS_REQUIRE_GCC=1 but gcc is not usable: %v", err)
		}
		t.Skipf("gcc not found (%v); set FRAMEBUS_REQUIRE_GCC=1 to make this a failure", err)
	}
	bin := filepath.Join(t.TempDir(), "layout")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	// Strict C11: the header must not depend on GNU extensions.
	build := exec.Command(gcc, "-std=c11", "-pedantic-errors", "-Wall", "-Wextra", "-Werror",
		"-I", "include", "-o", bin, filepath.Join("testdata", "c", "layout.c"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build.Args, " "), err, out)
	}
	run := exec.Command(bin)
	var stderr bytes.Buffer
	run.Stderr = &stderr
	out, err := run.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.Bytes())
	}
	fields, consts, err := parseLayoutOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	return fields, consts
}

// compareLayouts lists every difference between two layouts, sorted: fields missing from
// either side and fields whose offset or size differ. wantName and gotName label the sides.
func compareLayouts(want, got map[string]specField, wantName, gotName string) []string {
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: in %s (offset %d, size %d), missing from %s",
				k, wantName, w.Offset, w.Size, gotName))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%s: %s has offset %d size %d, %s has offset %d size %d",
				k, wantName, w.Offset, w.Size, gotName, g.Offset, g.Size))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: in %s (offset %d, size %d), missing from %s",
				k, gotName, g.Offset, g.Size, wantName))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// compareConstants lists every difference between two constant tables, sorted.
func compareConstants(want, got map[string]uint64, wantName, gotName string) []string {
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("constant %s: %s says %d (%#x), missing from %s",
				k, wantName, w, w, gotName))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("constant %s: %s says %d (%#x), %s says %d (%#x)",
				k, wantName, w, w, gotName, g, g))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("constant %s: %s says %d (%#x), not stated in %s",
				k, gotName, g, g, wantName))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// checkSpecLayout checks a layout against the structure sizes: every field inside its
// structure, naturally aligned, and no two fields overlapping.
func checkSpecLayout(fields map[string]specField, consts map[string]uint64) []string {
	var problems []string
	byStruct := make(map[string][]string)
	for k := range fields {
		s, _, _ := strings.Cut(k, ".")
		byStruct[s] = append(byStruct[s], k)
	}
	for s := range structSizeConstant {
		if len(byStruct[s]) == 0 {
			problems = append(problems, fmt.Sprintf("no %s.* fields", s))
		}
	}
	for s, keys := range byStruct {
		sizeConst, ok := structSizeConstant[s]
		if !ok {
			problems = append(problems, fmt.Sprintf("unknown structure %q (%v)", s, keys))
			continue
		}
		limit := int(consts[sizeConst])
		sort.Slice(keys, func(i, j int) bool { return fields[keys[i]].Offset < fields[keys[j]].Offset })
		end, prev := 0, ""
		for _, k := range keys {
			f := fields[k]
			if f.Size <= 0 || f.Offset < 0 || f.Offset+f.Size > limit {
				problems = append(problems, fmt.Sprintf("%s [%d, %d) outside [0, %s=%d)",
					k, f.Offset, f.Offset+f.Size, sizeConst, limit))
			}
			if align := min(f.Size, 8); align&(align-1) == 0 && f.Offset%align != 0 {
				problems = append(problems, fmt.Sprintf("%s at %d is not %d-byte aligned", k, f.Offset, align))
			}
			if f.Offset < end {
				problems = append(problems, fmt.Sprintf("%s at %d overlaps %s (ends at %d)", k, f.Offset, prev, end))
			}
			end, prev = f.Offset+f.Size, k
		}
	}
	sort.Strings(problems)
	return problems
}

func mustParseProtocol(t *testing.T) (map[string]specField, map[string]uint64) {
	t.Helper()
	fields, consts, err := parseProtocolTables(protocolDocPath)
	if err != nil {
		t.Fatalf("parsing %s: %v", protocolDocPath, err)
	}
	return fields, consts
}

// TestProtocolTablesSelfConsistent checks PROTOCOL.md on its own: the parser finds every
// constant it knows, and the tables describe non-overlapping, aligned fields that fit.
func TestProtocolTablesSelfConsistent(t *testing.T) {
	fields, consts := mustParseProtocol(t)
	for _, name := range expectedSpecConstants {
		if _, ok := consts[name]; !ok {
			t.Errorf("constant %s not found in %s (reworded? update extractConstants)", name, protocolDocPath)
		}
	}
	for _, p := range checkSpecLayout(fields, consts) {
		t.Error(p)
	}
	if got, want := uint64(fields["slot.user_meta"].Size), consts["USER_META_MAX"]; got != want {
		t.Errorf("slot.user_meta is %d bytes, user_meta_len allows up to %d", got, want)
	}
	if got, want := uint64(fields["header.plane_stride"].Size), 4*consts["MAX_PLANES"]; got != want {
		t.Errorf("header.plane_stride is %d bytes, want 4*MAX_PLANES = %d", got, want)
	}
	if t.Failed() {
		return
	}
	t.Logf("%s: %d fields, %d constants", protocolDocPath, len(fields), len(consts))
}

// TestCHeaderMatchesProtocol checks include/framebus.h against PROTOCOL.md: every field
// at the same offset with the same size, both ways, and the same constants.
func TestCHeaderMatchesProtocol(t *testing.T) {
	spec, specConsts := mustParseProtocol(t)
	cFields, cConsts := cLayout(t)

	for _, d := range compareLayouts(spec, cFields, "PROTOCOL.md", "framebus.h") {
		t.Error(d)
	}
	for s, sizeConst := range structSizeConstant {
		name := "SIZEOF_" + strings.ToUpper(s)
		got, ok := cConsts[name]
		delete(cConsts, name)
		if want := specConsts[sizeConst]; !ok || got != want {
			t.Errorf("sizeof %s: framebus.h %d (reported: %v), PROTOCOL.md %s = %d", s, got, ok, sizeConst, want)
		}
	}
	for _, d := range compareConstants(specConsts, cConsts, "PROTOCOL.md", "framebus.h") {
		t.Error(d)
	}
}

// TestDocsProtocolMatchesShared checks that docs/PROTOCOL.md is the contract as handed
// over (../../shared/PROTOCOL.md, when that file exists). Today the two must be identical;
// a deliberate change must be made in both places (and explained in
// its section 7, the amendments).
func TestDocsProtocolMatchesShared(t *testing.T) {
	shared, err := os.ReadFile(sharedProtocolPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s not present", sharedProtocolPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile(protocolDocPath)
	if err != nil {
		t.Fatal(err)
	}
	// docs/PROTOCOL.md is shared/PROTOCOL.md word for word, followed by the
	// project's own amendments section.
	if rest, ok := bytes.CutPrefix(docs, shared); ok {
		if len(rest) == 0 || bytes.HasPrefix(bytes.TrimLeft(rest, "\n"), []byte("## 7. Amendments")) {
			return
		}
		t.Fatalf("%s: after the shared text comes something other than the amendments section", protocolDocPath)
	}
	a := strings.Split(string(shared), "\n")
	b := strings.Split(string(docs), "\n")
	shown := 0
	for i := 0; i < max(len(a), len(b)) && shown < 20; i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb {
			t.Errorf("line %d differs:\n  %s: %q\n  %s: %q", i+1, sharedProtocolPath, la, protocolDocPath, lb)
			shown++
		}
	}
	t.Errorf("%s (%d lines) differs from %s (%d lines)", protocolDocPath, len(b), sharedProtocolPath, len(a))
}

// ---- the Go layout against both ----

// goLayout describes the Go structs in the keys of the tables above:
// "header.<name>", "slot.<name>", "entry.<name>", reserved "_" fields skipped.
func goLayout() map[string]specField {
	fields := make(map[string]specField)
	for prefix, typ := range map[string]reflect.Type{
		"header": reflect.TypeFor[header](),
		"slot":   reflect.TypeFor[slotDesc](),
		"entry":  reflect.TypeFor[consumerEntry](),
	} {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Name == "_" {
				continue
			}
			fields[prefix+"."+protoName(f.Name)] = specField{Offset: int(f.Offset), Size: int(f.Type.Size())}
		}
	}
	return fields
}

// goConstants are the Go constants under the C header's names (without the
// FRAMEBUS_ prefix), structure sizes as the C output gives them.
func goConstants() map[string]uint64 {
	c := map[string]uint64{
		"MAGIC": Magic, "ABI_VERSION": ABIVersion, "HEADER_SIZE": HeaderSize,
		"SLOT_DESC_SIZE": SlotDescSize, "CONSUMER_ENTRY_SIZE": ConsumerEntrySize,
		"PAYLOAD_ALIGN": PayloadAlign, "MIN_SLOTS": MinSlots, "MAX_SLOTS": MaxSlots,
		"MAX_CONSUMERS": MaxConsumers, "USER_META_MAX": UserMetaMax, "MAX_PLANES": MaxPlanes,
		"STATE_INITIALIZING": StateInitializing, "STATE_READY": StateReady,
		"STATE_BROKEN": StateBroken, "STATE_RETIRED": StateRetired,
		"FLAG_CHECKSUM": FlagChecksum, "FLAG_SHARED_WAKE": FlagSharedWake, "FRAME_EOS": FrameEndOfStream,
		"FLAG_HOLDS": FlagHolds, "HOLD_PENDING_SHIFT": HoldPendingShift,
		"ENTRY_FREE": EntryFree, "ENTRY_CLAIMING": EntryClaiming, "ENTRY_ACTIVE": EntryActive,
		"FOURCC_AB24": uint64(FormatRGBA), "FOURCC_RGB3": uint64(FormatRGB24),
		"FOURCC_BGR3": uint64(FormatBGR24), "FOURCC_GREY": uint64(FormatGrey),
		"FOURCC_YUYV": uint64(FormatYUYV), "FOURCC_NV12": uint64(FormatNV12),
		"FOURCC_YU12": uint64(FormatI420), "FOURCC_MJPG": uint64(FormatMJPEG),
	}
	return c
}

var goStructSizes = map[string]uint64{
	"SIZEOF_HEADER": uint64(unsafe.Sizeof(header{})),
	"SIZEOF_SLOT":   uint64(unsafe.Sizeof(slotDesc{})),
	"SIZEOF_ENTRY":  uint64(unsafe.Sizeof(consumerEntry{})),
}

// TestLayoutMatchesProtocolAndC requires the Go structs, the tables of
// docs/PROTOCOL.md and include/framebus.h (as gcc lays it out) to agree
// exactly, field by field and constant by constant, and reports every
// difference.
func TestLayoutMatchesProtocolAndC(t *testing.T) {
	goFields, goConsts := goLayout(), goConstants()
	docFields, docConsts, err := parseProtocolTables(protocolDocPath)
	if err != nil {
		t.Fatalf("parsing %s: %v", protocolDocPath, err)
	}

	t.Run("GoVsProtocol", func(t *testing.T) {
		for _, d := range compareLayouts(docFields, goFields, "PROTOCOL.md", "Go") {
			t.Error(d)
		}
		// The document states some constants (sizes, ranges, states, fourccs):
		// each must be Go's. Go has a few more (fourccs the parser may miss).
		for name, want := range docConsts {
			got, ok := goConsts[name]
			switch {
			case !ok:
				t.Errorf("constant %s: PROTOCOL.md says %d (%#x), Go has no such constant", name, want, want)
			case got != want:
				t.Errorf("constant %s: PROTOCOL.md says %d (%#x), Go says %d (%#x)", name, want, want, got, got)
			}
		}
		for s, sizeConst := range structSizeConstant {
			name := "SIZEOF_" + strings.ToUpper(s)
			if got, want := goStructSizes[name], docConsts[sizeConst]; got != want {
				t.Errorf("size of %s: Go %d, PROTOCOL.md %s = %d", s, got, sizeConst, want)
			}
		}
		t.Logf("Go vs PROTOCOL.md: %d fields, %d constants compared", len(docFields), len(docConsts))
	})

	t.Run("JSONTags", func(t *testing.T) {
		// Header's JSON names (Inspect's output) are the protocol's names too.
		typ := reflect.TypeFor[header]()
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag, ok := f.Tag.Lookup("json")
			if f.Name == "_" || !ok {
				continue
			}
			if name, _, _ := strings.Cut(tag, ","); name != protoName(f.Name) {
				t.Errorf("header.%s: json name %q, PROTOCOL.md name %q", f.Name, name, protoName(f.Name))
			}
		}
	})

	t.Run("GoVsC", func(t *testing.T) {
		cFields, cConsts := cLayout(t)
		for _, d := range compareLayouts(cFields, goFields, "framebus.h", "Go") {
			t.Error(d)
		}
		goAll := make(map[string]uint64, len(goConsts)+len(goStructSizes))
		for k, v := range goConsts {
			goAll[k] = v
		}
		for k, v := range goStructSizes {
			goAll[k] = v
		}
		for _, d := range compareConstants(cConsts, goAll, "framebus.h", "Go") {
			t.Error(d)
		}
		t.Logf("Go vs framebus.h: %d fields, %d constants compared", len(cFields), len(cConsts))
	})

	t.Run("ProtocolVsC", func(t *testing.T) {
		// TestCHeaderMatchesProtocol does this in full; repeated here so that
		// this one test proves all three agree.
		cFields, cConsts := cLayout(t)
		for _, d := range compareLayouts(docFields, cFields, "PROTOCOL.md", "framebus.h") {
			t.Error(d)
		}
		for name, want := range docConsts {
			if got, ok := cConsts[name]; !ok || got != want {
				t.Errorf("constant %s: PROTOCOL.md says %d, framebus.h says %d (present: %v)", name, want, got, ok)
			}
		}
	})
}
