use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lightbox_tests::{
    function_binary, tool, wait_consuming, workspace_root, FunctionProcess, NatsServer, TempDir,
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

fn python() -> PathBuf {
    tool("python")
}

#[test]
fn kubernetes_manifests_validate_and_agree_with_the_queues() {
    let manifests: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("infra/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let output = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .args(&manifests)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubernetes-validate:\n{report}");
    // The only kind without a schema there is KEDA's; check_infra.py checks it structurally.
    for line in report
        .lines()
        .filter(|l| l.contains("Couldn't find schema"))
    {
        assert!(
            line.contains("ScaledObject"),
            "unexpected kind without schema: {line}"
        );
    }
    let check = Command::new(python())
        .arg(workspace_root().join("infra/check_infra.py"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("0 problem(s)"));
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
