package image

import "encoding/binary"

// The pause program, the process that holds a pod's namespaces. Rather than
// the 200 MB kubeforge executable (whose Go runtime and package init would
// cost every sandbox several MB of RSS) it is a tiny static ELF written here:
//
//	rt_sigaction(SIGCHLD, {SIG_IGN}, NULL, 8)  // the kernel then reaps exited
//	                                           // children itself: no zombies
//	                                           // in pods sharing a PID namespace
//	for { pause() }                            // (ppoll on arm64)
//
// It installs no signal handler: as PID 1 of its PID namespace it ignores
// every signal but SIGKILL, which is how containerd stops a sandbox.

// pauseCode holds the machine code per GOARCH.
var pauseCode = map[string]struct {
	machine uint16 // ELF e_machine
	code    []byte
}{
	"amd64": {machine: 62 /* EM_X86_64 */, code: []byte{
		0x6a, 0x00, // push 0            sa_mask
		0x6a, 0x00, // push 0            sa_restorer
		0x6a, 0x00, // push 0            sa_flags
		0x6a, 0x01, // push 1            sa_handler = SIG_IGN
		0xbf, 0x11, 0x00, 0x00, 0x00, // mov edi, 17 (SIGCHLD)
		0x48, 0x89, 0xe6, // mov rsi, rsp       act
		0x31, 0xd2, // xor edx, edx      oldact = NULL
		0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov r10d, 8   sigsetsize
		0xb8, 0x0d, 0x00, 0x00, 0x00, // mov eax, 13 (rt_sigaction)
		0x0f, 0x05, // syscall
		// loop:
		0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
		0x0f, 0x05, // syscall
		0xeb, 0xf7, // jmp loop
	}},
	"arm64": {machine: 183 /* EM_AARCH64 */, code: le32(
		0xd10083ff, // sub  sp, sp, #32
		0xd2800029, // mov  x9, #1           sa_handler = SIG_IGN
		0xa9007fe9, // stp  x9, xzr, [sp]    sa_handler, sa_flags = 0
		0xa9017fff, // stp  xzr, xzr, [sp, #16]  sa_restorer, sa_mask = 0
		0xd2800220, // mov  x0, #17 (SIGCHLD)
		0x910003e1, // mov  x1, sp           act
		0xd2800002, // mov  x2, #0           oldact = NULL
		0xd2800103, // mov  x3, #8           sigsetsize
		0xd28010c8, // mov  x8, #134 (rt_sigaction)
		0xd4000001, // svc  #0
		// loop:
		0xd2800000, // mov  x0, #0           fds = NULL
		0xd2800001, // mov  x1, #0           nfds = 0
		0xd2800002, // mov  x2, #0           timeout = NULL: forever
		0xd2800003, // mov  x3, #0           sigmask = NULL
		0xd2800928, // mov  x8, #73 (ppoll)
		0xd4000001, // svc  #0
		0x17fffffa, // b    loop
	)},
}

func le32(words ...uint32) []byte {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// PauseELF returns the pause program for goarch, and false when there is
// none for that architecture.
func PauseELF(goarch string) ([]byte, bool) {
	pc, ok := pauseCode[goarch]
	if !ok {
		return nil, false
	}
	return elf64Exec(pc.machine, pc.code), true
}

// elf64Exec wraps code into a minimal static little-endian ELF64
// executable: the ELF header, one PT_LOAD program header mapping the whole
// file read+execute at 0x400000, and the code, which is the entry point.
func elf64Exec(machine uint16, code []byte) []byte {
	const (
		base    = 0x400000
		ehsize  = 64
		phsize  = 56
		codeOff = ehsize + phsize
	)
	total := codeOff + len(code)
	b := make([]byte, total)
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* SysV ABI */})
	le.PutUint16(b[16:], 2) // e_type: ET_EXEC
	le.PutUint16(b[18:], machine)
	le.PutUint32(b[20:], 1)            // e_version
	le.PutUint64(b[24:], base+codeOff) // e_entry
	le.PutUint64(b[32:], ehsize)       // e_phoff
	le.PutUint64(b[40:], 0)            // e_shoff: no sections
	le.PutUint32(b[48:], 0)            // e_flags
	le.PutUint16(b[52:], ehsize)       // e_ehsize
	le.PutUint16(b[54:], phsize)       // e_phentsize
	le.PutUint16(b[56:], 1)            // e_phnum
	le.PutUint16(b[58:], 64)           // e_shentsize
	le.PutUint16(b[60:], 0)            // e_shnum
	le.PutUint16(b[62:], 0)            // e_shstrndx
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 1)              // p_type: PT_LOAD
	le.PutUint32(ph[4:], 5)              // p_flags: PF_R|PF_X
	le.PutUint64(ph[8:], 0)              // p_offset
	le.PutUint64(ph[16:], base)          // p_vaddr
	le.PutUint64(ph[24:], base)          // p_paddr
	le.PutUint64(ph[32:], uint64(total)) // p_filesz
	le.PutUint64(ph[40:], uint64(total)) // p_memsz
	le.PutUint64(ph[48:], 0x10000)       // p_align
	copy(b[codeOff:], code)
	return b
}
