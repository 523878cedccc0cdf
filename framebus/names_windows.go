//go:build windows

package framebus

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/windows"
	"hash/fnv"
	"path/filepath"
)

// Bus paths on Windows: what a path of the shared code names (see
// sys_windows.go), and the operations on names.

type fileKind uint8

const (
	kindSection fileKind = iota // a generation's mapping (opened, or built under a tmp path)
	kindMutex                   // the owner mutex (the lock file)
)

// objPath is a bus path taken apart.
type objPath struct {
	path   string
	base   string // <ns>framebus.<name> or <Local\framebus-<hash>.<name>
	scope  uint64 // hash of base, for file identities
	global bool
}

func (o objPath) indexName() string       { return o.base }
func (o objPath) ownerName() string       { return o.base + ".owner" }
func (o objPath) genName(g uint64) string { return o.base + ".g" + strconv.FormatUint(g, 10) }
func (o objPath) entryName(g uint64, i int) string {
	return o.genName(g) + ".c" + strconv.Itoa(i)
}
func (o objPath) semName(g uint64, i int) string { return o.genName(g) + ".s" + strconv.Itoa(i) }

type pathKind uint8

const (
	pathSegment pathKind = iota
	pathLock
	pathTmp
)

// namespacePrefix turns a bus directory into an object name prefix.
func namespacePrefix(dir string) (prefix string, global bool) {
	d := strings.TrimRight(dir, `\/`)
	switch strings.ToLower(d) {
	case "local", "":
		return `Local\` + filePrefix, false
	case "global":
		return `Global\` + filePrefix, true
	}
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(filepath.Clean(dir))))
	return fmt.Sprintf(`Local\framebus-%016x.`, h.Sum64()), false
}

func parsePath(path string) (objPath, pathKind, error) {
	dir, file := filepath.Dir(path), filepath.Base(path)
	rest, ok := strings.CutPrefix(file, filePrefix)
	if !ok {
		return objPath{}, 0, fmt.Errorf("%w: %s is not a framebus name", ErrUnsafePath, path)
	}
	kind := pathSegment
	if n, ok := strings.CutSuffix(rest, ".lock"); ok {
		rest, kind = n, pathLock
	} else if i := strings.Index(rest, ".tmp-"); i > 0 {
		rest, kind = rest[:i], pathTmp
	}
	if err := ValidateName(rest); err != nil {
		return objPath{}, 0, err
	}
	prefix, global := namespacePrefix(dir)
	o := objPath{path: path, base: prefix + rest, global: global}
	h := fnv.New64a()
	h.Write([]byte(o.base))
	o.scope = h.Sum64()
	return o, kind, nil
}

// ---- names ----

// lstatPath reports whether the index names a generation (a segment path),
// or whether the owner mutex exists (a lock path). Tmp paths never exist:
// a generation being built has no name yet.
func lstatPath(path string) (pathInfo, error) {
	o, kind, err := parsePath(path)
	if err != nil {
		return pathInfo{}, nil
	}
	switch kind {
	case pathTmp:
		return pathInfo{}, nil
	case pathLock:
		name, _ := windows.UTF16PtrFromString(o.ownerName())
		h, err := windows.OpenMutex(windows.SYNCHRONIZE, false, name)
		if err != nil {
			if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
				return pathInfo{}, nil
			}
			return pathInfo{}, winErr("stat", o.ownerName(), o.global, err)
		}
		windows.CloseHandle(h)
		return pathInfo{exists: true, regular: true, id: fileID{o.scope, 0}, mode: 0o600}, nil
	}
	idx, err := openIndex(o, nil)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return pathInfo{}, nil
		}
		return pathInfo{}, err
	}
	defer idx.close()
	g := idx.gen.Load()
	if g == 0 {
		return pathInfo{}, nil
	}
	return pathInfo{exists: true, regular: true, id: fileID{o.scope, g}, mode: 0o600}, nil
}

// renameFile publishes the generation built under from: the index names it.
func renameFile(from, to string) error {
	pending.Lock()
	f := pending.m[from]
	delete(pending.m, from)
	pending.Unlock()
	if f == nil || f.sec == 0 {
		return fmt.Errorf("%w: %s is not a generation being built", ErrNotFound, from)
	}
	if o, _, err := parsePath(to); err != nil || o.base != f.o.base {
		return fmt.Errorf("%w: %s cannot be published as %s", ErrUnsafePath, from, to)
	}
	f.tmp = false
	f.idx.gen.Store(f.gen)
	return nil
}

// unlinkFile removes a bus's name: the index names no generation any more.
// Objects cannot be deleted on Windows; they go when their last handle
// closes. The owner mutex and tmp paths have nothing to remove.
func unlinkFile(path string) error {
	o, kind, err := parsePath(path)
	if err != nil {
		return err
	}
	if kind != pathSegment {
		return nil
	}
	idx, err := openIndex(o, nil)
	if err != nil {
		return err
	}
	defer idx.close()
	if idx.gen.Swap(0) == 0 {
		return fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
	}
	return nil
}

func tmpName(path string) string { return path + ".tmp-" + strconv.Itoa(os.Getpid()) }

// isAt reports whether this open generation (or owner mutex) is still the
// one its path names.
func (f *sysFile) isAt(path string) (bool, error) {
	info, err := lstatPath(path)
	if err != nil {
		return false, err
	}
	return info.exists && info.id == f.id(), nil
}
