"""deploy/kubernetes/: what a cluster admin applies is valid, locked down and consistent.

Every object is checked against the pinned Kubernetes version's schema in
strict mode (an unknown or misspelt field is an error, as the API server's
strict field validation makes it), and then for what a schema cannot see:
the RBAC grants no more than the backend needs, every pod runs non-root
with nothing to escalate to, beat is alone, the component labels are the
ones the users' NetworkPolicy admits, Services and the Ingress point at
what exists, and the kustomizations list every file. No cluster needed:
the whole module runs in a few seconds.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SETTINGS = ROOT / "aladdin" / "settings.py"

# The Kubernetes version the manifests (and the backend's objects) are
# validated against: the API of the `kubernetes` client in requirements.txt.
KUBERNETES_VERSION = "1.34.0"

NAMESPACE = "aladdin"
SERVICE_ACCOUNT = "aladdin-portal"
IMAGE = "registry.example.edu/aladdin/portal:0.1.0"
# The non-root uid the Dockerfile creates and the pods run as.
UID = 10001
# The long-running processes, one Deployment each (Procfile.dev less the
# local agent and the bundled Redis).
COMPONENTS = {"web", "worker", "beat", "ssh-gateway", "port-proxy"}
# Each user namespace's NetworkPolicy admits ingress from pods of the
# portal namespace with exactly these component labels (the backend's
# manifests.INGRESS_COMPONENTS).
INGRESS_COMPONENTS = {"ssh-gateway", "port-proxy"}
# Files that are not applied (placeholders only) and so in no kustomization.
TEMPLATES = {"secret.template.yaml"}

# What the portal's ClusterRole grants, (API group, resource) -> verbs: what
# the cluster driver does and nothing else (rbac.yaml says why for each).
EXPECTED_GRANTS = {
    ("", "namespaces"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "nodes"): {"get", "list", "watch"},
    ("", "nodes/proxy"): {"get"},
    ("", "pods"): {"get", "list", "watch", "create", "delete"},
    ("", "pods/log"): {"get"},
    ("", "pods/exec"): {"get", "create"},
    ("", "pods/portforward"): {"get", "create"},
    ("", "services"): {"get", "list", "watch", "create", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "resourcequotas"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "limitranges"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"get", "list", "watch"},
    ("networking.k8s.io", "networkpolicies"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("metrics.k8s.io", "pods"): {"get", "list"},
}


# --- loading -------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


@functools.cache
def _documents() -> tuple[tuple[str, int, dict], ...]:
    """(file relative to deploy/kubernetes, index in the file, object) for every document."""
    found = []
    for path in _yaml_files():
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                found.append((str(path.relative_to(DEPLOY)), index, doc))
    return tuple(found)


def _objects(kind: str | None = None) -> list[dict]:
    return [
        doc
        for _, _, doc in _documents()
        if doc["kind"] != "Kustomization" and (kind is None or doc["kind"] == kind)
    ]


def _one(kind: str, name: str) -> dict:
    (found,) = [o for o in _objects(kind) if o["metadata"]["name"] == name]
    return found


def _workloads() -> list[dict]:
    """Deployments and the migrate Job: everything that runs pods."""
    return _objects("Deployment") + _objects("Job")


def _containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def _component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def _deployment(component: str) -> dict:
    (found,) = [d for d in _objects("Deployment") if _component(d) == component]
    return found


def _config() -> dict[str, str]:
    return _one("ConfigMap", "aladdin-config")["data"]


# --- schema --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,index",
    [(p, i) for p, i, doc in _documents() if doc["kind"] != "Kustomization"],
)
def test_every_manifest_passes_strict_validation(path, index):
    (doc,) = [d for p, i, d in _documents() if (p, i) == (path, index)]
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_is_strict_about_unknown_fields():
    # The check above is worth something only if a misspelt field fails it.
    web = copy.deepcopy(_deployment("web"))
    web["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)


def test_every_object_lives_in_the_portal_namespace_or_is_cluster_scoped():
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in _objects():
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "aladdin"


# --- RBAC ----------------------------------------------------------------------------


def _rules() -> list[dict]:
    return [rule for role in _objects("ClusterRole") + _objects("Role") for rule in role["rules"]]


def test_rbac_grants_no_wildcard_and_nothing_on_secrets():
    for rule in _rules():
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule.get(field, [])), rule
        assert "secrets" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule


def test_rbac_grants_exactly_what_the_backend_needs():
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in _rules():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_GRANTS


def test_the_role_is_bound_to_the_portal_service_account_only():
    (binding,) = _objects("ClusterRoleBinding")
    (role,) = _objects("ClusterRole")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]
    account = _one("ServiceAccount", SERVICE_ACCOUNT)
    # Only the pods that say so get its token.
    assert account["automountServiceAccountToken"] is False


def test_the_admission_policy_fences_the_portal_account_into_user_namespaces():
    (policy,) = _objects("ValidatingAdmissionPolicy")
    (binding,) = _objects("ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (condition,) = policy["spec"]["matchConditions"]
    assert f"'system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}'" in condition["expression"]
    # Every resource the role lets the portal write (or exec into) is fenced.
    fenced = {
        (group, resource)
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    writable = {
        key
        for key, verbs in EXPECTED_GRANTS.items()
        if verbs & {"create", "patch", "update", "delete"} and key != ("", "nodes/proxy")
    }
    assert writable <= fenced
    prefix = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}["prefix"]
    assert prefix == "'u-'"


# --- pods ----------------------------------------------------------------------------


def _effective(pod_spec: dict, container: dict, field: str):
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[field] if field in own else pod_spec.get("securityContext", {}).get(field)


@pytest.mark.parametrize("name", [w["metadata"]["name"] for w in _workloads()])
def test_every_container_runs_locked_down(name):
    (workload,) = [w for w in _workloads() if w["metadata"]["name"] == name]
    pod = workload["spec"]["template"]["spec"]
    for container in _containers(pod):
        label = f"{name}/{container['name']}"
        assert _effective(pod, container, "runAsNonRoot") is True, label
        assert _effective(pod, container, "runAsUser") == UID, label
        assert _effective(pod, container, "runAsGroup") == UID, label
        assert _effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, label
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, label
        assert context["readOnlyRootFilesystem"] is True, label
        assert context["capabilities"] == {"drop": ["ALL"]}, label
        assert not context.get("privileged"), label
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, (label, bound)
        assert container["image"] == IMAGE, label
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


@pytest.mark.parametrize("name", [w["metadata"]["name"] for w in _workloads()])
def test_what_a_process_writes_goes_to_a_volume(name):
    # A read-only root filesystem: ALADDIN_VAR_DIR (the settings chmod and
    # mkdir under it at import) and /tmp are writable emptyDirs.
    (workload,) = [w for w in _workloads() if w["metadata"]["name"] == name]
    pod = workload["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(_config()["ALADDIN_VAR_DIR"]) in empty_dirs, container["name"]
        assert mounts.get("/tmp") in empty_dirs, container["name"]


def test_no_pod_gets_service_environment_variables():
    # Service links would name the Services' ports as the portal's own
    # settings: aladdin-web -> ALADDIN_WEB_PORT=tcp://..., aladdin-ssh ->
    # ALADDIN_SSH_PORT=tcp://... (numbers to the settings: a refused start).
    for workload in _workloads():
        assert workload["spec"]["template"]["spec"]["enableServiceLinks"] is False
    service_variables = {
        service["metadata"]["name"].upper().replace("-", "_") + "_PORT"
        for service in _objects("Service")
    }
    assert {"ALADDIN_WEB_PORT", "ALADDIN_SSH_PORT"} <= service_variables & _settings_names()


def test_web_copies_the_images_static_files_to_where_the_settings_look():
    # STATIC_ROOT is ALADDIN_VAR_DIR/staticfiles: collected into the image
    # under the build's ALADDIN_VAR_DIR, copied into the pod's.
    (build_var_dir,) = re.findall(r"ALADDIN_VAR_DIR=(\S+)", (DEPLOY / "Dockerfile").read_text())
    (init,) = _deployment("web")["spec"]["template"]["spec"]["initContainers"]
    assert init["command"] == [
        "cp",
        "-R",
        f"{build_var_dir}/staticfiles",
        _config()["ALADDIN_VAR_DIR"] + "/",
    ]


def test_only_the_portal_processes_get_an_api_token():
    for component in COMPONENTS:
        pod = _deployment(component)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == SERVICE_ACCOUNT, component
        assert pod["automountServiceAccountToken"] is True, component
    migrate = _one("Job", "aladdin-migrate")["spec"]["template"]["spec"]
    assert migrate["automountServiceAccountToken"] is False
    assert migrate.get("serviceAccountName", "default") != SERVICE_ACCOUNT


def test_there_is_one_deployment_per_process_with_its_component_label():
    assert sorted(_component(d) for d in _objects("Deployment")) == sorted(COMPONENTS)
    for deployment in _objects("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels == {
            "app.kubernetes.io/name": "aladdin",
            "app.kubernetes.io/component": _component(deployment),
        }
        assert deployment["spec"]["selector"] == {"matchLabels": labels}


def test_beat_runs_alone_and_is_never_doubled_by_a_rollout():
    beat = _deployment("beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"][:3] == [
        "celery",
        "--app=aladdin",
        "beat",
    ]


def test_web_is_probed_on_healthz_and_kept_available():
    web = _deployment("web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["uvicorn", "aladdin.asgi:application"]
    assert "--no-proxy-headers" in container["command"]
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/healthz"
    liveness = " ".join(container["livenessProbe"]["exec"]["command"])
    assert '"/healthz"' in liveness
    # Django answers 400 to a Host outside ALLOWED_HOSTS: the probes' must be in it.
    (host,) = [h["value"] for h in readiness["httpHeaders"] if h["name"] == "Host"]
    allowed = _config()["ALLOWED_HOSTS"].split(",")
    assert host in allowed
    assert f'"Host": "{host}"' in liveness
    (budget,) = _objects("PodDisruptionBudget")
    assert budget["spec"]["selector"] == web["spec"]["selector"]
    assert budget["spec"]["minAvailable"] < web["spec"]["replicas"]


@pytest.mark.parametrize("name", [w["metadata"]["name"] for w in _workloads()])
def test_python_in_exec_probes_compiles(name):
    (workload,) = [w for w in _workloads() if w["metadata"]["name"] == name]
    for container in workload["spec"]["template"]["spec"]["containers"]:
        for probe in ("readinessProbe", "livenessProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command and command[:2] == ["python", "-c"]:
                compile(command[2], f"{name}/{probe}", "exec")


def test_the_ssh_probe_looks_for_the_port_the_gateway_listens_on():
    (container,) = _deployment("ssh-gateway")["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["ALADDIN_SSH_PORT"]) == port["containerPort"]
    assert env["ALADDIN_SSH_BIND"] == "0.0.0.0"
    hex_port = f":{port['containerPort']:04X}"
    for probe in ("readinessProbe", "livenessProbe"):
        assert hex_port in container[probe]["exec"]["command"][2]


def test_the_ssh_gateway_gets_its_host_keys_from_the_secret_writable():
    pod = _deployment("ssh-gateway")["spec"]["template"]["spec"]
    (secret,) = [v for v in pod["volumes"] if "secret" in v]
    assert secret["secret"]["secretName"] == "aladdin-ssh-host-keys"
    assert not secret["secret"].get("optional")
    (init,) = pod["initContainers"]
    keys_dir = _config()["ALADDIN_SSH_HOST_KEYS_DIR"]
    assert keys_dir in init["command"][2]
    for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        assert f"{name} " in init["command"][2] and f"{name}.pub" in init["command"][2]


def test_migrate_runs_the_migrations_and_the_catalog_and_nothing_is_retried_blindly():
    job = _one("Job", "aladdin-migrate")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "manage.py migrate --noinput" in script and "manage.py load_catalog" in script
    assert job["spec"]["backoffLimit"] == 0


# --- network: labels, Services, Ingress -----------------------------------------------


def test_the_components_user_namespaces_admit_are_labelled_as_the_policy_expects():
    namespace = _one("Namespace", NAMESPACE)
    assert namespace["metadata"]["name"] == _config()["ALADDIN_KUBERNETES_PORTAL_NAMESPACE"]
    for component in INGRESS_COMPONENTS:
        labels = _deployment(component)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == component
    others = COMPONENTS - INGRESS_COMPONENTS
    assert not {_component(_deployment(c)) for c in others} & INGRESS_COMPONENTS


def _selected(service: dict) -> list[dict]:
    selector = service["spec"]["selector"]
    return [
        d
        for d in _objects("Deployment")
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_each_service_selects_one_deployment_and_a_port_it_names():
    for service in _objects("Service"):
        (deployment,) = _selected(service)
        ports = {
            p["name"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]


def test_the_ssh_service_is_a_load_balancer_on_22_keeping_client_addresses():
    service = _one("Service", "aladdin-ssh")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert [p["port"] for p in service["spec"]["ports"]] == [22]
    assert _config()["ALADDIN_SSH_PUBLIC_PORT"] == "22"


def test_the_ingress_serves_the_portal_host_and_the_wildcard_ports_host():
    services = {s["metadata"]["name"]: s for s in _objects("Service")}
    hosts = {}
    for ingress in _objects("Ingress"):
        tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls_hosts
            (path,) = rule["http"]["paths"]
            backend = path["backend"]["service"]
            service = services[backend["name"]]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
            hosts[rule["host"]] = _component(_selected(service)[0])
    portal = _config()["SITE_URL"].removeprefix("https://")
    assert hosts == {portal: "web", f"*.{_config()['ALADDIN_PORTS_DOMAIN']}": "port-proxy"}
    # Another registrable domain than the portal's (docs: cookies).
    assert not portal.endswith(_config()["ALADDIN_PORTS_DOMAIN"])


# --- settings: ConfigMap and Secret --------------------------------------------------


def _settings_names() -> set[str]:
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', SETTINGS.read_text()))


def _manifest_references() -> set[str]:
    """Variables the manifests expand themselves ($(NAME) in a command)."""
    return {
        name
        for workload in _workloads()
        for container in _containers(workload["spec"]["template"]["spec"])
        for part in container.get("command", [])
        for name in re.findall(r"\$\(([A-Z0-9_]+)\)", part)
    }


def _kubernetes_backend_key(name: str) -> bool:
    return name.startswith("ALADDIN_KUBERNETES_") or name == "ALADDIN_KUBECONFIG"


def test_every_setting_the_manifests_give_is_one_the_portal_reads():
    secret = _one("Secret", "aladdin-secrets")["stringData"]
    names = (set(_config()) | set(secret)) - {k for k in _config() if _kubernetes_backend_key(k)}
    unknown = names - _settings_names() - _manifest_references()
    assert not unknown, f"not read by aladdin/settings.py: {sorted(unknown)}"
    assert _manifest_references() <= set(_config())


def test_the_kubernetes_backend_settings_are_the_ones_settings_read():
    given = {k for k in _config() if _kubernetes_backend_key(k)}
    assert given <= _settings_names()


def test_secrets_stay_out_of_the_configmap_and_the_template_holds_placeholders_only():
    secretish = re.compile(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL|EMAIL_URL")
    assert not [k for k in _config() if secretish.search(k)]
    secret = _one("Secret", "aladdin-secrets")["stringData"]
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret)
    assert all("REPLACE" in value for value in secret.values())


def test_every_pod_reads_the_same_settings():
    for workload in _workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["envFrom"] == [
                {"configMapRef": {"name": "aladdin-config"}},
                {"secretRef": {"name": "aladdin-secrets"}},
            ], workload["metadata"]["name"]


# --- kustomize and the image ---------------------------------------------------------


def _kustomizations() -> dict[Path, dict]:
    return {
        path.parent: yaml.safe_load(path.read_text())
        for path in sorted(DEPLOY.rglob("kustomization.yaml"))
    }


def test_the_kustomizations_list_every_file():
    listed = set()
    for directory, kustomization in _kustomizations().items():
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            assert (directory / resource).is_file(), resource
            listed.add(directory / resource)
    everything = {p for p in _yaml_files() if p.name != "kustomization.yaml"}
    templates = {DEPLOY / t for t in TEMPLATES}
    assert listed == everything - templates
    # The migrate Job is applied on its own, before the rollout.
    assert "migrate/job.yaml" not in _kustomizations()[DEPLOY]["resources"]


def test_every_kustomization_runs_the_same_release():
    name, tag = IMAGE.rsplit(":", 1)
    for kustomization in _kustomizations().values():
        assert kustomization["images"] == [{"name": name, "newTag": tag}]


def test_the_image_is_built_non_root_with_the_uid_the_pods_run_as():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12-slim$", dockerfile, re.M)
    assert "pip install -r requirements.txt" in dockerfile
    assert "manage.py collectstatic --noinput" in dockerfile
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user == f"{UID}:{UID}"
    ignored = set((DEPLOY / "Dockerfile.dockerignore").read_text().split())
    # .env is read by the settings at import: it must never reach an image.
    assert {".env", ".git", ".venv", "var"} <= ignored


def test_the_image_carries_the_debugger_the_makefile_pins_for_gpu_debug():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (version,) = re.findall(r"^ARG DEBUGPY_VERSION=(\S+)$", dockerfile, re.M)
    (pinned,) = re.findall(r"^DEBUGPY_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert version == pinned
    assert "--target /opt/aladdin/tools/debugpy" in dockerfile
    # The backend copies it from the portal's own image.
    assert _config()["ALADDIN_KUBERNETES_TOOLS_IMAGE"] == IMAGE


# --- what the backend creates --------------------------------------------------------


def _backend_examples() -> list[dict]:
    from aladdin.cluster.kubernetes.manifests import examples

    return examples()


def test_every_object_the_backend_creates_passes_strict_validation():
    objects = _backend_examples()
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_backend_only_creates_what_the_role_lets_it():
    creatable = {resource for (_, resource), verbs in EXPECTED_GRANTS.items() if "create" in verbs}
    plural = {
        "Namespace": "namespaces",
        "Pod": "pods",
        "Service": "services",
        "ConfigMap": "configmaps",
        "PersistentVolumeClaim": "persistentvolumeclaims",
        "ResourceQuota": "resourcequotas",
        "LimitRange": "limitranges",
        "NetworkPolicy": "networkpolicies",
    }
    for obj in _backend_examples():
        assert plural.get(obj["kind"]) in creatable, obj["kind"]
        namespace = obj["metadata"].get("namespace", obj["metadata"]["name"])
        # The admission policy's fence: users' namespaces only.
        assert namespace.startswith(_config()["ALADDIN_KUBERNETES_NAMESPACE_PREFIX"])


def _matches(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def test_the_users_network_policy_admits_exactly_the_gateway_and_the_proxy():
    # The namespace's own policy; a Run Task's group policy only lets its workers reach each other.
    (policy,) = [
        o
        for o in _backend_examples()
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "isolation"
    ]
    namespace = _one("Namespace", NAMESPACE)
    # The API server adds this label to every namespace.
    namespace_labels = {
        **namespace["metadata"]["labels"],
        "kubernetes.io/metadata.name": namespace["metadata"]["name"],
    }
    admitted = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if not _matches(peer["namespaceSelector"], namespace_labels):
                continue
            for deployment in _objects("Deployment"):
                if _matches(
                    peer["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]
                ):
                    admitted.add(_component(deployment))
    assert admitted == INGRESS_COMPONENTS


def test_the_manifests_settings_pass_the_deploy_checks(tmp_path):
    # The ConfigMap and the Secret's keys, as a pod sees them, make a
    # production configuration `manage.py check --deploy` accepts (the
    # placeholders that must be filled in are filled with stand-ins).
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env.update(_config())
    env.update(_one("Secret", "aladdin-secrets")["stringData"])
    env.update(
        {
            "HOME": str(tmp_path),
            "ALADDIN_VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "stand-in-" + "k" * 50,
            "ALIYUN_SMS_SIGN_NAME": "Aladdin",
            "ALIYUN_SMS_TEMPLATE_CODE": "SMS_0",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
