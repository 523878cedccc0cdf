package framebus

// DefaultDir is the bus "directory" used when none is given and FRAMEBUS_DIR
// is not set. On Windows a bus directory is a kernel object namespace:
// Local\ (the session's, the default) or Global\ (every session's; creating
// a bus there needs SeCreateGlobalPrivilege). Any other string names a
// private scope inside Local\ (see sys_windows.go).
const DefaultDir = `Local\`
