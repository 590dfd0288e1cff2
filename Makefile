# XMHF-style hypervisor. `make` builds init-x86-amd64.bin and hypervisor-x86-amd64.bin.gz;
# `make demo` boots it with the test guest in Bochs; `make check` runs every test.
# Without a config.mk, make runs ./configure with the defaults first.

-include config.mk

# OUT: where the two binaries go. `make svm` builds the AMD variant into build/svm beside
# the configured one (make check boots both), objects in $(OUT)/obj.
OUT      ?= .
B        := $(if $(filter .,$(OUT)),build,$(OUT)/obj)
ARCHDIR  := $(if $(filter x86-svm,$(TARGET_ARCH)),svm,vmx)
ARCH_LIB := $(if $(filter svm,$(ARCHDIR)),gwalk.c npt.c,ept.c)
CC       := gcc
WARN     := -Wall -Wextra -Werror
FREE     := -std=c11 -ffreestanding -fno-builtin -fno-stack-protector -fno-pic -fno-pie \
            -fno-tree-loop-distribute-patterns -fno-asynchronous-unwind-tables -nostdlib \
            -mgeneral-regs-only -O2 -g $(WARN) -Ixmhf/include --param=min-pagesize=0 \
            -DDEBUG_SERIAL_PORT=$(DEBUG_SERIAL) -DXMHF_SINGLESTEP=$(or $(SINGLESTEP),0)
CFLAGS64 := $(FREE) -m64 -mcmodel=kernel -mno-red-zone
CFLAGS32 := $(FREE) -m32 -march=i686

INIT_SRC := xmhf/src/bootloader/header.S xmhf/src/bootloader/init.c \
            $(addprefix xmhf/src/lib/,cmdline.c e820.c format.c string.c uart.c)
RT_SRC   := xmhf/src/runtime/entry.S $(wildcard xmhf/src/runtime/*.c) \
            $(wildcard xmhf/src/runtime/$(ARCHDIR)/*.c xmhf/src/runtime/$(ARCHDIR)/*.S) \
            $(addprefix xmhf/src/lib/,e820.c $(ARCH_LIB) format.c icr.c pagetable.c string.c uart.c) \
            $(wildcard $(APPROOT)/*.c)
INIT_OBJ := $(patsubst %,$(B)/init/%.o,$(INIT_SRC))
RT_OBJ   := $(patsubst %,$(B)/rt/%.o,$(RT_SRC))
HDRS     := $(wildcard xmhf/include/*.h xmhf/src/runtime/*/*.h) config.mk

.PHONY: all clean distclean check demo bench unit guest deps-build svm vmx-tf vmx-mtf hypapps
all: $(OUT)/init-x86-amd64.bin $(OUT)/hypervisor-x86-amd64.bin.gz

svm:
	$(MAKE) OUT=build/svm TARGET_ARCH=x86-svm all

# The Intel build with the TF/#DB step forced (--with-singlestep=tf), so make check runs
# the fallback on a CPU that has the monitor trap flag too.
vmx-tf:
	$(MAKE) OUT=build/vmx-tf TARGET_ARCH=x86-vmx SINGLESTEP=2 all

# ...and with the monitor trap flag demanded (--with-singlestep=mtf), which must refuse a
# CPU without it (Bochs 2.7) with a clear message.
vmx-mtf:
	$(MAKE) OUT=build/vmx-mtf TARGET_ARCH=x86-vmx SINGLESTEP=1 all

# The hypapps besides helloworld, each for both vendors (MTF chosen where the CPU has it),
# into build/<hypapp>[-svm], so make check runs their test-guest cases.
HYPAPP_BUILDS := wprot wprot-svm iomon iomon-svm
hypapps: $(HYPAPP_BUILDS)
$(filter-out %-svm,$(HYPAPP_BUILDS)):
	$(MAKE) OUT=build/$@ TARGET_ARCH=x86-vmx SINGLESTEP=0 APPROOT=hypapps/$@ all
