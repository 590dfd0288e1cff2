# XMHF-style hypervisor. `make` builds init-x86-amd64.bin and hypervisor-x86-amd64.bin.gz;
# `make demo` boots it with the test guest in Bochs; `make check` runs every test;
# `make install` puts the binaries in /boot and a GRUB entry in /etc/grub.d.
# Without a config.mk, make runs ./configure with the defaults first.

-include config.mk

VERSION := $(shell cat VERSION)
# Settings a config.mk from an older ./configure may lack (and the command line may set).
ifeq ($(origin CC),default)
CC            := gcc
endif
OPT_FLAGS     ?= -O2
DEBUG_SYMBOLS ?= yes
LD_GC_SECTIONS ?= no
APP_SRCDIR    ?= $(APPROOT)
APP_DEEP      ?= no
APP_INCLUDES  ?= -I$(APP_SRCDIR)

# OUT: where the two binaries go. `make svm` builds the AMD variant into build/svm beside
# the configured one (make check boots both), objects in $(OUT)/obj.
OUT      ?= .
B        := $(if $(filter .,$(OUT)),build,$(OUT)/obj)
ARCHDIR  := $(if $(filter x86-svm,$(TARGET_ARCH)),svm,vmx)
ARCH_LIB := $(if $(filter svm,$(ARCHDIR)),gwalk.c npt.c,ept.c gwalk.c taskswitch.c)
WARN     := -Wall -Wextra -Werror
GFLAG    := $(if $(filter yes,$(DEBUG_SYMBOLS)),-g)
GCFLAGS  := $(if $(filter yes,$(LD_GC_SECTIONS)),-ffunction-sections -fdata-sections)
GCLD     := $(if $(filter yes,$(LD_GC_SECTIONS)),--gc-sections)
FREE     := -std=c11 -ffreestanding -fno-builtin -fno-stack-protector -fno-pic -fno-pie \
            -fno-tree-loop-distribute-patterns -fno-asynchronous-unwind-tables -nostdlib \
            -mgeneral-regs-only $(OPT_FLAGS) $(GFLAG) $(GCFLAGS) $(WARN) -Ixmhf/include \
            --param=min-pagesize=0 -DXMHF_VERSION='"$(VERSION)"' \
            -DDEBUG_SERIAL_PORT=$(DEBUG_SERIAL) -DXMHF_SINGLESTEP=$(or $(SINGLESTEP),0) \
            -DXMHF_DMAP=$(or $(DMAP),1) \
            $(if $(EXITLOG),-DXMHF_EXIT_LOG=$(EXITLOG))
CFLAGS64 := $(FREE) -m64 -mcmodel=kernel -mno-red-zone
CFLAGS32 := $(FREE) -m32 -march=i686

INIT_SRC := xmhf/src/bootloader/header.S xmhf/src/bootloader/init.c \
            $(addprefix xmhf/src/lib/,cmdline.c e820.c format.c string.c uart.c)
RT_SRC   := xmhf/src/runtime/entry.S $(wildcard xmhf/src/runtime/*.c) \
            $(wildcard xmhf/src/runtime/$(ARCHDIR)/*.c xmhf/src/runtime/$(ARCHDIR)/*.S) \
            xmhf/src/runtime/dmap/dmap.c xmhf/src/lib/iopt.c \
            $(if $(filter 0,$(DMAP)),,xmhf/src/runtime/dmap/vtd.c xmhf/src/runtime/dmap/amdvi.c) \
            $(addprefix xmhf/src/lib/,e820.c $(ARCH_LIB) format.c icr.c iobitmap.c mtrr.c pagetable.c string.c uart.c)
# The hypapp (--with-approot): its .c/.S files, in subdirectories too for XMHF64's
# src/ or app/ layout; the directory may be absolute, so objects are named by the path
# below APP_SRCDIR.
APP_SRC  := $(if $(filter yes,$(APP_DEEP)),$(shell find $(APP_SRCDIR) -name '*.[cS]' | sort),\
                $(wildcard $(APP_SRCDIR)/*.c $(APP_SRCDIR)/*.S))
APP_OBJ  := $(patsubst $(APP_SRCDIR)/%,$(B)/app/%.o,$(APP_SRC))
INIT_OBJ := $(patsubst %,$(B)/init/%.o,$(INIT_SRC))
RT_OBJ   := $(patsubst %,$(B)/rt/%.o,$(RT_SRC)) $(APP_OBJ)
HDRS     := $(wildcard xmhf/include/*.h xmhf/src/runtime/*/*.h) config.mk

