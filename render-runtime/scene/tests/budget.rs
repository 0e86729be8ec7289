//! The memory budget and texture guards fail oversized models before their memory is allocated.
//! A counting global allocator measures the peak heap growth of each failing import.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lightbox_scene::usd_write::export_usda;
use lightbox_scene::{
    import_gltf_with_limits, import_usd_with_limits, ImportError, ImportLimits, UsdImportError,
};
use lightbox_testmodels::{self as testmodels, hostile};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests run on several threads; they take turns so a measurement sees only its own heap.
static TURN: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak heap growth while it ran.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const MIB: usize = 1 << 20;

/// A 4096 x 4096 RGB PNG of one colour: 100 KB on disk, 256 MiB as the renderer's float texels.
fn big_flat_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 4096, 4096);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&vec![180u8; 4096 * 4096 * 3])
        .unwrap();
    writer.finish().unwrap();
    out
}

fn budget(mib: u64) -> ImportLimits {
    ImportLimits {
        memory_budget: mib << 20,
        ..ImportLimits::default()
    }
}

#[test]
fn a_texture_over_the_budget_fails_before_it_is_decoded() {
    let _turn = one_at_a_time();
    let glb = hostile::textured_cube_glb(&big_flat_png(), "image/png");
    assert!(glb.len() < MIB, "{} bytes", glb.len());
    let (result, peak) = peak_growth(|| import_gltf_with_limits(&glb, &budget(64)));
    let err = result.unwrap_err();
    assert!(matches!(err, ImportError::OverBudget(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("textures 256 MiB") && message.contains("memory budget of 64 MiB"),
        "{message}"
    );
    // Decoding would have needed 48 MiB of pixels and 256 MiB of texels.
    assert!(peak < 8 * MIB, "peak heap growth {} MiB", peak / MIB);

    // Within a budget the same file imports, and its texture is there.
    let scene = import_gltf_with_limits(&glb, &budget(1024)).unwrap();
    assert_eq!(scene.textures.len(), 1);
    assert_eq!(scene.textures[0].width, 4096);
}

#[test]
fn a_texture_bomb_fails_on_its_header() {
    let _turn = one_at_a_time();
    let glb =
        hostile::textured_cube_glb(&hostile::png_claiming_size(100_000, 100_000), "image/png");
    let (result, peak) = peak_growth(|| import_gltf_with_limits(&glb, &ImportLimits::default()));
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("texture pixels 10000000000 exceeds the limit of 67108864"),
        "{err}"
    );
    assert!(peak < MIB, "peak heap growth {} KiB", peak / 1024);
}

#[test]
fn a_mesh_that_declares_more_than_the_budget_fails_before_it_is_read() {
    let _turn = one_at_a_time();
    let glb = hostile::cube_claiming_triangles(4_000_000);
    let (result, peak) = peak_growth(|| import_gltf_with_limits(&glb, &budget(256)));
    let err = result.unwrap_err();
    assert!(matches!(err, ImportError::OverBudget(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("over the memory budget of 256 MiB"),
        "{err}"
    );
    assert!(peak < MIB, "peak heap growth {} KiB", peak / 1024);
}

#[test]
fn the_bearing_fits_the_default_budget_and_not_a_tiny_one() {
    let _turn = one_at_a_time();
    let glb = testmodels::bearing_glb(0.05);
    import_gltf_with_limits(&glb, &ImportLimits::default()).unwrap();
    let err = import_gltf_with_limits(&glb, &budget(1)).unwrap_err();
    assert!(matches!(err, ImportError::OverBudget(_)), "{err:?}");

    let usda = export_usda(&testmodels::bearing_scene(0.05));
    import_usd_with_limits(usda.as_bytes(), &ImportLimits::default()).unwrap();
    let err = import_usd_with_limits(usda.as_bytes(), &budget(1)).unwrap_err();
    assert!(matches!(err, UsdImportError::OverBudget(_)), "{err:?}");
    assert!(err.to_string().contains("memory budget of 1 MiB"), "{err}");
}
