//! `lightbox-usd-import`: the USD import child (`render_runtime::scene::usd_isolate`) as a bare
//! executable, for callers whose own binary does not serve it (tests, tools).

fn main() {
    render_runtime::scene::usd_isolate::serve_child_if_requested();
    eprintln!(
        "lightbox-usd-import is started by the USD importer with {}",
        render_runtime::scene::usd_isolate::CHILD_ARG
    );
    std::process::exit(2);
}
