//! The deployment files agree with the service: `deploy/*.yaml` parse, their
//! probes name paths and the port the service really serves, the sidecar
//! variant waits for the proxy and outlives dave's grace period, the pool
//! fits the connection budget, every variable they set is a documented
//! setting, and the Dockerfile builds with the README's release command.
//! (`docker build` itself cannot run here.)

use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::helpers::spawn_app;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Value {
    serde_norway::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

fn containers(service: &Value) -> &Vec<Value> {
    service["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("spec.template.spec.containers")
}

fn container<'a>(service: &'a Value, name: &str) -> &'a Value {
    containers(service)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn annotation<'a>(service: &'a Value, name: &str) -> Option<&'a str> {
    service["spec"]["template"]["metadata"]["annotations"][name].as_str()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)
}

fn env_number(container: &Value, name: &str) -> u64 {
    env_value(container, name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{name} is set"))
        .parse()
        .unwrap()
}

/// (path, port) of a container's probe.
fn probe(container: &Value, kind: &str) -> (String, u64) {
    let get = &container[kind]["httpGet"];
    (
        get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} path"))
            .to_owned(),
        get["port"]
            .as_u64()
            .unwrap_or_else(|| panic!("{kind} port")),
    )
}

/// The settings table of the README: the variable names in its first column.
fn documented_variables() -> Vec<String> {
    read("README.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Checks dave's container of either variant; returns its port.
async fn check_dave_container(service: &Value, file: &str) -> u64 {
    let dave = container(service, "dave");
    let ports = dave["ports"].as_sequence().expect("dave has a port");
    let port = ports[0]["containerPort"].as_u64().unwrap();
    assert_eq!(port, 8080, "{file}: Cloud Run's PORT and dave's default");
    assert_eq!(
        dave::config::Config::from_env(&pgkit::settings::Env::default())
            .unwrap()
            .port,
        8080
    );
    assert_eq!(
        probe(dave, "startupProbe"),
        ("/health/ready".to_owned(), port),
        "{file}"
    );
    assert_eq!(
        probe(dave, "livenessProbe"),
        ("/health/live".to_owned(), port),
        "{file}"
    );
    assert_eq!(dave["args"][0], "serve", "{file}");
    // Cloud Run sends SIGKILL 10 s after SIGTERM: the grace period, the
    // pool's close and a second to spare must fit.
    let grace = env_number(dave, "SHUTDOWN_GRACE");
    assert!(
        std::time::Duration::from_secs(grace + 1) + dave::config::POOL_CLOSE_WAIT
            <= std::time::Duration::from_secs(9),
        "{file}: SHUTDOWN_GRACE={grace} leaves no room before SIGKILL"
    );

    // The probe paths really answer.
    let app = spawn_app().await;
    for kind in ["startupProbe", "livenessProbe"] {
        let (path, _) = probe(dave, kind);
        assert_eq!(app.get(&path).await.status(), 200, "{file}: {kind} {path}");
    }

    // Every variable is a documented setting (secrets may use the _FILE form).
    let documented = documented_variables();
    assert!(
        documented.len() > 10,
        "README settings table: {documented:?}"
    );
    for entry in dave["env"].as_sequence().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let base = name.strip_suffix("_FILE").unwrap_or(name);
        assert!(
            documented.iter().any(|d| d == base),
            "{file}: {name} is not in the README's table"
        );
    }
    for secret in ["DAVE_DB_DSN", "JWT_SECRET"] {
        assert!(
            env_value(dave, secret)
                .is_some_and(|e| e["valueFrom"]["secretKeyRef"]["name"].is_string()),
            "{file}: {secret} comes from Secret Manager"
        );
    }
    assert!(
        env_value(dave, "SESSION_SECRET").is_some()
            || env_value(dave, "SESSION_SECRET_FILE").is_some(),
        "{file}: production needs SESSION_SECRET"
    );
    assert_eq!(
        env_value(dave, "APP_ENVIRONMENT").unwrap()["value"],
        "production"
    );

    // Connection budget: instances x pool within what the instance allows.
    let max_instances = env_number(dave, "MAX_INSTANCES");
    let pool_max = env_number(dave, "DB_POOL_MAX_SIZE");
    let max_scale: u64 = annotation(service, "autoscaling.knative.dev/maxScale")
        .expect("maxScale")
        .parse()
        .unwrap();
    assert_eq!(
        max_scale, max_instances,
        "{file}: maxScale and MAX_INSTANCES agree"
    );
    assert!(
        max_instances * pool_max <= CONNECTION_BUDGET,
        "{file}: {max_instances} x {pool_max} connections exceed the budget of {CONNECTION_BUDGET}"
    );
    let concurrency = service["spec"]["template"]["spec"]["containerConcurrency"]
        .as_u64()
        .unwrap();
    assert!(
        concurrency >= pool_max,
        "{file}: concurrency below the pool wastes connections"
    );
    port
}

/// docs/deploy.md: connections dave may hold on an instance with
/// max_connections 200 (reserve for migrations, operators, Cloud SQL).
const CONNECTION_BUDGET: u64 = 180;

#[tokio::test]
async fn service_yaml_matches_the_service() {
    let service = yaml("deploy/service.yaml");
    assert_eq!(service["kind"], "Service");
    let instance = annotation(&service, "run.googleapis.com/cloudsql-instances")
        .expect("the /cloudsql annotation");
    assert_eq!(instance.split(':').count(), 3, "PROJECT:REGION:INSTANCE");
    check_dave_container(&service, "deploy/service.yaml").await;
    assert_eq!(containers(&service).len(), 1);
}

#[tokio::test]
async fn sidecar_variant_waits_for_the_proxy_and_outlives_the_grace_period() {
    let file = "deploy/service-sidecar.yaml";
    let service = yaml(file);
    check_dave_container(&service, file).await;
    let dependencies: serde_json::Value = serde_json::from_str(
        annotation(&service, "run.googleapis.com/container-dependencies")
            .expect("container dependencies"),
    )
    .unwrap();
    assert_eq!(
        dependencies,
        serde_json::json!({"dave": ["cloud-sql-proxy"]})
    );

    let proxy = container(&service, "cloud-sql-proxy");
    assert!(proxy.get("ports").is_none(), "only dave receives traffic");
    let args: Vec<&str> = proxy["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--health-check"), "{args:?}");
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {args:?}"))
    };
    let http_port: u64 = flag("--http-port").parse().unwrap();
    assert_eq!(
        probe(proxy, "startupProbe"),
        ("/startup".to_owned(), http_port)
    );
    let delay: u64 = flag("--max-sigterm-delay")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let dave = container(&service, "dave");
    let grace = env_number(dave, "SHUTDOWN_GRACE");
    assert!(
        delay > grace,
        "the proxy outlives dave's grace period: {delay}s vs {grace}s"
    );
    let dsn_port = flag("--port");
    assert_eq!(dsn_port, "5432");
}

