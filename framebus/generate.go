package framebus

// The Windows system calls that golang.org/x/sys/windows lacks are generated
// from the //sys lines of syscall_windows.go into
// zsyscall_windows_unsafe.go (it uses unsafe, hence the name; that name
// implies no OS, so a second step adds the build constraint). These lines
// live here, in a file every OS builds, so that go generate ./framebus/ runs
// them on any OS, with nothing but Go.

//go:generate go run golang.org/x/sys/windows/mkwinsyscall -output zsyscall_windows_unsafe.go syscall_windows.go
//go:generate go run ./internal/buildtag -tag windows zsyscall_windows_unsafe.go
