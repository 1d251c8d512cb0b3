//! The first instructions: the Xen PVH ELF note that makes QEMU enter the
//! loader, and the 32-bit stub that switches to long mode and calls
//! `loader_main`.
//!
//! QEMU's PVH option ROM jumps to `pvh_entry` in 32-bit protected mode with
//! paging off and `%ebx` = physical address of `struct hvm_start_info`.  The
//! stub identity-maps the first 4 GiB with 2 MiB pages (tables in .bss),
//! enables PAE, long mode, NX (when the CPU has it), paging and
//! write-protect, loads a GDT with the Limine layout and far-jumps to 64-bit
//! code.  Invariants: the boot GDT has the same layout as the one handed to
//! the kernel ([`crate::protocol::LIMINE_GDT`]).  Must not: touch memory
//! outside the loader image before the Rust code has claimed it.

use core::arch::global_asm;

global_asm!(
    r#"
    /* Xen PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen", 64-bit desc
       holding the 32-bit physical entry address (QEMU reads a full word). */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_entry
    .long 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
boot_stack: .skip 65536
boot_stack_top:

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00009b000000ffff    /* 0x08 16-bit code */
    .quad 0x000093000000ffff    /* 0x10 16-bit data */
    .quad 0x00cf9b000000ffff    /* 0x18 32-bit code */
    .quad 0x00cf93000000ffff    /* 0x20 32-bit data */
    .quad 0x00af9b000000ffff    /* 0x28 64-bit code */
    .quad 0x00cf93000000ffff    /* 0x30 64-bit data */
boot_gdt_end:
boot_gdt_desc:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .text.pvh_entry, "ax", @progbits
    .code32
    .global pvh_entry
pvh_entry:
    cli
    cld
    movl %ebx, %esi                 /* keep the start_info address */
    movl $boot_stack_top, %esp

    /* Zero the boot page tables (PML4, PDPT, 4 PDs = 6 pages). */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $(6 * 1024), %ecx
    rep stosl

    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4

    /* PDPT[i] -> PD i, for the 4 GiB below 4 GiB. */
    movl $boot_pdpt, %edi
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl $4, %ecx
1:  movl %eax, (%edi)
    addl $4096, %eax
    addl $8, %edi
    loop 1b

    /* 2048 PD entries, each a present, writable 2 MiB page. */
    movl $boot_pd, %edi
    movl $0x83, %eax
    movl $2048, %ecx
2:  movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 2b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4

    /* EFER: LME, plus NXE when CPUID 0x80000001 EDX bit 20 says NX exists. */
    movl $0x80000001, %eax
    cpuid
    xorl %ebx, %ebx
    btl $20, %edx
    jnc 3f
    movl $0x800, %ebx
3:  movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    orl %ebx, %eax
    wrmsr

    movl %cr0, %eax
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0

    lgdt boot_gdt_desc
    ljmp $0x28, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x30, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $boot_stack_top, %esp
    movl %esi, %edi                 /* arg 0: start_info physical address */
    xorl %ebp, %ebp
    call loader_main
4:  cli
    hlt
    jmp 4b
"#,
    options(att_syntax)
);
