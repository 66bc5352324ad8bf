//! A double of the Kubernetes API for the sandbox and the tests, speaking its JSON: discovery
//! (`/api`, `/apis`, resource lists) and create / get / list (label selectors) / delete of the
//! objects Tenki uses: namespaces, secrets, pods and resource quotas (core/v1), jobs (batch/v1)
//! and network policies (networking.k8s.io/v1). The production `kube` client talks to it
//! unchanged, and `kubectl --server http://127.0.0.1:3000/sandbox/kubernetes get pods -A` lists
//! what Tenki created.
//!
//! Its pods "run": a Job gets a pod, which waits for the Secret its `secretKeyRef` names, then
//! runs the sandbox runner (the GitHub double takes a queued job with matching labels, sending
//! the real `in_progress` and `completed` deliveries), then succeeds. Deleting a Job deletes what
//! it owns, as Kubernetes' garbage collector does.
//!
//! Its state is in memory: it stands in for a cluster, not for Tenki's storage.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::github::GitHubDouble;

/// A kind the double serves: its resource name, kind, group/version and scope.
#[derive(Debug, Clone, Copy)]
struct Kind {
    resource: &'static str,
    kind: &'static str,
    group_version: &'static str,
    namespaced: bool,
}

const KINDS: [Kind; 6] = [
    Kind {
        resource: "namespaces",
        kind: "Namespace",
        group_version: "v1",
        namespaced: false,
    },
    Kind {
        resource: "pods",
        kind: "Pod",
        group_version: "v1",
        namespaced: true,
    },
    Kind {
        resource: "secrets",
        kind: "Secret",
        group_version: "v1",
        namespaced: true,
    },
    Kind {
        resource: "resourcequotas",
        kind: "ResourceQuota",
        group_version: "v1",
        namespaced: true,
    },
    Kind {
        resource: "jobs",
        kind: "Job",
        group_version: "batch/v1",
        namespaced: true,
    },
    Kind {
        resource: "networkpolicies",
        kind: "NetworkPolicy",
        group_version: "networking.k8s.io/v1",
        namespaced: true,
    },
];

fn kind_of(group_version: &str, resource: &str) -> Option<Kind> {
    KINDS
        .into_iter()
        .find(|k| k.group_version == group_version && k.resource == resource)
}

/// (resource, namespace, name); namespace is empty for cluster-wide objects.
type ObjectKey = (String, String, String);

#[derive(Default)]
struct ClusterState {
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    /// Pods' stop signals, by (namespace, pod name).
    stops: BTreeMap<(String, String), tokio::sync::watch::Sender<bool>>,
    /// While set, new pods fail to pull their image.
    fail_image_pulls: bool,
    /// While set, every create is answered 503, as an API server that is down.
    unavailable: bool,
}

/// The Kubernetes double. Cheap to clone; clones share their state.
#[derive(Clone)]
pub struct KubernetesDouble {
    state: Arc<Mutex<ClusterState>>,
    github: Option<GitHubDouble>,
}

impl std::fmt::Debug for KubernetesDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDouble").finish_non_exhaustive()
    }
}

fn now_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn not_found(kind: &Kind, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(kind)),
    )
}

fn qualified(kind: &Kind) -> String {
    match kind.group_version.split_once('/') {
        Some((group, _)) => format!("{}.{group}", kind.resource),
        None => kind.resource.to_owned(),
    }
}

fn labels_match(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => {
            let value = value.trim_start_matches('=');
            object["metadata"]["labels"][key.trim()].as_str() == Some(value.trim())
        }
        None => object["metadata"]["labels"].get(term.trim()).is_some(),
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

impl KubernetesDouble {
    /// A cluster whose pods run the sandbox runner against `github` (without it, pods stay
    /// pending).
    pub fn new(github: Option<GitHubDouble>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ClusterState::default())),
            github,
        }
    }

    fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// While `true`, new pods fail to start (their image cannot be pulled).
    pub fn set_fail_image_pulls(&self, fail: bool) {
        self.state().fail_image_pulls = fail;
    }

    /// While `true`, the API server refuses every create with 503 (it is down).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    /// Every object of `resource` (`jobs`, `pods`, `secrets`, …), as stored.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.state()
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Stores an object as Kubernetes would create it (an orphan, in tests).
    pub fn insert(
        &self,
        group_version: &str,
        resource: &str,
        object: Value,
    ) -> Result<Value, String> {
        let kind = kind_of(group_version, resource).ok_or("unknown resource")?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        self.create_object(&kind, &namespace, object)
            .map_err(|_| "cannot create".to_owned())
    }

    /// The double's routes, to be nested under [`crate::settings::SANDBOX_KUBERNETES_PATH`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/version", get(version))
            .route(
                "/switches/fail-image-pulls",
                axum::routing::post(switch_fail_image_pulls),
            )
            .route("/api", get(core_versions))
            .route("/apis", get(groups))
            .route("/api/v1", get(core_resources))
            .route("/apis/{group}/{version}", get(group_resources))
            .route(
                "/api/v1/{resource}",
                get(list_core_all).post(create_cluster_core),
            )
            .route(
                "/api/v1/{resource}/{name}",
                get(get_cluster_core).delete(delete_cluster_core),
            )
            .route(
                "/api/v1/namespaces/{namespace}/{resource}",
                get(list_core).post(create_core),
            )
            .route(
                "/api/v1/namespaces/{namespace}/{resource}/{name}",
                get(get_core).delete(delete_core),
            )
            .route("/apis/{group}/{version}/{resource}", get(list_group_all))
            .route(
                "/apis/{group}/{version}/namespaces/{namespace}/{resource}",
                get(list_group).post(create_group),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}",
                get(get_group).delete(delete_group),
            )
            .with_state(self.clone())
    }

    fn list(&self, kind: &Kind, namespace: Option<&str>, selector: Option<&str>) -> Response {
        let state = self.state();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((r, ns, _), object)| {
                r == kind.resource
                    && namespace.is_none_or(|n| n == ns)
                    && labels_match(object, selector)
            })
            .map(|(_, object)| object.clone())
            .collect();
        Json(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.group_version,
            "metadata": { "resourceVersion": state.resource_version.to_string() },
            "items": items,
        }))
        .into_response()
    }

    fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Response {
        let key = (
            kind.resource.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        match self.state().objects.get(&key) {
            Some(object) => Json(object.clone()).into_response(),
            None => not_found(kind, name),
        }
    }

    fn create_object(
        &self,
        kind: &Kind,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, Box<Response>> {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return Err(Box::new(status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{} is invalid: metadata.name: Required value", kind.kind),
            )));
        };
        let mut state = self.state();
        if kind.namespaced
            && !state.objects.contains_key(&(
                "namespaces".to_owned(),
                String::new(),
                namespace.to_owned(),
            ))
        {
            return Err(Box::new(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            )));
        }
        let key = (kind.resource.to_owned(), namespace.to_owned(), name.clone());
        if state.objects.contains_key(&key) {
            return Err(Box::new(status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(kind)),
            )));
        }
        state.resource_version += 1;
        object["kind"] = json!(kind.kind);
        object["apiVersion"] = json!(kind.group_version);
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
        metadata["creationTimestamp"] = json!(now_timestamp());
        metadata["resourceVersion"] = json!(state.resource_version.to_string());
        if kind.namespaced {
            metadata["namespace"] = json!(namespace);
        }
        if kind.resource == "secrets" {
            // The API server turns `stringData` into base64 `data`.
            if let Some(string_data) = object.get("stringData").and_then(Value::as_object).cloned()
            {
                let data: serde_json::Map<String, Value> = string_data
                    .into_iter()
                    .map(|(k, v)| (k, json!(base64_encode(v.as_str().unwrap_or("").as_bytes()))))
                    .collect();
                object["data"] = Value::Object(data);
                if let Some(map) = object.as_object_mut() {
                    map.remove("stringData");
                }
            }
        }
        if kind.resource == "jobs" {
            object["status"] = json!({ "active": 1, "startTime": now_timestamp() });
        }
        state.objects.insert(key, object.clone());
        Ok(object)
    }

    fn create(&self, kind: &Kind, namespace: &str, object: Value) -> Response {
        if self.state().unavailable {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the sandbox's Kubernetes is switched off".to_owned(),
            );
        }
        match self.create_object(kind, namespace, object) {
            Ok(created) => {
                if kind.resource == "jobs" {
                    self.start_pod(namespace, &created);
                }
                (StatusCode::CREATED, Json(created)).into_response()
            }
            Err(refused) => *refused,
        }
    }

    fn delete(&self, kind: &Kind, namespace: &str, name: &str) -> Response {
        let key = (
            kind.resource.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        let mut state = self.state();
        let Some(object) = state.objects.remove(&key) else {
            return not_found(kind, name);
        };
        // The garbage collector: what the object owns goes with it; a namespace takes its
        // contents.
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let mut doomed: Vec<ObjectKey> = state
            .objects
            .iter()
            .filter(|((_, ns, _), o)| {
                (kind.resource == "namespaces" && ns == name)
                    || o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|owners| owners.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(key, _)| key.clone())
            .collect();
        // Pods' own Secrets are owned by their Job, pods too: one level is enough here.
        doomed.sort();
        for key in doomed {
            if key.0 == "pods"
                && let Some(stop) = state.stops.remove(&(key.1.clone(), key.2.clone()))
            {
                let _ = stop.send(true);
            }
            state.objects.remove(&key);
        }
        if kind.resource == "pods"
            && let Some(stop) = state.stops.remove(&(namespace.to_owned(), name.to_owned()))
        {
            let _ = stop.send(true);
        }
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": { "name": name, "kind": kind.resource, "uid": uid },
        }))
        .into_response()
    }

    /// The Job controller and the kubelet in one: a pod for the Job, which runs the sandbox
    /// runner with the JIT configuration from its Secret.
    fn start_pod(&self, namespace: &str, job: &Value) {
        let job_name = job["metadata"]["name"].as_str().unwrap_or("job").to_owned();
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_owned();
        let pod_name = format!("{job_name}-{suffix}");
        let template = &job["spec"]["template"];
        let mut labels = template["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels["job-name"] = json!(job_name);
        labels["batch.kubernetes.io/job-name"] = json!(job_name);
        let pod = json!({
            "metadata": {
                "name": pod_name,
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                    "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": template["spec"],
            "status": { "phase": "Pending" },
        });
        let pods = KINDS[1];
        if self.create_object(&pods, namespace, pod).is_err() {
            return;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        self.state()
            .stops
            .insert((namespace.to_owned(), pod_name.clone()), stop);
        let cluster = self.clone();
        let namespace = namespace.to_owned();
        let secret_name = template["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
            ["name"]
            .as_str()
            .map(str::to_owned);
        let image = template["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        tokio::spawn(async move {
            cluster
                .run_pod(
                    &namespace,
                    &job_name,
                    &pod_name,
                    secret_name,
                    &image,
                    stopped,
                )
                .await;
        });
    }

    fn update(&self, resource: &str, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state();
        state.resource_version += 1;
        let version = state.resource_version.to_string();
        if let Some(object) =
            state
                .objects
                .get_mut(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
        {
            change(object);
            object["metadata"]["resourceVersion"] = json!(version);
        }
    }

    async fn run_pod(
        &self,
        namespace: &str,
        job_name: &str,
        pod_name: &str,
        secret_name: Option<String>,
        image: &str,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        // The kubelet waits for the Secret an env var needs (Tenki creates it just after the Job).
        let mut jit_config = None;
        for _ in 0..100 {
            if *stopped.borrow() {
                return;
            }
            jit_config = secret_name.as_deref().and_then(|secret| {
                let state = self.state();
                let object = state.objects.get(&(
                    "secrets".to_owned(),
                    namespace.to_owned(),
                    secret.to_owned(),
                ))?;
                object["data"]["jitconfig"].as_str().and_then(base64_decode)
            });
            if jit_config.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let waiting = |reason: &str, message: String| {
            json!({ "phase": "Pending", "containerStatuses": [{
                "name": "runner", "ready": false, "restartCount": 0, "image": image, "imageID": "",
                "state": { "waiting": { "reason": reason, "message": message } },
            }]})
        };
        let Some(jit_config) = jit_config else {
            let status = waiting(
                "CreateContainerConfigError",
                format!("secret \"{}\" not found", secret_name.unwrap_or_default()),
            );
            self.update("pods", namespace, pod_name, |pod| pod["status"] = status);
            return;
        };
        if self.state().fail_image_pulls {
            let status = waiting(
                "ErrImagePull",
                format!("failed to pull image \"{image}\": the sandbox's image-pull switch is on"),
            );
            self.update("pods", namespace, pod_name, |pod| pod["status"] = status);
            return;
        }
        let started = now_timestamp();
        self.update("pods", namespace, pod_name, |pod| {
            pod["status"] = json!({ "phase": "Running", "startTime": started, "containerStatuses": [{
                "name": "runner", "ready": true, "restartCount": 0, "image": image, "imageID": "",
                "state": { "running": { "startedAt": started } },
            }]});
        });
        let outcome = match &self.github {
            Some(github) => github.run_runner(&jit_config, stopped.clone()).await,
            None => {
                let mut stopped = stopped.clone();
                drop(stopped.wait_for(|stop| *stop).await);
                Ok(())
            }
        };
        if *stopped.borrow() {
            return;
        }
        let finished = now_timestamp();
        let (phase, exit_code, reason) = match &outcome {
            Ok(()) => ("Succeeded", 0, "Completed".to_owned()),
            Err(problem) => ("Failed", 1, problem.clone()),
        };
        self.update("pods", namespace, pod_name, |pod| {
            pod["status"] = json!({ "phase": phase, "startTime": started, "containerStatuses": [{
                "name": "runner", "ready": false, "restartCount": 0, "image": image, "imageID": "",
                "state": { "terminated": { "exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": finished } },
            }]});
        });
        let condition = if outcome.is_ok() {
            "Complete"
        } else {
            "Failed"
        };
        self.update("jobs", namespace, job_name, |job| {
            job["status"] = json!({
                "startTime": started, "completionTime": finished,
                "succeeded": i32::from(outcome.is_ok()), "failed": i32::from(outcome.is_err()),
                "conditions": [{ "type": condition, "status": "True", "lastTransitionTime": finished,
                                 "reason": if outcome.is_ok() { "Completed" } else { "BackoffLimitExceeded" },
                                 "message": outcome.as_ref().err().cloned().unwrap_or_default() }],
            });
        });
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Sandbox switch: `POST /sandbox/kubernetes/switches/fail-image-pulls?on=true` makes every new
/// pod fail to pull its image (Tenki retries with new runners, then the job says why).
async fn switch_fail_image_pulls(
    State(cluster): State<KubernetesDouble>,
    Query(switch): Query<super::github::Switch>,
) -> Response {
    cluster.set_fail_image_pulls(switch.on);
    (StatusCode::OK, format!("image pulls fail: {}", switch.on)).into_response()
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-tenki-sandbox", "platform": "linux/amd64",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-11-29T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc",
    }))
}

async fn core_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:3000" }],
    }))
}

async fn groups() -> Json<Value> {
    let group = |name: &str| {
        let version = json!({ "groupVersion": format!("{name}/v1"), "version": "v1" });
        json!({ "name": name, "versions": [version.clone()], "preferredVersion": version })
    };
    Json(json!({
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [group("batch"), group("networking.k8s.io")],
    }))
}

fn resource_list(group_version: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group_version == group_version)
        .map(|k| {
            json!({
                "name": k.resource, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["create", "delete", "get", "list"],
            })
        })
        .collect();
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}

async fn core_resources() -> Json<Value> {
    Json(resource_list("v1"))
}

async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    let group_version = format!("{group}/{version}");
    if KINDS.iter().any(|k| k.group_version == group_version) {
        Json(resource_list(&group_version)).into_response()
    } else {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{group_version} is not served"),
        )
    }
}

fn unknown(resource: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({resource})"),
    )
}

async fn list_core_all(
    State(cluster): State<KubernetesDouble>,
    Path(resource): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    match kind_of("v1", &resource) {
        Some(kind) => cluster.list(&kind, None, query.label_selector.as_deref()),
        None => unknown(&resource),
    }
}

async fn create_cluster_core(
    State(cluster): State<KubernetesDouble>,
    Path(resource): Path<String>,
    Json(object): Json<Value>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| !k.namespaced) {
        Some(kind) => cluster.create(&kind, "", object),
        None => unknown(&resource),
    }
}

