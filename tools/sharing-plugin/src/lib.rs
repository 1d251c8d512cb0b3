//! A QEMU TCG plugin (plugin API v1, Debian's QEMU 7.2) that counts the
//! 64-byte guest-physical lines each vCPU reads and writes inside marked
//! windows, and writes one JSON record per dump marker (docs/SHARING.md).
//!
//!   qemu-system-x86_64 ... -plugin libsharing_plugin.so,arg=out=FILE[,arg=direct=BASE[:SIZE]][,arg=top=N]
//!
//! Owns: the QEMU callbacks and the plugin's global state (one `Vcpu` slot
//! per vCPU, each with its own lock, and the output file).  Invariants: a
//! memory access is counted only while its vCPU is inside a window; a
//! vCPU's callbacks touch only its own slot, except a dump, which locks the
//! slots one at a time in index order; every record is written with one
//! `write` and flushed before the dump marker returns, so a killed QEMU
//! keeps every finished dump.  Must not: block a vCPU outside a dump, or
//! let a panic unwind into QEMU (each callback catches it and reports once).
//! The counting itself is `table.rs`.

pub mod table;

#[cfg(not(test))]
mod plugin {
    use crate::table::{merge, Config, Marker, VcpuTable, MAX_VCPUS};
    use qemu_plugin_sys::{
        qemu_info_t, qemu_plugin_cb_flags, qemu_plugin_get_hwaddr, qemu_plugin_hwaddr_is_io,
        qemu_plugin_hwaddr_phys_addr, qemu_plugin_id_t, qemu_plugin_insn_data,
        qemu_plugin_insn_size, qemu_plugin_insn_vaddr, qemu_plugin_mem_is_store,
        qemu_plugin_mem_rw, qemu_plugin_mem_size_shift, qemu_plugin_meminfo_t, qemu_plugin_outs,
        qemu_plugin_register_atexit_cb, qemu_plugin_register_vcpu_insn_exec_cb,
        qemu_plugin_register_vcpu_mem_cb, qemu_plugin_register_vcpu_tb_trans_cb, qemu_plugin_tb,
        qemu_plugin_tb_get_insn, qemu_plugin_tb_n_insns, QEMU_PLUGIN_VERSION,
    };
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
    use std::fs::File;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    /// The API version this plugin was built for; QEMU refuses a mismatch.
    #[no_mangle]
    pub static qemu_plugin_version: c_int = QEMU_PLUGIN_VERSION as c_int;

    /// One vCPU's slot, alone in its host cache lines: the vCPU threads run
    /// in parallel and each updates only its own slot on every access.
    #[repr(align(128))]
    struct Vcpu {
        /// Inside a window (written by this vCPU's thread only).
        in_window: AtomicBool,
        table: Mutex<VcpuTable>,
    }

    struct State {
        config: Config,
        vcpus: Vec<Vcpu>,
        out: Mutex<File>,
        label: AtomicU32,
        seq: AtomicU64,
        /// Set once a callback failed; the plugin stops counting then.
        broken: AtomicBool,
    }

    static STATE: OnceLock<State> = OnceLock::new();

    fn say(text: &str) {
        if let Ok(c) = CString::new(format!("sharing-plugin: {text}\n")) {
            // SAFETY: `c` is a NUL-terminated string that outlives the call.
            unsafe { qemu_plugin_outs(c.as_ptr()) };
        }
    }