.PHONY: all clean distclean check demo bench unit fuzz guest deps-build svm vmx-tf vmx-mtf hypapps \
        matrix version install uninstall
all: $(OUT)/init-x86-amd64.bin $(OUT)/hypervisor-x86-amd64.bin.gz

version:
	@echo "XMHF $(VERSION) ($(TARGET_ARCH), $(SUBARCH), hypapp $(APPROOT), $(CC) $(OPT_FLAGS))"

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
# into build/<hypapp>[-svm], so make check runs their test-guest cases. (The flat layout:
# APP_SRCDIR and its include path follow APPROOT.)
HYPAPP_BUILDS := wprot wprot-svm iomon iomon-svm
app_vars = APPROOT=hypapps/$(1) APP_SRCDIR=hypapps/$(1) APP_DEEP=no APP_INCLUDES=-Ihypapps/$(1)
hypapps: $(HYPAPP_BUILDS)
$(filter-out %-svm,$(HYPAPP_BUILDS)):
	$(MAKE) OUT=build/$@ TARGET_ARCH=x86-vmx SINGLESTEP=0 $(call app_vars,$@) all
$(filter %-svm,$(HYPAPP_BUILDS)):
	$(MAKE) OUT=build/$@ TARGET_ARCH=x86-svm $(call app_vars,$(@:-svm=)) all
.PHONY: $(HYPAPP_BUILDS)

# The build matrix of XMHF64's CI that applies here (its i386 and UEFI columns do not):
# vendor x debug/release x -O0/-O3, every one with -Werror, into build/matrix/NAME/.
# debug: -g; release: no debug symbols, unused code dropped (--enable-ld-gc-sections).
# make check builds each (one step each) and boots the test guest on four of them.
MATRIX := $(foreach a,vmx svm,$(foreach k,debug release,$(foreach o,O0 O3,matrix-$(a)-$(k)-$(o))))
CHECK_MATRIX := $(MATRIX)
matrix: $(MATRIX)
matrix-%:
	@w="$(subst -, ,$*)"; set -- $$w; \
	case "$$1 $$2 $$3" in (vmx\ *|svm\ *) ;; (*) echo "matrix-$*: use matrix-{vmx,svm}-{debug,release}-{O0,O3}"; exit 2;; esac; \
	$(MAKE) --no-print-directory OUT=build/matrix/$* TARGET_ARCH=x86-$$1 OPT_FLAGS=-$$3 \
	  DEBUG_SYMBOLS=$$([ $$2 = debug ] && echo yes || echo no) \
	  LD_GC_SECTIONS=$$([ $$2 = release ] && echo yes || echo no) all

# A changed configure.ac or config.mk.in re-runs configure with the options it was
# given last time (config.status --recheck); without config.status, the defaults.
config.mk: config.mk.in configure.ac VERSION
	@tools/deps.sh build
	@if [ -x config.status ]; then ./autogen.sh && ./config.status --recheck >/dev/null && ./config.status; \
	 else ./configure -q; fi

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
$(B)/app/%.c.o: $(APP_SRCDIR)/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS64) $(APP_INCLUDES) -c $< -o $@
$(B)/app/%.S.o: $(APP_SRCDIR)/%.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS64) $(APP_INCLUDES) -c $< -o $@