async fn get_cluster_core(
    State(cluster): State<KubernetesDouble>,
    Path((resource, name)): Path<(String, String)>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| !k.namespaced) {
        Some(kind) => cluster.get(&kind, "", &name),
        None => unknown(&resource),
    }
}

async fn delete_cluster_core(
    State(cluster): State<KubernetesDouble>,
    Path((resource, name)): Path<(String, String)>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| !k.namespaced) {
        Some(kind) => cluster.delete(&kind, "", &name),
        None => unknown(&resource),
    }
}

async fn list_core(
    State(cluster): State<KubernetesDouble>,
    Path((namespace, resource)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| k.namespaced) {
        Some(kind) => cluster.list(&kind, Some(&namespace), query.label_selector.as_deref()),
        None => unknown(&resource),
    }
}

async fn create_core(
    State(cluster): State<KubernetesDouble>,
    Path((namespace, resource)): Path<(String, String)>,
    Json(object): Json<Value>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| k.namespaced) {
        Some(kind) => cluster.create(&kind, &namespace, object),
        None => unknown(&resource),
    }
}

async fn get_core(
    State(cluster): State<KubernetesDouble>,
    Path((namespace, resource, name)): Path<(String, String, String)>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| k.namespaced) {
        Some(kind) => cluster.get(&kind, &namespace, &name),
        None => unknown(&resource),
    }
}

async fn delete_core(
    State(cluster): State<KubernetesDouble>,
    Path((namespace, resource, name)): Path<(String, String, String)>,
) -> Response {
    match kind_of("v1", &resource).filter(|k| k.namespaced) {
        Some(kind) => cluster.delete(&kind, &namespace, &name),
        None => unknown(&resource),
    }
}

async fn list_group_all(
    State(cluster): State<KubernetesDouble>,
    Path((group, version, resource)): Path<(String, String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    match kind_of(&format!("{group}/{version}"), &resource) {
        Some(kind) => cluster.list(&kind, None, query.label_selector.as_deref()),
        None => unknown(&resource),
    }
}

async fn list_group(
    State(cluster): State<KubernetesDouble>,
    Path((group, version, namespace, resource)): Path<(String, String, String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    match kind_of(&format!("{group}/{version}"), &resource) {
        Some(kind) => cluster.list(&kind, Some(&namespace), query.label_selector.as_deref()),
        None => unknown(&resource),
    }
}

async fn create_group(
    State(cluster): State<KubernetesDouble>,
    Path((group, version, namespace, resource)): Path<(String, String, String, String)>,
    Json(object): Json<Value>,
) -> Response {
    match kind_of(&format!("{group}/{version}"), &resource) {
        Some(kind) => cluster.create(&kind, &namespace, object),
        None => unknown(&resource),
    }
}

async fn get_group(
    State(cluster): State<KubernetesDouble>,
    Path((group, version, namespace, resource, name)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> Response {
    match kind_of(&format!("{group}/{version}"), &resource) {
        Some(kind) => cluster.get(&kind, &namespace, &name),
        None => unknown(&resource),
    }
}

async fn delete_group(
    State(cluster): State<KubernetesDouble>,
    Path((group, version, namespace, resource, name)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> Response {
    match kind_of(&format!("{group}/{version}"), &resource) {
        Some(kind) => cluster.delete(&kind, &namespace, &name),
        None => unknown(&resource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_round_trips_through_base64() {
        for text in ["", "a", "ab", "abc", "sandbox-jit-config-10000000123"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&encoded).as_deref(), Some(text), "{encoded}");
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }
}