    /// Run `f` unless the plugin broke; a panic marks it broken (once).
    fn guarded(f: impl FnOnce(&State)) {
        let Some(state) = STATE.get() else { return };
        if state.broken.load(Ordering::Relaxed) {
            return;
        }
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(state))).is_err()
            && !state.broken.swap(true, Ordering::Relaxed)
        {
            say("a callback panicked; counting stopped");
        }
    }

    fn lock(table: &Mutex<VcpuTable>) -> std::sync::MutexGuard<'_, VcpuTable> {
        table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merge, write and clear every vCPU's table.
    fn dump(state: &State, at_exit: bool) {
        let mut guards: Vec<_> = state.vcpus.iter().map(|v| lock(&v.table)).collect();
        let mut record = merge(guards.iter().map(|g| &**g), state.config.top);
        if at_exit && record.ops == 0 && record.lines_touched == 0 {
            return;
        }
        record.label = state.label.load(Ordering::Relaxed);
        record.seq = state.seq.fetch_add(1, Ordering::Relaxed);
        record.at_exit = at_exit;
        for g in &mut guards {
            g.clear();
        }
        drop(guards);
        let mut line = record.to_json();
        line.push('\n');
        let mut out = state.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            say(&format!("writing {}: {e}", state.config.out));
        }
    }

    unsafe extern "C" fn on_marker(vcpu: c_uint, udata: *mut c_void) {
        guarded(|state| {
            let Some(slot) = state.vcpus.get(vcpu as usize) else {
                return;
            };
            match Marker::from_disp(udata as usize as u32) {
                Some(Marker::Begin) => {
                    lock(&slot.table).begin();
                    slot.in_window.store(true, Ordering::Relaxed);
                }
                Some(Marker::End) if slot.in_window.swap(false, Ordering::Relaxed) => {
                    lock(&slot.table).ops += 1;
                }
                Some(Marker::End) => {}
                Some(Marker::Label(l)) => state.label.store(u32::from(l), Ordering::Relaxed),
                Some(Marker::Dump) => dump(state, false),
                None => {}
            }
        });
    }

    unsafe extern "C" fn on_mem(
        vcpu: c_uint,
        info: qemu_plugin_meminfo_t,
        vaddr: u64,
        udata: *mut c_void,
    ) {
        let Some(state) = STATE.get() else { return };
        let Some(slot) = state.vcpus.get(vcpu as usize) else {
            return;
        };
        if !slot.in_window.load(Ordering::Relaxed) {
            return;
        }
        guarded(|state| {
            let pa = match state.config.direct_phys(vaddr) {
                Some(pa) => pa,
                None => {
                    // SAFETY: called inside this access's memory callback,
                    // the only time QEMU's `info` and hwaddr are valid.
                    unsafe {
                        let h = qemu_plugin_get_hwaddr(info, vaddr);
                        if h.is_null() || qemu_plugin_hwaddr_is_io(h) {
                            return;
                        }
                        qemu_plugin_hwaddr_phys_addr(h)
                    }
                }
            };
            // SAFETY: plain queries of the access's info word.
            let (size, store) = unsafe {
                (
                    1u64 << qemu_plugin_mem_size_shift(info),
                    qemu_plugin_mem_is_store(info),
                )
            };
            lock(&slot.table).access(pa, size, store, udata as usize as u64);
        });
    }

    unsafe extern "C" fn on_translate(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
        if STATE.get().is_none() {
            return;
        }
        // SAFETY: `tb` is the block QEMU is translating; its instructions
        // and their bytes are valid for the duration of this callback.
        unsafe {
            for i in 0..qemu_plugin_tb_n_insns(tb) {
                let insn = qemu_plugin_tb_get_insn(tb, i);
                let size = qemu_plugin_insn_size(insn);
                let data = qemu_plugin_insn_data(insn) as *const u8;
                if (size == 7 || size == 8) && !data.is_null() {
                    let bytes = std::slice::from_raw_parts(data, size);
                    if let Some(m) = Marker::decode(bytes) {
                        qemu_plugin_register_vcpu_insn_exec_cb(
                            insn,
                            Some(on_marker),
                            qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                            m.disp() as usize as *mut c_void,
                        );
                    }
                }
                let pc = qemu_plugin_insn_vaddr(insn);
                qemu_plugin_register_vcpu_mem_cb(
                    insn,
                    Some(on_mem),
                    qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                    qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_RW,
                    pc as usize as *mut c_void,
                );
            }
        }
    }

    unsafe extern "C" fn on_exit(_id: qemu_plugin_id_t, _udata: *mut c_void) {
        guarded(|state| dump(state, true));
    }

    /// QEMU's entry point: parse the arguments, open the output, register.
    ///
    /// # Safety
    /// Called by QEMU with its `info` and `argc` valid C strings in `argv`.
    #[no_mangle]
    pub unsafe extern "C" fn qemu_plugin_install(
        id: qemu_plugin_id_t,
        info: *const qemu_info_t,
        argc: c_int,
        argv: *mut *mut c_char,
    ) -> c_int {
        let mut args = Vec::new();
        for i in 0..usize::try_from(argc).unwrap_or(0) {
            // SAFETY: QEMU passes `argc` valid NUL-terminated strings.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            args.push(arg.to_string_lossy().into_owned());
        }
        let config = match Config::parse(args.iter().map(String::as_str)) {
            Ok(c) => c,
            Err(e) => {
                say(&e);
                return -1;
            }
        };
        // SAFETY: `info` is valid during install; `system` is the union's
        // member in system emulation, checked first.
        let vcpus = unsafe {
            let info = &*info;
            if !info.system_emulation {
                say("needs system emulation");
                return -1;
            }
            info.__bindgen_anon_1.system.max_vcpus
        };
        let vcpus = usize::try_from(vcpus).unwrap_or(0);
        if vcpus == 0 || vcpus > MAX_VCPUS {
            say(&format!(
                "{vcpus} vCPUs: this plugin counts 1..={MAX_VCPUS}"
            ));
            return -1;
        }
        let out = match File::create(&config.out) {
            Ok(f) => f,
            Err(e) => {
                say(&format!("creating {}: {e}", config.out));
                return -1;
            }
        };
        let state = State {
            config,
            vcpus: (0..vcpus)
                .map(|_| Vcpu {
                    in_window: AtomicBool::new(false),
                    table: Mutex::new(VcpuTable::default()),
                })
                .collect(),
            out: Mutex::new(out),
            label: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            broken: AtomicBool::new(false),
        };
        if STATE.set(state).is_err() {
            say("loaded twice");
            return -1;
        }
        // SAFETY: registering our callbacks with the id QEMU gave us.
        unsafe {
            qemu_plugin_register_vcpu_tb_trans_cb(id, Some(on_translate));
            qemu_plugin_register_atexit_cb(id, Some(on_exit), std::ptr::null_mut());
        }
        0
    }
}
