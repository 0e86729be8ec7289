//! The architecture's invariants, checked on the crate graph that `cargo metadata` reports.
//!
//! Each rule is a dependency edge that must not exist (ARCHITECTURE.md, "Architecture
//! Invariants"). Closures follow normal and build dependencies, not dev-dependencies: tests may
//! use anything, shipped code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace's resolved crate graph.
struct Graph {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Package id → manifest directory.
    dirs: BTreeMap<String, PathBuf>,
    /// Package id → (dependency id, is it a normal or build dependency).
    edges: BTreeMap<String, Vec<(String, bool)>>,
    /// Workspace members' ids.
    members: Vec<String>,
    root: PathBuf,
}

impl Graph {
    fn load() -> Graph {
        let root = lightbox_tests::workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // This host's platform only: other targets' crates are not downloaded here.
        let host = host_triple();
        let metadata = |offline: bool| {
            let mut command = Command::new(&cargo);
            command
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--filter-platform",
                    &host,
                ])
                .arg("--manifest-path")
                .arg(root.join("Cargo.toml"));
            if offline {
                command.arg("--offline");
            }
            command.output().expect("cargo metadata runs")
        };
        let mut output = metadata(true);
        if !output.status.success() {
            output = metadata(false);
        }
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let meta: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let mut names = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for package in meta["packages"].as_array().expect("packages") {
            let id = package["id"].as_str().expect("id").to_string();
            names.insert(
                id.clone(),
                package["name"].as_str().expect("name").to_string(),
            );
            let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
            dirs.insert(id, manifest.parent().expect("manifest dir").to_path_buf());
        }
        let mut edges = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
            let id = node["id"].as_str().expect("node id").to_string();
            let deps = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|dep| {
                    let shipped = dep["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|kind| kind["kind"].as_str() != Some("dev"));
                    (dep["pkg"].as_str().expect("pkg").to_string(), shipped)
                })
                .collect();
            edges.insert(id, deps);
        }
        let members = meta["workspace_members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m.as_str().expect("member id").to_string())
            .collect();
        Graph {
            names,
            dirs,
            edges,
            members,
            root,
        }
    }

    fn id(&self, name: &str) -> String {
        self.members
            .iter()
            .find(|id| self.names[*id] == name)
            .unwrap_or_else(|| panic!("{name} is not a workspace member"))
            .clone()
    }

    fn name(&self, id: &str) -> &str {
        &self.names[id]
    }

    /// Workspace members whose manifest lies under `folder` (relative to the workspace root).
    fn members_under(&self, folder: &str) -> Vec<String> {
        let folder = self.root.join(folder);
        self.members
            .iter()
            .filter(|id| self.dirs[*id].starts_with(&folder))
            .cloned()
            .collect()
    }

    /// Direct shipped (normal or build) dependencies, by name.
    fn direct(&self, id: &str) -> BTreeSet<String> {
        self.edges[id]
            .iter()
            .filter(|(_, shipped)| *shipped)
            .map(|(dep, _)| self.name(dep).to_string())
            .collect()
    }

    /// Every package reachable through shipped dependencies (not including `id` itself), by
    /// id, with the path that reaches it for error messages.
    fn closure(&self, id: &str) -> BTreeMap<String, Vec<String>> {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![(id.to_string(), vec![self.name(id).to_string()])];
        while let Some((current, path)) = stack.pop() {
            for (dep, shipped) in &self.edges[&current] {
                if !shipped || seen.contains_key(dep) {
                    continue;
                }
                let mut next = path.clone();
                next.push(self.name(dep).to_string());
                seen.insert(dep.clone(), next.clone());
                stack.push((dep.clone(), next));
            }
        }
        seen
    }

    /// The paths by which `id` reaches any package named in `forbidden`.
    fn reaches(&self, id: &str, forbidden: &[&str]) -> Vec<String> {
        self.closure(id)
            .iter()
            .filter(|(dep, _)| forbidden.contains(&self.name(dep)))
            .map(|(_, path)| path.join(" → "))
            .collect()
    }

    /// Local packages in the closure (and `id` itself) whose build script links Embree.
    fn links_embree(&self, id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.closure(id).into_keys().collect();
        ids.push(id.to_string());
        ids.into_iter()
            .filter(|dep| self.dirs[dep].starts_with(&self.root))
            .filter(|dep| {
                std::fs::read_to_string(self.dirs[dep].join("build.rs"))
                    .is_ok_and(|build| build.contains("embree"))
            })
            .map(|dep| self.name(&dep).to_string())
            .collect()
    }
}

