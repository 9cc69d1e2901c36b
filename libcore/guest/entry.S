/* Guest kernel entry points: the syscall entry (MSR_LSTAR) and the CPU
 * exception stubs. Written for both kinds of KVM: on PVM `syscall` from CPL3
 * stays at CPL3 (return with popfq + jmp), on VMX/SVM it enters CPL0 (return
 * with sysretq). The user stack is never pushed to: the first instruction
 * switches to the kernel stack, so the user's red zone is safe. */
#define __ASSEMBLY__
#define PSN_KERNEL_MAGIC 0x314e524b4e535350
#define PSN_ABI_VERSION 4 /* = guest_abi.h (the monitor checks the header) */
#define PSN_HC_FAULT_PORT (0x500 + 4)

    .section .header, "a"
    .quad PSN_KERNEL_MAGIC
    .long PSN_ABI_VERSION, psn_stats /* stats_addr (syscall.c) */
    .quad psn_syscall_entry
    .quad psn_exc_table
    .quad __kernel_end
    .quad psn_out_len

    .text
    .globl psn_syscall_entry
psn_syscall_entry:
    mov %rsp, psn_user_rsp(%rip)
    lea psn_kernel_stack_top(%rip), %rsp
    cld
    push %rcx            /* user rip */
    push %r11            /* user rflags */
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    push %r9
    sub $8, %rsp         /* keep %rsp 16-byte aligned at the call */
    push %r9             /* arg 5 goes on the stack (7th C argument) */
    mov %r8, %r9
    mov %r10, %r8
    mov %rdx, %rcx
    mov %rsi, %rdx
    mov %rdi, %rsi
    mov %rax, %rdi
    call psn_syscall
    add $16, %rsp
    pop %r9
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    pop %r11
    pop %rcx
    push %rdx
    mov %cs, %edx
    test $3, %edx
    pop %rdx
    jnz 1f
    mov psn_user_rsp(%rip), %rsp
    sysretq
1:  push %r11            /* still on the kernel stack */
    popfq
    mov psn_user_rsp(%rip), %rsp
    jmp *%rcx

/* Exceptions: every vector reports to the monitor and stops. The handlers
 * run at CPL0 (emulated on PVM), so they are a handful of integer
 * instructions. */
.macro EXC_NOERR n
exc_\n: pushq $0
        pushq $\n
        jmp exc_common
.endm
.macro EXC_ERR n
exc_\n: pushq $\n
        jmp exc_common
.endm

EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 4
EXC_NOERR 5
EXC_NOERR 6
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 13
EXC_ERR 14
EXC_NOERR 15
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20
EXC_ERR 21
EXC_NOERR 22
EXC_NOERR 23
EXC_NOERR 24
EXC_NOERR 25
EXC_NOERR 26
EXC_NOERR 27
EXC_NOERR 28
EXC_ERR 29
EXC_ERR 30
EXC_NOERR 31

exc_common:
    /* frame: vector, error, rip, cs, rflags, rsp, ss */
    lea psn_fault(%rip), %rax
    mov 0(%rsp), %rbx
    mov %rbx, 0(%rax)
    mov 8(%rsp), %rbx
    mov %rbx, 8(%rax)
    mov 16(%rsp), %rbx
    mov %rbx, 16(%rax)
    mov 24(%rsp), %rbx
    mov %rbx, 24(%rax)
    mov 32(%rsp), %rbx
    mov %rbx, 32(%rax)
    mov 40(%rsp), %rbx
    mov %rbx, 40(%rax)
    mov %cr2, %rbx
    mov %rbx, 48(%rax)
    mov $PSN_HC_FAULT_PORT, %dx
    out %eax, %dx
2:  hlt
    jmp 2b

/* #BP (int3) is the one resumable exception: the monitor's tracer places
 * int3 bytes in the program's code (runtime/trace.h). The handler reports it
 * like any fault, but keeps the three registers it needs, and when the
 * monitor resumes it (it removed its breakpoint and wrote psn_fault.rip, the
 * int3's own address) it continues the program there with iretq. For an
 * int3 the monitor did not place, the monitor never resumes: the program
 * ends with SIGTRAP as before. */
exc_3:
    push %rax
    push %rbx
    push %rdx
    /* frame: rdx, rbx, rax, rip, cs, rflags, rsp, ss */
    lea psn_fault(%rip), %rax
    movq $3, 0(%rax)
    movq $0, 8(%rax)
    mov 24(%rsp), %rbx
    mov %rbx, 16(%rax)
    mov 32(%rsp), %rbx
    mov %rbx, 24(%rax)
    mov 40(%rsp), %rbx
    mov %rbx, 32(%rax)
    mov 48(%rsp), %rbx
    mov %rbx, 40(%rax)
    movq $0, 48(%rax)
    mov $PSN_HC_FAULT_PORT, %dx
    out %eax, %dx
    mov 16(%rax), %rbx
    mov %rbx, 24(%rsp)
    pop %rdx
    pop %rbx
    pop %rax
    iretq

    .section .rodata
    .balign 8
    .globl psn_exc_table
psn_exc_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\n
    .endr

    .section .note.GNU-stack, "", @progbits
    .bss
    /* psn_fault and psn_user_rsp fill one 64-byte block, so they are always
     * on one page: every syscall writes psn_user_rsp, so that page is dirty
     * whether or not a breakpoint handler wrote psn_fault, and a traced guest
     * leaves the same page-table dirty bits as an untraced one
     * (tests/kvm/trace_capture.cpp), wherever the linker puts the block. */
    .balign 64
    .globl psn_fault
psn_fault:
    .skip 56
    .globl psn_user_rsp
psn_user_rsp:
    .skip 8
    .balign 16
psn_kernel_stack:
    .skip 65536
    .globl psn_kernel_stack_top
psn_kernel_stack_top:
