//! The runner provisioner on Kubernetes (crates `kube` + `k8s-openapi`): per workspace a
//! namespace with a ResourceQuota and a deny-all-ingress NetworkPolicy; per runner a `batch/v1`
//! Job (the parent: `backoffLimit: 0`, a deadline of the maximum job lifetime, a TTL after it
//! finishes, so Kubernetes cleans up even while Tenki is down) and a Secret it owns holding the
//! JIT configuration, which reaches the runner only through `secretKeyRef`.
//!
//! The same code talks to a real cluster and to the sandbox's double; only the address differs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Namespace, Pod, PodSpec, PodTemplateSpec, ResourceQuota,
    ResourceQuotaSpec, ResourceRequirements, Secret, SecretKeySelector,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::{ObservedRunner, PodFailure, ProvisionError, Provisioner, RunnerSpec};

/// Labels on every object Tenki creates, so orphans can be found after a restart.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tenki");
/// The label naming the runner an object belongs to.
pub const RUNNER_LABEL: &str = "tenki.dev/runner";
/// The label naming the workspace.
pub const WORKSPACE_LABEL: &str = "tenki.dev/workspace";
/// The key of the JIT configuration in the runner's Secret.
const JIT_CONFIG_KEY: &str = "jitconfig";
/// The runner's container reads its configuration from this variable (actions/runner).
const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// A finished runner's objects stay this long for inspection, then Kubernetes deletes them.
const TTL_AFTER_FINISHED_SECONDS: i32 = 300;
/// The work disk of a runner (GitHub's hosted runners have 14 GB of SSD).
const EPHEMERAL_STORAGE: &str = "14Gi";

/// Where the cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAccess {
    /// A kubeconfig file (`TENKI_KUBECONFIG`), its current context.
    Kubeconfig(PathBuf),
    /// The service account of the pod Tenki runs in.
    InCluster,
    /// A plain address without credentials: the sandbox's double.
    Sandbox(String),
}

/// The Kubernetes provisioner. Cheap to clone.
#[derive(Clone)]
pub struct Kubernetes {
    client: Client,
    image: String,
    /// Workspaces whose namespace, quota and network policy this process has made sure of: the
    /// three calls are not repeated for every runner.
    prepared: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// Connects to the cluster at `access`; runners use `image` (`TENKI_RUNNER_IMAGE`).
    pub async fn connect(access: &ClusterAccess, image: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let config = match access {
            ClusterAccess::Kubeconfig(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    file,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
            }
            ClusterAccess::InCluster => kube::Config::incluster().context(
                "reading the in-cluster service account (set TENKI_KUBECONFIG outside a cluster)",
            )?,
            ClusterAccess::Sandbox(url) => {
                let uri: http::Uri = url
                    .parse()
                    .with_context(|| format!("the sandbox Kubernetes address {url}"))?;
                kube::Config::new(uri)
            }
        };
        let client = Client::try_from(config).context("creating the Kubernetes client")?;
        Ok(Self::with_client(client, image))
    }

    /// A provisioner on an existing client (tests use kube over `tower-test`).
    pub fn with_client(client: Client, image: &str) -> Self {
        Self {
            client,
            image: image.to_owned(),
            prepared: std::sync::Arc::default(),
        }
    }
}