/// The host's target triple, as rustc reports it.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

fn assert_none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n  {}", found.join("\n  "));
}

const TRANSPORTS: [&str; 3] = ["tokio", "async-nats", "object_store"];

#[test]
fn the_scene_crate_has_no_embree_rayon_or_renderer() {
    let graph = Graph::load();
    let scene = graph.id("lightbox-scene");
    assert_none(
        "lightbox-scene must not depend on the renderer or rayon",
        graph.reaches(&scene, &["render-runtime", "rayon"]),
    );
    assert_none(
        "lightbox-scene must not link Embree",
        graph.links_embree(&scene),
    );
}

#[test]
fn render_runtime_crates_know_no_transport() {
    let graph = Graph::load();
    let crates = graph.members_under("render-runtime");
    assert!(
        crates.len() >= 3,
        "scene, renderer and test models live there"
    );
    for id in crates {
        assert_none(
            &format!(
                "{} must not depend on tokio, async-nats or object_store",
                graph.name(&id)
            ),
            graph.reaches(&id, &TRANSPORTS),
        );
    }
}

#[test]
fn the_protocol_crate_is_plain_data() {
    let graph = Graph::load();
    let protocol = graph.id("lightbox-protocol");
    assert_none(
        "lightbox-protocol must not depend on tokio, async-nats or object_store",
        graph.reaches(&protocol, &TRANSPORTS),
    );
}

#[test]
fn functions_use_the_runtime_not_nats_and_not_each_other() {
    let graph = Graph::load();
    let functions = graph.members_under("functions");
    let names: Vec<String> = functions
        .iter()
        .map(|id| graph.name(id).to_string())
        .collect();
    assert!(
        names.len() >= 3,
        "convert, render and tessellate: {names:?}"
    );
    for id in &functions {
        let name = graph.name(id);
        let direct = graph.direct(id);
        assert!(
            !direct.contains("async-nats"),
            "{name} depends on async-nats directly; it must go through lightbox-runtime"
        );
        let others: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != name)
            .collect();
        assert_none(
            &format!("{name} must not depend on another function"),
            graph.reaches(id, &others),
        );
        assert!(
            direct.contains("lightbox-runtime"),
            "{name} is a function of the runtime"
        );
    }
}

#[test]
fn convert_links_no_embree() {
    let graph = Graph::load();
    let convert = graph.id("lightbox-convert");
    assert_none(
        "lightbox-convert must not depend on the renderer",
        graph.reaches(&convert, &["render-runtime"]),
    );
    assert_none(
        "no crate in lightbox-convert's closure may link Embree",
        graph.links_embree(&convert),
    );
}

/// Negative controls: the checks above see real edges, so an empty answer means something.
#[test]
fn the_checks_find_edges_that_exist() {
    let graph = Graph::load();
    let renderer = graph.id("render-runtime");
    assert!(!graph.reaches(&renderer, &["rayon"]).is_empty());
    assert_eq!(
        graph.links_embree(&renderer),
        vec!["render-runtime".to_string()]
    );
    // Functions reach NATS through the runtime, which the transport rules must see.
    let runtime = graph.id("lightbox-runtime");
    assert!(!graph.reaches(&runtime, &["async-nats"]).is_empty());
    let render = graph.id("lightbox-render");
    assert!(!graph.reaches(&render, &["async-nats"]).is_empty());
    assert!(!graph.members_under("shared").is_empty());
    assert!(Path::new(&graph.root).join("Cargo.toml").exists());
}
