package framebus

// System calls of the Windows port that golang.org/x/sys/windows lacks.
// zsyscall_windows_unsafe.go is generated from the sys lines below by
// go generate ./framebus/ (see generate.go).

//sys	openFileMapping(access uint32, inherit bool, name *uint16) (handle windows.Handle, err error) = kernel32.OpenFileMappingW
//sys	createSemaphore(sa *windows.SecurityAttributes, initial int32, max int32, name *uint16) (handle windows.Handle, err error) [failretval == 0 || e1 == windows.ERROR_ALREADY_EXISTS] = kernel32.CreateSemaphoreW
//sys	releaseSemaphore(h windows.Handle, count int32, prev *int32) (err error) = kernel32.ReleaseSemaphore
//sys	globalMemoryStatusEx(buf *memoryStatusEx) (err error) = kernel32.GlobalMemoryStatusEx
//sys	privilegeCheck(token windows.Token, privs *privilegeSet, result *int32) (err error) = advapi32.PrivilegeCheck
//sys	ntQuerySection(h windows.Handle, class uint32, info *sectionBasicInfo, size uintptr, retLen *uintptr) (ntstatus error) = ntdll.NtQuerySection
//sys	ntQueryMutant(h windows.Handle, class uint32, info *mutantBasicInfo, size uint32, retLen *uint32) (ntstatus error) = ntdll.NtQueryMutant

// memoryStatusEx is MEMORYSTATUSEX.
type memoryStatusEx struct {
	Length               uint32
	MemoryLoad           uint32
	TotalPhys            uint64
	AvailPhys            uint64
	TotalPageFile        uint64
	AvailPageFile        uint64
	TotalVirtual         uint64
	AvailVirtual         uint64
	AvailExtendedVirtual uint64
}

// privilegeSet is PRIVILEGE_SET with room for one privilege.
type privilegeSet struct {
	PrivilegeCount uint32
	Control        uint32
	Privilege      [1]luidAndAttributes
}

type luidAndAttributes struct {
	LowPart    uint32
	HighPart   int32
	Attributes uint32
}

// sectionBasicInfo is SECTION_BASIC_INFORMATION (NtQuerySection class 0).
type sectionBasicInfo struct {
	BaseAddress          uintptr
	AllocationAttributes uint32
	MaximumSize          int64
}

// mutantBasicInfo is MUTANT_BASIC_INFORMATION (NtQueryMutant class 0):
// CurrentCount is 1 when the mutex is free, 0 or less while it is owned.
type mutantBasicInfo struct {
	CurrentCount   int32
	OwnedByCaller  uint8
	AbandonedState uint8
	_              [2]byte
}