impl Kubernetes {
    fn prepared(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The namespace of a workspace's runners.
pub fn namespace_of(workspace_id: Uuid) -> String {
    format!("tenki-ws-{}", workspace_id.simple())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    std::iter::once(MANAGED_BY)
        .chain(pairs.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn quantity(value: impl Into<String>) -> Quantity {
    Quantity(value.into())
}

/// The workspace's namespace.
pub fn namespace_object(workspace_id: Uuid) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_of(workspace_id)),
            labels: Some(labels(&[(WORKSPACE_LABEL, &workspace_id.to_string())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The namespace's quota: a ceiling well above the workspace's slots (40 included plus bought,
/// at most 64 vCPUs each), so a runaway bug cannot take the cluster.
pub fn quota_object(workspace_id: Uuid) -> ResourceQuota {
    let hard = [
        ("pods", "400"),
        ("count/jobs.batch", "400"),
        ("limits.cpu", "12800"),
        ("limits.memory", "51200Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), quantity(v)))
    .collect();
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some("tenki-runners".to_owned()),
            namespace: Some(namespace_of(workspace_id)),
            labels: Some(labels(&[(WORKSPACE_LABEL, &workspace_id.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// No ingress to runner pods at all: a runner only dials out (to GitHub).
pub fn deny_ingress_object(workspace_id: Uuid) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some("deny-all-ingress".to_owned()),
            namespace: Some(namespace_of(workspace_id)),
            labels: Some(labels(&[(WORKSPACE_LABEL, &workspace_id.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: None,
            egress: None,
        }),
    }
}

/// The runner's parent object.
pub fn job_object(spec: &RunnerSpec, image: &str) -> Job {
    let workspace = spec.workspace_id.to_string();
    let object_labels = labels(&[
        (RUNNER_LABEL, &spec.name),
        (WORKSPACE_LABEL, &workspace),
        ("tenki.dev/label", &spec.label),
    ]);
    let cpu = spec.vcpus.to_string();
    let memory = format!("{}Gi", spec.memory_gb);
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", cpu.as_str()),
        ("memory", memory.as_str()),
        ("ephemeral-storage", EPHEMERAL_STORAGE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), quantity(v)))
    .collect();
    Job {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(object_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(crate::metering::MAX_JOB_LIFETIME.num_seconds()),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(object_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    containers: vec![Container {
                        name: "runner".to_owned(),
                        image: Some(image.to_owned()),
                        command: Some(vec!["/home/runner/run.sh".to_owned()]),
                        env: Some(vec![EnvVar {
                            name: JIT_CONFIG_ENV.to_owned(),
                            value_from: Some(EnvVarSource {
                                secret_key_ref: Some(SecretKeySelector {
                                    name: spec.name.clone(),
                                    key: JIT_CONFIG_KEY.to_owned(),
                                    optional: Some(false),
                                }),
                                ..EnvVarSource::default()
                            }),
                            ..EnvVar::default()
                        }]),
                        resources: Some(ResourceRequirements {
                            requests: Some(resources.clone()),
                            limits: Some(resources),
                            ..ResourceRequirements::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The Secret with the JIT configuration, owned by the runner's Job (deleted with it).
pub fn secret_object(spec: &RunnerSpec, job_uid: &str, jit_config: &SecretString) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels(&[
                (RUNNER_LABEL, &spec.name),
                (WORKSPACE_LABEL, &spec.workspace_id.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".to_owned(),
                kind: "Job".to_owned(),
                name: spec.name.clone(),
                uid: job_uid.to_owned(),
                block_owner_deletion: Some(true),
                controller: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            JIT_CONFIG_KEY.to_owned(),
            jit_config.expose_secret().to_owned(),
        )])),
        ..Secret::default()
    }
}

/// A Kubernetes refusal as a provisioning error: 422 (invalid) and 403 (quota, forbidden) are
/// not fixed by trying again at once; anything else is.
fn refusal(what: &str, error: kube::Error) -> ProvisionError {
    match error {
        kube::Error::Api(status) => {
            let reason = format!("{what}: {} ({})", status.message, status.code);
            match status.code {
                422 => ProvisionError::Invalid(reason),
                403 if status.message.contains("exceeded quota") => ProvisionError::Quota(reason),
                403 => ProvisionError::Invalid(reason),
                _ => ProvisionError::Unavailable(reason),
            }
        }
        other => ProvisionError::Unavailable(format!("{what}: {other}")),
    }
}

fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

async fn create_unless_exists<K>(api: &Api<K>, object: &K, what: &str) -> Result<(), ProvisionError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(refusal(what, e)),
    }
}

impl Provisioner for Kubernetes {
    async fn prepare_workspace(&self, workspace_id: Uuid) -> Result<String, ProvisionError> {
        let namespace = namespace_of(workspace_id);
        if self.prepared().contains(&workspace_id) {
            return Ok(namespace);
        }
        create_unless_exists(
            &Api::<Namespace>::all(self.client.clone()),
            &namespace_object(workspace_id),
            "creating the workspace's namespace",
        )
        .await?;
        create_unless_exists(
            &Api::<ResourceQuota>::namespaced(self.client.clone(), &namespace),
            &quota_object(workspace_id),
            "creating the namespace's quota",
        )
        .await?;
        create_unless_exists(
            &Api::<NetworkPolicy>::namespaced(self.client.clone(), &namespace),
            &deny_ingress_object(workspace_id),
            "creating the namespace's network policy",
        )
        .await?;
        self.prepared().insert(workspace_id);
        Ok(namespace)
    }

    async fn create_runner(
        &self,
        spec: &RunnerSpec,
        jit_config: &SecretString,
    ) -> Result<(), ProvisionError> {
        let jobs = Api::<Job>::namespaced(self.client.clone(), &spec.namespace);
        let job = match jobs
            .create(&PostParams::default(), &job_object(spec, &self.image))
            .await
        {
            Ok(job) => job,
            // A retried task: the Job is there already; make sure its Secret is too.
            Err(e) if already_exists(&e) => jobs
                .get(&spec.name)
                .await
                .map_err(|e| refusal("reading the runner's Job", e))?,
            Err(e) => {
                if not_found(&e) {
                    // The namespace was deleted behind this process's back: make it again next time.
                    self.prepared().remove(&spec.workspace_id);
                }
                return Err(refusal("creating the runner's Job", e));
            }
        };
        let uid = job.metadata.uid.unwrap_or_default();
        create_unless_exists(
            &Api::<Secret>::namespaced(self.client.clone(), &spec.namespace),
            &secret_object(spec, &uid, jit_config),
            "creating the runner's Secret",
        )
        .await
    }

    async fn runner_exists(&self, namespace: &str, name: &str) -> Result<bool, ProvisionError> {
        Api::<Job>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map(|job| job.is_some())
            .map_err(|e| refusal("reading the runner's Job", e))
    }

    async fn delete_runner(&self, namespace: &str, name: &str) -> Result<(), ProvisionError> {
        let jobs = Api::<Job>::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match jobs.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(refusal("deleting the runner's Job", e)),
        }
    }

    async fn observe(&self) -> Result<Vec<ObservedRunner>, ProvisionError> {
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let params = ListParams::default().labels(&selector);
        let jobs = Api::<Job>::all(self.client.clone())
            .list(&params)
            .await
            .map_err(|e| refusal("listing runner Jobs", e))?;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&params)
            .await
            .map_err(|e| refusal("listing runner pods", e))?;
        let mut observed = Vec::new();
        for job in jobs.items {
            let (Some(name), Some(namespace)) =
                (job.metadata.name.clone(), job.metadata.namespace.clone())
            else {
                continue;
            };
            let workspace_id = job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(WORKSPACE_LABEL))
                .and_then(|w| w.parse().ok());
            let pod = pods.items.iter().find(|p| {
                p.metadata.namespace.as_deref() == Some(&namespace)
                    && p.metadata.labels.as_ref().and_then(|l| l.get(RUNNER_LABEL)) == Some(&name)
            });
            let job_failed = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|conditions| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == "Failed" && c.status == "True")
                })
                .map(|c| {
                    c.message
                        .clone()
                        .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
                });
            let failure = pod
                .and_then(pod_failure)
                .or(job_failed.map(PodFailure::Failed));
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0;
            let created_at = job
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0));
            observed.push(ObservedRunner {
                namespace,
                name,
                workspace_id,
                has_pod: pod.is_some(),
                succeeded,
                failure,
                created_at,
            });
        }
        Ok(observed)
    }
}

/// Why a pod could not start or stopped with an error, from its status.
fn pod_failure(pod: &Pod) -> Option<PodFailure> {
    let status = pod.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()))
        .find(|w| {
            matches!(
                w.reason.as_deref(),
                Some(
                    "ErrImagePull"
                        | "ImagePullBackOff"
                        | "InvalidImageName"
                        | "CreateContainerConfigError"
                )
            )
        });
    if let Some(waiting) = waiting {
        let message = waiting.message.clone().unwrap_or_default();
        return Some(match waiting.reason.as_deref() {
            Some("CreateContainerConfigError") => PodFailure::Invalid(message),
            _ => PodFailure::ImagePull(message),
        });
    }
    (status.phase.as_deref() == Some("Failed")).then(|| {
        PodFailure::Failed(
            status
                .message
                .clone()
                .or_else(|| status.reason.clone())
                .unwrap_or_else(|| "the runner exited with an error".to_owned()),
        )
    })
}
