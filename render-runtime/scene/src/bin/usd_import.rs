//! `lightbox-usd-import`: the USD import child (`lightbox_scene::usd_isolate::CHILD`) as a bare
//! executable, for callers whose own binary does not serve it (tests, tools).

fn main() {
    lightbox_isolate::serve_child_if_requested(&[lightbox_scene::usd_isolate::CHILD]);
    eprintln!(
        "lightbox-usd-import is started by the USD importer with {}",
        lightbox_isolate::CHILD_ARG
    );
    std::process::exit(2);
}