$(filter %-svm,$(HYPAPP_BUILDS)):
	$(MAKE) OUT=build/$@ TARGET_ARCH=x86-svm APPROOT=hypapps/$(@:-svm=) all
.PHONY: $(HYPAPP_BUILDS)

config.mk: config.mk.in configure.ac
	tools/deps.sh build
	@if [ -x config.status ] && [ configure -nt configure.ac ]; then ./config.status; \
	 else autoconf && ./configure; fi

$(B)/init/%.c.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS32) -c $< -o $@
$(B)/init/%.S.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS32) -c $< -o $@
$(B)/rt/%.c.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS64) -I$(APPROOT) -c $< -o $@
$(B)/rt/%.S.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS64) -c $< -o $@

$(OUT)/init-x86-amd64.bin: $(INIT_OBJ) xmhf/src/bootloader/init.ld
	ld -m elf_i386 -nostdlib -z noexecstack --no-warn-rwx-segments -T xmhf/src/bootloader/init.ld -o $@ $(INIT_OBJ)

$(B)/hypervisor-x86-amd64.elf: $(RT_OBJ) xmhf/src/runtime/runtime.ld
	ld -m elf_x86_64 -nostdlib -z noexecstack --no-warn-rwx-segments -z max-page-size=4096 \
	   -T xmhf/src/runtime/runtime.ld -o $@ $(RT_OBJ)
	@size $@

$(OUT)/hypervisor-x86-amd64.bin.gz: $(B)/hypervisor-x86-amd64.elf
	objcopy -O binary $< $(B)/hypervisor-x86-amd64.bin
	gzip -9nc $(B)/hypervisor-x86-amd64.bin > $@

guest:
	$(MAKE) -C tests/guest

unit:
	tools/deps.sh check
	$(MAKE) -C tests/unit check

# The two set-up commands of the README: each installs what it needs first.
demo:
	tools/deps.sh demo
	$(MAKE) all guest
	.jenkins/test2.py --emulator bochs --smp 2 --verbose

check:
	tools/deps.sh check
	$(MAKE) all svm vmx-tf vmx-mtf hypapps guest
	tools/check.sh

# Debian 12's kernel with a busybox initramfs, booted from its own disk's MBR under the
# hypervisor (QEMU SVM and Bochs 3.0 VMX, 2 CPUs each) and without it. Not part of
# `make check`: it downloads packages (cached in ~/.cache/xmhf/linux). See tests/linux/.
.PHONY: check-linux
check-linux:
	tools/deps.sh check
	$(MAKE) all svm
	tests/linux/run.sh

# Figures, not pass/fail: boot path length and APIC-access costs in guest TSC ticks.
$(B)/boottime.bin: tests/boottime/boottime.S
	@mkdir -p $(B)
	$(CC) -c -o $(B)/boottime.o $<
	ld -m elf_x86_64 -Ttext=0x7c00 --oformat binary -o $@ $(B)/boottime.o

bench: all guest $(B)/boottime.bin
	tools/deps.sh check
	tools/build-bochs3.sh >/dev/null
	@for n in 1 4; do \
	  .jenkins/test2.py --emulator bochs --smp $$n --guest $(B)/boottime.bin \
	    --guest-done 'boottime: done' --work-dir $(B)/bench-boot-$$n >/dev/null 2>&1 || echo "boot-time run failed"; \
	  echo "boot time, Bochs 3.0, $$n CPU(s): $$(grep -a -h -E 'TSC .* at init entry|boottime: tsc' $(B)/bench-boot-$$n/serial.log | tr -d '\r' | tr '\n' ' ')"; \
	done
	@if [ -x tools/bench.sh ]; then tools/bench.sh; fi

clean:
	rm -rf $(B) init-x86-amd64.bin hypervisor-x86-amd64.bin.gz
	-$(MAKE) -C tests/unit clean
	-$(MAKE) -C tests/guest clean

distclean: clean
	rm -rf config.mk config.status config.log configure autom4te.cache
