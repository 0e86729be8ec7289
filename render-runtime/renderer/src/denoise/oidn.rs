//! Intel Open Image Denoise 2.x, loaded at run time: the native engine's default denoiser.
//!
//! The library is not linked: a build needs nothing of OIDN, and a binary finds it at run time
//! without `LD_LIBRARY_PATH`, in the first of these folders holding `libOpenImageDenoise.so.2`:
//!  1. `$LIGHTBOX_OIDN_DIR` (or its `lib/`),
//!  2. `<executable's folder>/../lib/lightbox/oidn/lib` (the runtime images put it there),
//!  3. the workspace's `.tools/oidn/lib` as it was when this crate was built (`tools/setup.sh`
//!     installs the pinned PyPI `pyoidn` wheel there),
//!  4. the system's library path (`libOpenImageDenoise.so.2`, e.g. Debian's package).
//!
//! The OIDN libraries find their own device modules and TBB beside themselves (`$ORIGIN`).
//! This module and `accel/embree.rs` are the crate's only `unsafe` code.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Env var naming a folder with `libOpenImageDenoise.so.2` (or with it in `lib/`).
pub const OIDN_DIR_ENV: &str = "LIGHTBOX_OIDN_DIR";
const LIBRARY: &str = "libOpenImageDenoise.so.2";
const DEVICE_TYPE_CPU: c_int = 1;
const FORMAT_FLOAT3: c_int = 3;
const ERROR_NONE: c_int = 0;

type Device = *mut c_void;
type Filter = *mut c_void;

struct Api {
    new_device: unsafe extern "C" fn(c_int) -> Device,
    commit_device: unsafe extern "C" fn(Device),
    get_device_error: unsafe extern "C" fn(Device, *mut *const c_char) -> c_int,
    new_filter: unsafe extern "C" fn(Device, *const c_char) -> Filter,
    #[allow(clippy::type_complexity)]
    set_shared_filter_image: unsafe extern "C" fn(
        Filter,
        *const c_char,
        *mut c_void,
        c_int,
        usize,
        usize,
        usize,
        usize,
        usize,
    ),
    set_filter_bool: unsafe extern "C" fn(Filter, *const c_char, bool),
    commit_filter: unsafe extern "C" fn(Filter),
    execute_filter: unsafe extern "C" fn(Filter),
    release_filter: unsafe extern "C" fn(Filter),
    /// Where the library was loaded from.
    path: String,
    /// Kept loaded for the process's life: the function pointers above point into it.
    _library: libloading::Library,
}

/// One CPU device for the process (creating one starts OIDN's thread pool), used by one
/// denoise at a time: OIDN uses every core for a frame anyway.
struct DeviceHandle(Device);
// SAFETY: an OIDN device may be used from any thread; the mutex below serialises its use.
unsafe impl Send for DeviceHandle {}

static API: OnceLock<Result<Api, String>> = OnceLock::new();
static DEVICE: Mutex<Option<DeviceHandle>> = Mutex::new(None);

/// The folders and names tried, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(OIDN_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        out.push(dir.join(LIBRARY));
        out.push(dir.join("lib").join(LIBRARY));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        out.push(exe_dir.join("../lib/lightbox/oidn/lib").join(LIBRARY));
    }
    out.push(PathBuf::from(env!("LIGHTBOX_OIDN_BUILD_DIR")).join(LIBRARY));
    out.push(PathBuf::from(LIBRARY));
    out
}

fn load() -> Result<Api, String> {
    let mut tried = Vec::new();
    for candidate in candidates() {
        if candidate.components().count() > 1 && !candidate.is_file() {
            tried.push(format!("{} (absent)", candidate.display()));
            continue;
        }
        // SAFETY: loading OIDN runs its initialisers, which have no preconditions.
        match unsafe { libloading::Library::new(&candidate) } {
            Ok(library) => {
                return bind(library, candidate.display().to_string())
                    .map_err(|e| format!("{}: {e}", candidate.display()))
            }
            Err(e) => tried.push(format!("{}: {e}", candidate.display())),
        }
    }
    Err(format!(
        "Intel OIDN not found (tools/setup.sh installs it, or set {OIDN_DIR_ENV}); tried {}",
        tried.join("; ")
    ))
}