$(OUT)/init-x86-amd64.bin: $(INIT_OBJ) xmhf/src/bootloader/init.ld
	ld -m elf_i386 -nostdlib -z noexecstack --no-warn-rwx-segments $(GCLD) -T xmhf/src/bootloader/init.ld -o $@ $(INIT_OBJ)
	$(if $(GFLAG),,strip --strip-debug $@)

$(B)/hypervisor-x86-amd64.elf: $(RT_OBJ) xmhf/src/runtime/runtime.ld
	ld -m elf_x86_64 -nostdlib -z noexecstack --no-warn-rwx-segments -z max-page-size=4096 \
	   $(GCLD) -T xmhf/src/runtime/runtime.ld -o $@ $(RT_OBJ)
	@size $@

$(OUT)/hypervisor-x86-amd64.bin.gz: $(B)/hypervisor-x86-amd64.elf
	objcopy -O binary $< $(B)/hypervisor-x86-amd64.bin
	gzip -9nc $(B)/hypervisor-x86-amd64.bin > $@

guest:
	$(MAKE) -C tests/guest

unit:
	tools/deps.sh check
	$(MAKE) -C tests/unit check

# libFuzzer targets of the pure logic (tests/fuzz); make check runs each for 8 s.
FUZZ_SECONDS ?= 600
fuzz:
	tools/deps.sh check
	$(MAKE) -C tests/fuzz check FUZZ_SECONDS=$(FUZZ_SECONDS)

# The two set-up commands of the README: each installs what it needs first.
demo:
	tools/deps.sh demo
	$(MAKE) all guest
	.jenkins/test2.py --emulator bochs --smp 2 --verbose

# What make check builds before its runs (tools/check.sh builds each as one step, output
# in build/check/build-TARGET.log); add a target here to have it built and counted.
CHECK_BUILDS := all svm vmx-tf vmx-mtf hypapps guest
check:
	@CHECK_BUILDS="$(CHECK_BUILDS)" CHECK_MATRIX="$(CHECK_MATRIX)" tools/check.sh

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
	@tools/bench-boot.py $(B)/boottime.bin $(B) || echo "bench: the boot-time runs gave no figures (logs in $(B)/bench-boot-*)"
	@if [ -x tools/bench.sh ]; then tools/bench.sh; fi

# make install [DESTDIR=...]: the two binaries into $(BOOTDIR) and the GRUB entry
# (tools/grub.d/42_xmhf.in) into $(GRUBDDIR), where update-grub picks it up.
BOOTDIR  ?= /boot
GRUBDDIR ?= /etc/grub.d
install: all
	install -d $(DESTDIR)$(BOOTDIR) $(DESTDIR)$(GRUBDDIR)
	install -m 644 $(OUT)/init-x86-amd64.bin $(OUT)/hypervisor-x86-amd64.bin.gz $(DESTDIR)$(BOOTDIR)/
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@BOOTDIR@|$(BOOTDIR)|g' \
	    -e 's|@DEBUG_SERIAL@|$(DEBUG_SERIAL)|g' -e 's|@TARGET_ARCH@|$(TARGET_ARCH)|g' \
	    tools/grub.d/42_xmhf.in > $(DESTDIR)$(GRUBDDIR)/42_xmhf
	chmod 755 $(DESTDIR)$(GRUBDDIR)/42_xmhf
	@echo "installed XMHF $(VERSION) in $(DESTDIR)$(BOOTDIR) and $(DESTDIR)$(GRUBDDIR)/42_xmhf$(if $(DESTDIR),, (run update-grub))"

uninstall:
	rm -f $(DESTDIR)$(BOOTDIR)/init-x86-amd64.bin $(DESTDIR)$(BOOTDIR)/hypervisor-x86-amd64.bin.gz \
	      $(DESTDIR)$(GRUBDDIR)/42_xmhf

clean:
	rm -rf $(B) init-x86-amd64.bin hypervisor-x86-amd64.bin.gz
	-$(MAKE) -C tests/unit clean
	-$(MAKE) -C tests/guest clean
	-$(MAKE) -C tests/fuzz clean

distclean: clean
	rm -rf config.mk config.status config.log configure.gen autom4te.cache
