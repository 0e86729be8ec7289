use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lightbox_tests::{
    free_port, function_binary, tool, wait_consuming, workspace_root, FunctionProcess, NatsServer,
    TempDir,
};

fn dockerfiles() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("infra/docker"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

#[test]
fn dockerfiles_pass_hadolint() {
    let files = dockerfiles();
    assert!(
        files.len() >= 3,
        "a Dockerfile per function plus the GPU render variant"
    );
    for file in files {
        let output = Command::new(tool("hadolint"))
            .args(["--failure-threshold", "warning"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}:\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// The Debian packages that provide the shared libraries a binary links directly (its ELF
/// `NEEDED` entries, resolved to paths by `ldd` and to packages by `dpkg -S`), without the ones
/// every Debian image has. Their own dependencies come with them through apt.
fn linked_packages(binary: &Path) -> BTreeSet<String> {
    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .unwrap();
    let needed: Vec<String> = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            l.split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .map(str::to_owned)
        })
        .collect();
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).to_string();
    let mut packages = BTreeSet::new();
    for library in needed {
        let Some(path) = ldd.lines().find_map(|line| {
            let (name, rest) = line.trim().split_once(" => ")?;
            (name == library).then(|| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        }) else {
            continue; // the dynamic loader itself
        };
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
        let owner = [real.as_path(), Path::new(&path)]
            .iter()
            .find_map(|candidate| {
                let out = Command::new("dpkg")
                    .arg("-S")
                    .arg(candidate)
                    .output()
                    .ok()?;
                out.status.success().then(|| {
                    String::from_utf8_lossy(&out.stdout)
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
            })
            .unwrap_or_else(|| {
                panic!(
                    "no Debian package owns {path} (linked by {})",
                    binary.display()
                )
            });
        packages.insert(owner);
    }
    packages.retain(|p| p != "libc6" && p != "libgcc-s1");
    packages
}

#[test]
fn each_image_installs_exactly_the_libraries_its_binary_links() {
    for file in dockerfiles() {
        let text = std::fs::read_to_string(&file).unwrap();
        let runtime = text.rsplit("\nFROM ").next().unwrap();
        let declared: BTreeSet<String> = runtime
            .lines()
            .find_map(|l| l.strip_prefix("# runtime-packages:"))
            .unwrap_or_else(|| panic!("{} has no `# runtime-packages:` line", file.display()))
            .split_whitespace()
            .filter(|p| !p.starts_with('('))
            .map(str::to_owned)
            .collect();
        let installed: BTreeSet<String> = runtime
            .split_whitespace()
            .filter_map(|word| word.split_once('=').map(|(name, _)| name.to_owned()))
            .filter(|name| name.starts_with("lib"))
            .collect();
        let binary = runtime
            .lines()
            .find_map(|l| l.strip_prefix("ENTRYPOINT [\""))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{} has no ENTRYPOINT", file.display()));
        let linked = linked_packages(&function_binary(binary));
        assert_eq!(
            declared,
            linked,
            "{}: declared runtime packages vs what {binary} links",
            file.display()
        );
        for package in &declared {
            assert!(
                installed.contains(package),
                "{}: {package} is declared but not installed",
                file.display()
            );
        }
    }
}

/// The tools venv's Python (kubernetes-validate, PyYAML and KEDA's models live there).
/// `.tools/bin/python` links to it; run through the link, Python would not find its venv.
fn python() -> PathBuf {
    let link = tool("python");
    std::fs::read_link(&link).unwrap_or(link)
}

/// Runs infra/check_infra.py on a repository copy (or the repository) and returns its report.
fn check_infra(root: &Path) -> (bool, String) {
    let output = Command::new(python())
        .arg(workspace_root().join("infra/check_infra.py"))
        .arg("--root")
        .arg(root)
        .arg("--tools")
        .arg(tool("nats-server").parent().unwrap())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of what check_infra.py reads (infra/ and README.md) with one edit applied.
fn infra_copy_with(file: &str, from: &str, to: &str) -> TempDir {
    let dir = TempDir::new("infra-copy");
    copy_tree(&workspace_root().join("infra"), &dir.path().join("infra"));
    std::fs::copy(
        workspace_root().join("README.md"),
        dir.path().join("README.md"),
    )
    .unwrap();
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    dir
}

#[test]
fn the_kubernetes_overlays_render_validate_and_agree_with_the_queues() {
    let (ok, report) = check_infra(&workspace_root());
    assert!(ok, "check_infra.py:\n{report}");
    assert!(
        report.contains("checked 2 overlays") && report.contains(" 0 problem(s)"),
        "{report}"
    );
}

/// Negative controls: each check of check_infra.py finds the mistake it is there for.
#[test]
fn the_kubernetes_checks_catch_what_they_are_for() {
    let cases = [
        // maxReplicaCount past what max_ack_pending lets run (the 20 pods x 2 slots vs 32).
        (
            "infra/k8s/base/render-light.yaml",
            "maxReplicaCount: 16",
            "maxReplicaCount: 20",
            "maxReplicaCount 20 != max_ack_pending 32 / concurrency 2 = 16",
        ),
        // A liveness probe that asks over NATS restarts every pod in a NATS outage.
        (
            "infra/k8s/base/convert.yaml",
            "httpGet:\n              path: /livez\n              port: health",
            "exec:\n              command: [\"lightbox-convert\", \"--check\"]",
            "liveness probe must not need NATS",
        ),
        // A field KEDA's CRD does not have (validated against KEDA's schema).
        (
            "infra/k8s/base/tessellate.yaml",
            "  cooldownPeriod: 300",
            "  cooldownPeriods: 300",
            "KEDA schema has no field .spec.cooldownPeriods",
        ),
        // A wrong type for a KEDA field.
        (
            "infra/k8s/base/tessellate.yaml",
            "  pollingInterval: 10",
            "  pollingInterval: \"10\"",
            "KEDA schema",
        ),
        // Without the monitoring port KEDA's scaler has nothing to read.
        (
            "infra/k8s/base/nats.conf",
            "http_port: 8222",
            "http_port: 8223",
            "nats.conf must set http_port: 8222",
        ),
        // nats-server itself refuses the rendered config.
        (
            "infra/k8s/base/nats.conf",
            "jetstream {",
            "jetstream { bogus_option_for_test: }",
            "nats-server -t",
        ),
        // The GPU request is what puts heavy renders on GPU nodes.
        (
            "infra/k8s/base/render-heavy.yaml",
            "              nvidia.com/gpu: 1\n",
            "",
            "needs nvidia.com/gpu: 1",
        ),
        // A Secret no overlay makes.
        (
            "infra/k8s/base/convert.yaml",
            "name: lightbox-s3-convert\n                  key: access-key-id",
            "name: lightbox-s3-konvert\n                  key: access-key-id",
            "refers to Secret lightbox-s3-konvert",
        ),
        // A Kubernetes schema error (kubernetes-validate --strict).
        (
            "infra/k8s/base/nats.yaml",
            "  podManagementPolicy: Parallel",
            "  podManagementPolicy: Parallel\n  bogusField: 1",
            "kubernetes-validate",
        ),
        // Functions that create streams would overwrite what operators tuned.
        (
            "infra/k8s/base/infra-apply.yaml",
            "value: \"admin\"",
            "value: \"convert\"",
            "must apply as the admin user",
        ),
    ];
    // Each case renders both overlays and starts nats-server: run them side by side.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            cases
                .iter()
                .map(|&(file, from, to, expected)| {
                    scope.spawn(move || {
                        let copy = infra_copy_with(file, from, to);
                        let (ok, report) = check_infra(copy.path());
                        (!ok && report.contains(expected)).then_some(()).ok_or_else(|| {
                        format!("{file}: {from:?} -> {to:?} should report {expected:?}:\n{report}")
                    })
                    })
                })
                .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The init container's wait (a bash script in every function Deployment) against a real
/// nats-server with the production auth.conf and monitoring port: it waits while the consumer is
/// missing and ends once `lightbox infra apply` (here: the runtime's own create) made it.
#[tokio::test]
async fn functions_wait_for_their_consumer_through_the_monitoring_port() {
    // The script as Kubernetes runs it: `bash -c SCRIPT`, read from the manifest with PyYAML.
    let read = Command::new(python())
        .arg("-c")
        .arg(
            "import sys, yaml\n\
             d = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d['kind'] == 'Deployment'][0]\n\
             c = [c for c in d['spec']['template']['spec']['initContainers'] if c['name'] == 'wait-for-consumer'][0]\n\
             assert c['command'][:2] == ['bash', '-c']\n\
             sys.stdout.write(c['command'][2])",
        )
        .arg(workspace_root().join("infra/k8s/base/tessellate.yaml"))
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let script = String::from_utf8(read.stdout).unwrap();
    let dir = TempDir::new("monitor");
    let client_port = free_port(None);
    let monitor_port = free_port(None);
    let passwords: Vec<(String, String)> = ["ADMIN", "BACKEND", "CONVERT", "RENDER", "TESSELLATE"]
        .iter()
        .map(|u| (format!("LIGHTBOX_{u}_PASSWORD"), format!("pw-{u}")))
        .collect();
    let mut server = std::process::Command::new(tool("nats-server"))
        .args(["-js", "-a", "127.0.0.1", "-p", &client_port.to_string()])
        .args(["-m", &monitor_port.to_string(), "-sd"])
        .arg(dir.path())
        .arg("-c")
        .arg(workspace_root().join("infra/nats/auth.conf"))
        .envs(passwords.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", monitor_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no monitoring port"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run_wait = || {
        std::process::Command::new("timeout")
            .arg("4")
            .args(["bash", "-c", &script])
            .env("MONITOR_HOST", "127.0.0.1")
            .env("MONITOR_PORT", monitor_port.to_string())
            .env("CONSUMER", "tessellate")
            .output()
            .unwrap()
    };
    let before = run_wait();
    assert_eq!(
        before.status.code(),
        Some(124),
        "the wait must go on while the consumer is missing: {}",
        String::from_utf8_lossy(&before.stdout)
    );
    assert!(
        String::from_utf8_lossy(&before.stdout).contains("waiting for consumer JOBS/tessellate")
    );
    // Create the definitions as the admin user, as the infra-apply Job does.
    let nats = lightbox_runtime::config::NatsConfig {
        url: format!("nats://127.0.0.1:{client_port}"),
        user: Some("admin".into()),
        password: Some("pw-ADMIN".into()),
        ..lightbox_runtime::config::NatsConfig::default()
    };
    let client = nats.connect("infra-test").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let overrides = lightbox_runtime::infra::Overrides::default();
    let infra = lightbox_runtime::infra::ensure(&js, &overrides)
        .await
        .unwrap();
    lightbox_runtime::infra::ensure_consumer(&infra.jobs, "render.light", &overrides)
        .await
        .unwrap();
    // Another consumer is not enough: it waits for its own.
    assert_eq!(
        run_wait().status.code(),
        Some(124),
        "render-light's consumer is not tessellate's"
    );
    lightbox_runtime::infra::ensure_consumer(&infra.jobs, "tessellate", &overrides)
        .await
        .unwrap();
    let after = run_wait();
    assert!(
        after.status.success(),
        "the wait must end once the consumer exists: {:?} {}",
        after.status,
        String::from_utf8_lossy(&after.stdout)
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The Debian packages a workspace crate's build script needs (headers, libraries, compilers
/// beyond the C compiler every Rust image has). A crate that gains a build script must be listed
/// here, and every Dockerfile that builds it then has to install them.
const BUILD_PACKAGES: &[(&str, &[&str])] = &[
    ("render-runtime", &["libembree-dev"]),
    (
        "lightbox-tessellate",
        &[
            "g++",
            "libocct-data-exchange-dev",
            "libocct-ocaf-dev",
            "libocct-modeling-algorithms-dev",
            "libocct-visualization-dev",
        ],
    ),
    ("lightbox-scene", &["g++", "libdraco-dev"]),
];

/// The workspace crates a package's build reaches (normal and build dependencies), with whether
/// each has a build script.
fn workspace_closure(package: &str) -> Vec<(String, bool)> {
    // This host's platform only (other targets' crates are not downloaded here); offline first.
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let metadata = |offline: bool| {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .args([
                "metadata",
                "--format-version",
                "1",
                "--filter-platform",
                &host,
            ])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"));
        if offline {
            command.arg("--offline");
        }
        command.output().unwrap()
    };
    let mut output = metadata(true);
    if !output.status.success() {
        output = metadata(false);
    }
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let packages = meta["packages"].as_array().unwrap();
    let by_id = |id: &str| packages.iter().find(|p| p["id"] == id).unwrap();
    let start = packages
        .iter()
        .find(|p| p["name"] == package && members.contains(p["id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{package} is not a workspace member"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let shipped = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].as_str() != Some("dev"));
            if shipped {
                todo.push(dep["pkg"].as_str().unwrap().to_owned());
            }
        }
    }
    seen.iter()
        .filter(|id| members.contains(id.as_str()))
        .map(|id| {
            let package = by_id(id);
            let build_script = package["targets"].as_array().unwrap().iter().any(|t| {
                t["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "custom-build")
            });
            (package["name"].as_str().unwrap().to_owned(), build_script)
        })
        .collect()
}

/// The build stage of each Dockerfile installs exactly the -dev packages that the crates its
/// `cargo build -p` reaches need: what the ldd test cannot see (convert once linked Embree with no
/// libembree-dev in its build stage).
#[test]
fn each_build_stage_installs_exactly_the_packages_its_crates_build_with() {
    for file in dockerfiles() {
        let text = std::fs::read_to_string(&file).unwrap();
        let (build, _) = text.rsplit_once("\nFROM ").unwrap();
        let package = build
            .split_whitespace()
            .skip_while(|w| *w != "-p")
            .nth(1)
            .unwrap_or_else(|| panic!("{}: no cargo build -p", file.display()));
        let installed: BTreeSet<String> = build
            .split_whitespace()
            .filter_map(|w| w.split_once('=').map(|(name, _)| name.to_owned()))
            .filter(|name| name.starts_with("lib") || name == "g++")
            .collect();
        let mut needed = BTreeSet::new();
        for (crate_name, build_script) in workspace_closure(package) {
            if !build_script {
                continue;
            }
            let packages = BUILD_PACKAGES
                .iter()
                .find(|(name, _)| *name == crate_name)
                .unwrap_or_else(|| {
                    panic!("{crate_name} has a build script: list the Debian packages it builds with in BUILD_PACKAGES")
                })
                .1;
            needed.extend(packages.iter().map(|p| p.to_string()));
        }
        assert_eq!(
            installed,
            needed,
            "{}: build-stage packages vs what the crates of {package} build with",
            file.display()
        );
    }
}

/// The runtime stage that CI builds (tools/images.sh containerfile) is the Dockerfile's own, with
/// only the base and the binary's source changed, and it passes hadolint too.
#[test]
fn the_ci_runtime_images_are_the_dockerfiles_runtime_stages() {
    let script = workspace_root().join("tools/images.sh");
    for file in dockerfiles() {
        let output = Command::new("bash")
            .arg(&script)
            .arg("containerfile")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let derived = String::from_utf8(output.stdout).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let runtime = text.rsplit_once("\nFROM ").unwrap().1;
        let body = runtime.split_once('\n').unwrap().1;
        let expected = body.replace("COPY --from=build /out/", "COPY ");
        assert!(
            derived.ends_with(&expected) && !derived.contains("--from="),
            "{}: derived Containerfile differs from the runtime stage:\n{derived}",
            file.display()
        );
        let path = TempDir::new("containerfile");
        let containerfile = path.path().join("Containerfile");
        std::fs::write(&containerfile, &derived).unwrap();
        let lint = Command::new(tool("hadolint"))
            .args(["--failure-threshold", "warning"])
            .arg(&containerfile)
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&lint.stdout)
        );
    }
    // A runtime stage that copies anything else from an earlier stage is refused.
    let broken = TempDir::new("broken-dockerfile");
    let file = broken.path().join("x.Dockerfile");
    std::fs::write(
        &file,
        "FROM a AS build\nFROM b\nCOPY --from=build /src/other /x\nENTRYPOINT [\"x\"]\n",
    )
    .unwrap();
    let output = Command::new("bash")
        .arg(&script)
        .arg("containerfile")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[tokio::test]
async fn the_health_check_asks_the_running_instance() {
    let nats = NatsServer::start();
    let logs = TempDir::new("health");
    let store = TempDir::new("health-store");
    let env = vec![
        ("NATS_URL".to_string(), nats.url()),
        (
            "LIGHTBOX_STORE_DIR".to_string(),
            store.path().display().to_string(),
        ),
        ("LIGHTBOX_INSTANCE".to_string(), "health-test-1".to_string()),
    ];
    let binary = function_binary("lightbox-convert");
    let check = |instance: &str| {
        Command::new(&binary)
            .arg("--check")
            .env("NATS_URL", nats.url())
            .env("LIGHTBOX_INSTANCE", instance)
            .output()
            .unwrap()
    };
    let before = check("health-test-1");
    assert!(!before.status.success(), "no instance runs yet");
    let worker = FunctionProcess::spawn(&binary, &env, &logs, "convert");
    wait_consuming(&worker, Duration::from_secs(20)).await;
    let alive = check("health-test-1");
    assert!(
        alive.status.success(),
        "{}",
        String::from_utf8_lossy(&alive.stderr)
    );
    let counters: serde_json::Value = serde_json::from_slice(&alive.stdout).unwrap();
    assert_eq!(counters["in_flight"], 0);
    assert!(!check("some-other-instance").status.success());
}