#[test]
fn cloudbuild_builds_and_migrates_before_deploying() {
    let build = yaml("deploy/cloudbuild.yaml");
    let steps = build["steps"].as_sequence().expect("steps");
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let position = |id: &str| {
        ids.iter()
            .position(|i| *i == id)
            .unwrap_or_else(|| panic!("step {id}"))
    };
    assert!(position("build") < position("migrate"));
    assert!(position("migrate") < position("deploy"));
    let migrate = serde_norway::to_string(&steps[position("migrate")]).unwrap();
    assert!(migrate.contains("--args=migrate,up"), "{migrate}");
}

/// The fenced shell lines of the README that start with `prefix`.
fn readme_commands(prefix: &str) -> Vec<String> {
    read("README.md")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dockerfile_builds_with_the_readme_release_command_and_runs_as_non_root() {
    let dockerfile = read("Dockerfile");
    let release = readme_commands("cargo build --release");
    assert_eq!(
        release.len(),
        1,
        "one release build in the README: {release:?}"
    );
    let build_lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo build") || l.contains(" cargo build"))
        .collect();
    assert_eq!(build_lines.len(), 1, "{build_lines:?}");
    let command = build_lines[0]
        .trim_start_matches("RUN ")
        .trim_end_matches('\\')
        .trim();
    assert_eq!(
        command, release[0],
        "the Dockerfile builds as the README says"
    );
    assert!(
        readme_commands("cargo run --release -p dave -- serve").len() == 1,
        "the README's run command"
    );

    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage");
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(final_stage.contains("EXPOSE 8080"));
    assert!(final_stage.contains("CMD [\"serve\"]"));
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let tests = readme_commands("cargo test");
    assert_eq!(tests.len(), 1, "one test command in the README: {tests:?}");
    let script = read(".ci/run");
    let last = script
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    assert_eq!(last, tests[0]);
    assert!(script.contains("apt-get update"));
    assert!(script.contains("postgresql-15"));
}
