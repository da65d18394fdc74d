//! The deployment files: the Kustomize overlays render with `kubectl kustomize` and are
//! valid against the Kubernetes schemas (`kubernetes-validate`, pinned by
//! `scripts/setup.sh`), keep keys out of ConfigMaps and the operator's root key out of every
//! pod; the NATS Helm values describe a configuration `nats-server -t` accepts.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run via scripts/test.sh"))
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize` of an overlay, validated, and its resources as JSON.
fn render(overlay: &str, dir: &Path) -> Vec<Value> {
    let kubectl = std::env::var("MNEMO_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let yaml = run(Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes/overlays").join(overlay)));
    let file = dir.join(format!("{overlay}.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    let report = run(Command::new(tool("MNEMO_KUBERNETES_VALIDATE"))
        .args(["--strict", "-k", "1.32.0"])
        .arg(&file));
    let json = run(Command::new(tool("MNEMO_PYTHON")).arg("-c").arg(
        "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
    ).arg(&file));
    let docs: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report.matches("passed for resource").count(),
        docs.len(),
        "{overlay}: {report}"
    );
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_overlays_render_validate_and_keep_keys_in_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    for overlay in ["dev", "production"] {
        let docs = render(overlay, &dir);
        let deployments = of_kind(&docs, "Deployment");
        assert_eq!(deployments.len(), 2, "{overlay}: the API and the views");
        assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
        assert_eq!(of_kind(&docs, "Service").len(), 1);
        // No key, seed, password or URL with credentials in a ConfigMap.
        for cm in of_kind(&docs, "ConfigMap") {
            for (k, v) in cm["data"].as_object().unwrap() {
                let v = v.as_str().unwrap();
                for word in ["KEY", "SEED", "SECRET", "PASSWORD", "TOKEN", "DATABASE_URL"] {
                    assert!(!k.contains(word), "{overlay}: ConfigMap holds {k}");
                }
                assert!(
                    !(v.contains("://") && v.contains('@')),
                    "{overlay}: {k}={v}"
                );
            }
        }
        for d in &deployments {
            let name = d["metadata"]["name"].as_str().unwrap();
            let pod = &d["spec"]["template"]["spec"];
            for c in pod["containers"].as_array().unwrap() {
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
                assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
                assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            }
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            // Secret volumes list the files they mount: the operator's root key is never one.
            for v in pod["volumes"].as_array().unwrap() {
                if v["secret"].is_object() {
                    let items = v["secret"]["items"].as_array().expect("items listed");
                    assert!(
                        items.iter().all(|i| i["key"] != "operator.nk"),
                        "{overlay}/{name} mounts the operator's root key"
                    );
                }
            }
        }
        // The view process never gets the custody signing key.
        let views = deployments
            .iter()
            .find(|d| d["metadata"]["name"] == "mnemo-views")
            .unwrap();
        let text = views.to_string();
        assert!(!text.contains("MNEMO_SIGNING_KEY"), "{text}");
        assert!(
            !text.contains("secretRef\":{\"name\":\"mnemo-keys"),
            "{text}"
        );
        if overlay == "production" {
            let api = deployments
                .iter()
                .find(|d| d["metadata"]["name"] == "mnemo-api")
                .unwrap();
            assert!(api["spec"]["replicas"].as_u64().unwrap() >= 3);
            let cm = of_kind(&docs, "ConfigMap")[0];
            assert_eq!(cm["data"]["MNEMO_REPLICAS"], "3");
        }
    }
}

/// Renders `values` into a configuration (with self-signed certificates for the TLS
/// secrets it names) and runs `nats-server -t` on it.
fn nats_check(values: &Path, dir: &Path) -> std::process::Output {
    run(Command::new(tool("MNEMO_PYTHON"))
        .arg(root().join("deploy/nats/render-conf.py"))
        .arg(values)
        .arg(dir));
    for secret in ["nats-leaf-tls", "nats-ws-tls"] {
        let d = dir.join(secret);
        if d.is_dir() {
            run(Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=nats",
                ])
                .arg("-keyout")
                .arg(d.join("tls.key"))
                .arg("-out")
                .arg(d.join("tls.crt")));
        }
    }
    Command::new(mnemo_testkit::nats_server_binary())
        .args(["-t", "-c"])
        .arg(dir.join("nats.conf"))
        .output()
        .unwrap()
}

#[test]
fn the_nats_values_describe_a_configuration_nats_server_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let values = root().join("deploy/nats/values.yaml");
    let ok = nats_check(&values, &dir.join("as-shipped"));
    assert!(
        ok.status.success(),
        "nats-server -t: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let conf = std::fs::read_to_string(dir.join("as-shipped/nats.conf")).unwrap();
    for expected in [
        "cluster {",
        "sync_interval: \"always\"",
        "domain: \"hub\"",
        "max_payload: 8388608",
    ] {
        assert!(conf.contains(expected), "{expected} missing from\n{conf}");
    }
    // The check can fail: the size as a string, as the values once had it, is refused.
    let broken = dir.join("broken-values.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&values)
            .unwrap()
            .replace("max_payload: 8388608", "max_payload: 8MB"),
    )
    .unwrap();
    let refused = nats_check(&broken, &dir.join("broken"));
    assert!(!refused.status.success(), "a quoted size was accepted");
}
