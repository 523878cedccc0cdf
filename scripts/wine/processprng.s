# bcryptprimitives.dll for Wine 8 (Debian 12), which lacks it: Go >= 1.22
# programs on Windows refuse to start without its ProcessPrng. This one
# forwards to advapi32's RtlGenRandom (SystemFunction036), which Wine has.
#
#   BOOL ProcessPrng(PBYTE data, SIZE_T len)  (Microsoft x64 calling convention)
#
# Built by scripts/wine/setup.sh with binutils-mingw-w64-x86-64 only.
	.text
	.globl	ProcessPrng
ProcessPrng:
	pushq	%rbx
	pushq	%rsi
	subq	$40, %rsp		# 32 bytes of shadow space, 16-byte alignment
	movq	%rcx, %rbx		# data
	movq	%rdx, %rsi		# len (SIZE_T; RtlGenRandom takes a ULONG)
1:	testq	%rsi, %rsi
	jz	2f
	movl	$0x40000000, %edx	# at most 1 GiB per call
	cmpq	%rdx, %rsi
	cmovbq	%rsi, %rdx
	movq	%rbx, %rcx
	subq	%rdx, %rsi
	addq	%rdx, %rbx
	call	*__imp_SystemFunction036(%rip)
	testb	%al, %al
	jnz	1b
	xorl	%eax, %eax
	jmp	3f
2:	movl	$1, %eax
3:	addq	$40, %rsp
	popq	%rsi
	popq	%rbx
	ret