fn bind(library: libloading::Library, path: String) -> Result<Api, String> {
    // SAFETY: each symbol is looked up with the signature of OIDN 2.x's C API (oidn.h).
    unsafe {
        macro_rules! sym {
            ($name:literal) => {
                *library
                    .get(concat!($name, "\0").as_bytes())
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        Ok(Api {
            new_device: sym!("oidnNewDevice"),
            commit_device: sym!("oidnCommitDevice"),
            get_device_error: sym!("oidnGetDeviceError"),
            new_filter: sym!("oidnNewFilter"),
            set_shared_filter_image: sym!("oidnSetSharedFilterImage"),
            set_filter_bool: sym!("oidnSetFilterBool"),
            commit_filter: sym!("oidnCommitFilter"),
            execute_filter: sym!("oidnExecuteFilter"),
            release_filter: sym!("oidnReleaseFilter"),
            path,
            _library: library,
        })
    }
}

fn api() -> Result<&'static Api, String> {
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// Whether OIDN can be loaded here (loads it once, and creates its CPU device).
pub fn available() -> bool {
    api().is_ok() && with_device(|_, _| Ok(())).is_ok()
}

/// Where OIDN was loaded from, or why it could not be.
pub fn status() -> Result<String, String> {
    api().map(|a| a.path.clone())
}

fn device_error(api: &Api, device: Device) -> Result<(), String> {
    let mut message: *const c_char = std::ptr::null();
    // SAFETY: a live device; OIDN writes a pointer to a string it owns (or null).
    let code = unsafe { (api.get_device_error)(device, &mut message) };
    if code == ERROR_NONE {
        return Ok(());
    }
    let text = if message.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string valid until the next OIDN call on this thread.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    };
    Err(format!("oidn error {code}: {text}"))
}

fn with_device<T>(f: impl FnOnce(&Api, Device) -> Result<T, String>) -> Result<T, String> {
    let api = api()?;
    let mut guard = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        // SAFETY: plain constructor calls on the loaded library.
        let device = unsafe { (api.new_device)(DEVICE_TYPE_CPU) };
        if device.is_null() {
            return Err("oidn: no CPU device".into());
        }
        // SAFETY: a device just created.
        unsafe { (api.commit_device)(device) };
        device_error(api, device)?;
        *guard = Some(DeviceHandle(device));
    }
    let device = guard.as_ref().expect("set above").0;
    f(api, device)
}

/// Denoises `color` (RGB, `width * height * 3` floats) into `output` with OIDN's ray-tracing
/// filter guided by `albedo` and `normal` (same layout; noise-free enough to be trusted).
/// `hdr`: colour is scene-linear radiance; otherwise values in [0, 1].
pub fn denoise_rgb(
    width: usize,
    height: usize,
    color: &[f32],
    albedo: &[f32],
    normal: &[f32],
    output: &mut [f32],
    hdr: bool,
) -> Result<(), String> {
    let n = width * height * 3;
    if color.len() != n || albedo.len() != n || normal.len() != n || output.len() != n {
        return Err(format!("oidn: buffers must hold {n} floats"));
    }
    if n == 0 {
        return Ok(());
    }
    with_device(|api, device| {
        // SAFETY: the filter is used and released here; the images are borrowed for the whole
        // execution, have the declared size and layout, and only `output` is written.
        unsafe {
            let filter = (api.new_filter)(device, c"RT".as_ptr());
            if filter.is_null() {
                device_error(api, device)?;
                return Err("oidn: no RT filter".into());
            }
            let image = |name: &CStr, data: *mut f32| {
                (api.set_shared_filter_image)(
                    filter,
                    name.as_ptr(),
                    data.cast(),
                    FORMAT_FLOAT3,
                    width,
                    height,
                    0,
                    12,
                    12 * width,
                )
            };
            image(c"color", color.as_ptr().cast_mut());
            image(c"albedo", albedo.as_ptr().cast_mut());
            image(c"normal", normal.as_ptr().cast_mut());
            image(c"output", output.as_mut_ptr());
            (api.set_filter_bool)(filter, c"hdr".as_ptr(), hdr);
            (api.set_filter_bool)(filter, c"cleanAux".as_ptr(), true);
            (api.commit_filter)(filter);
            let committed = device_error(api, device);
            if committed.is_ok() {
                (api.execute_filter)(filter);
            }
            let executed = device_error(api, device);
            (api.release_filter)(filter);
            committed.and(executed)
        }
    })
}
