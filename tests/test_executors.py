"""Choosing the job's executor (`create --executor`), and Kubernetes through dagster-k8s's own code.

No cluster runs here, so the Kubernetes checks use dagster-k8s itself: each op's `dagster-k8s/config` tag goes
through its config classes (`get_user_defined_k8s_config`, the schema behind `UserDefinedDagsterK8sConfig`),
and each op's Job is built by `construct_dagster_k8s_job` from the container context `k8s_job_executor`
builds out of its own config (the executor's config comes from the generated file, resolved by Dagster). No
Docker daemon runs here either: dagster-docker's own executor is built from the generated job's resolved config,
and each op's container is described by docker-py's own request builder from what its step handler holds. The
Celery executor runs for real in tests/e2e/test_celery.py.
"""

import json
import os
import runpy

import pytest
from dagster import validate_run_config

from tests.helpers import flow_path

S3_TOP = ["--datastore=s3"]
S3_ENV = {"METAFLOW_DATASTORE_SYSROOT_S3": "s3://mf-bucket/metaflow"}


def _load(defs):
    return runpy.run_path(defs)["defs"]


def _job(defs, name):
    return _load(defs).resolve_job_def(name)


def _execution(job):
    """The executor's config of a run of ``job`` launched with no run config: create's defaults, resolved."""
    (config,) = validate_run_config(job, {})["execution"].values()
    return config


def _create(project, fixture, args=(), top=(), out="defs.py", check=True, **env):
    return project.create(flow_path(fixture), out=out, args=["--code-package", "never", *args], top=top,
                          check=check, **env)


def test_default_executor_is_unchanged(project):
    defs, _ = _create(project, "foreach_flow.py")
    assert _job(defs, "ForeachFlow").executor_def.name == "metaflow_threads"
    assert '"executor": {"kind": "threads"' in open(defs).read()


def test_multiprocess_executor_with_launchpad_defaults(project):
    defs, _ = _create(project, "foreach_flow.py", ["--executor", "multiprocess"])
    job = _job(defs, "ForeachFlow")
    assert job.executor_def.name == "metaflow_multiprocess"
    assert _execution(job)["max_concurrent"] == 16


def test_celery_executor_defaults_and_queue(project, monkeypatch):
    config = {"broker": {"env": "MY_BROKER"}, "backend": "redis://127.0.0.1:1/0", "retries": {"enabled": {}}}
    defs, _ = _create(project, "foreach_flow.py", ["--executor", "celery", "--executor-config", json.dumps(config),
                                                    "--celery-queue", "body1=big"])
    job = _job(defs, "ForeachFlow")
    assert job.executor_def.name == "metaflow_celery"
    fields = job.executor_def.config_schema.config_type.fields
    # The launchpad shows create's values as the defaults of Dagster's own celery executor config.
    assert fields["broker"].default_value == {"env": "MY_BROKER"}
    assert fields["backend"].default_value == "redis://127.0.0.1:1/0"
    assert set(fields) == {"broker", "backend", "include", "config_source", "retries"}
    monkeypatch.setenv("MY_BROKER", "redis://127.0.0.1:2/0")
    execution = _execution(job)
    assert execution["broker"] == "redis://127.0.0.1:2/0" and execution["retries"] == {"enabled": {}}
    tags = {node.name: node.tags for node in job.graph.node_defs}
    assert tags["body1"]["dagster-celery/queue"] == "big"
    assert "dagster-celery/queue" not in tags["body2"]
    # Ops share no disk: their outputs go through the Metaflow datastore.
    assert "TokenStore" in type(job.resource_defs["io_manager"].resource_fn(None)).__name__


@pytest.mark.parametrize("args, message", [
    (["--executor", "spark"], "Invalid value for '--executor': invalid choice: spark"),
    (["--executor", "celery", "--executor-config", '{"brokr": "x"}'],
     "the metaflow_celery executor has no config brokr (it takes backend, broker, config_source, include, retries)"),
    (["--executor", "celery", "--executor-config", '{"retries": 5}'], "--executor-config retries: 5 is not a valid"),
    (["--executor", "celery", "--executor-config", "{broker"], "--executor-config is not JSON"),
    (["--executor", "celery", "--executor-config", "[1]"], "--executor-config must be a JSON object"),
    (["--celery-queue", "body1=big"],
     "step 'body1': --celery-queue routes the step to a Celery queue, but the job's executor is threads"),
    (["--executor", "celery", "--celery-queue", "nope=big"], "--celery-queue nope=big: the flow has no step 'nope'"),
    (["--executor", "k8s"], "the k8s executor runs every step in a pod of its own, which cannot reach the local "
                            "datastore"),
    (["--executor", "docker"], "the docker executor runs every step in a container of its own, which cannot reach "
                               "the local datastore"),
])
def test_bad_executor_options_are_one_clear_error(project, args, message):
    defs, res = _create(project, "foreach_flow.py", args, check=False)
    assert res.returncode != 0, res
    assert message in res.stderr, res
    assert not os.path.exists(defs)


def _k8s_job_specs(job, image="registry.example/default:1"):
    """{op name: Kubernetes Job (a dict, as the API server gets it)} for each op of ``job``, built as
    k8s_job_executor's step handler builds them: the executor's container context from its resolved config,
    merged with the op's dagster-k8s/config tag, then construct_dagster_k8s_job."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )
    from kubernetes.client import ApiClient

    cfg = _execution(job)
    context = K8sContainerContext(
        env_vars=cfg.get("env_vars"), env_secrets=cfg.get("env_secrets"), namespace=cfg.get("job_namespace"),
        service_account_name=cfg.get("service_account_name"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg.get("step_k8s_config", {})),
    )
    specs = {}
    api = ApiClient()  # its serializer: the Job as the API server would get it
    for node in job.graph.node_defs:
        user = get_user_defined_k8s_config(node.tags)
        ctx = context.merge(K8sContainerContext(run_k8s_config=user))
        # What the Helm chart's K8sRunLauncher gives a step's Job (the instance's config map, its Dagster home).
        job_config = DagsterK8sJobConfig(job_image=cfg.get("job_image") or image, dagster_home="/opt/dagster/dagster_home",
                                         instance_config_map="dagster-instance")
        spec = construct_dagster_k8s_job(
            job_config=job_config, args=["dagster", "api", "execute_step"], job_name="dagster-step-" + node.name,
            pod_name="dagster-step-" + node.name, component="step_worker", user_defined_k8s_config=ctx.run_k8s_config,
            labels={"dagster/job": job.name, "dagster/op": node.name},
            env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": job.name},
                      {"name": "DAGSTER_RUN_STEP_KEY", "value": node.name}],
        )
        specs[node.name] = (api.sanitize_for_serialization(spec), ctx.namespace)
    return specs


def test_kubernetes_tags_validate_and_build_jobs_with_dagster_k8s(project, monkeypatch):
    from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

    defs, res = _create(project, "kube_flow.py", top=S3_TOP, **S3_ENV)
    secret = "s3-" + "x" * 24
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)          # allowlisted prefix, but a credential
    monkeypatch.setenv("METAFLOW_SERVICE_HEADERS", '{"x-api-key": "hdr-secret"}')  # likewise
    monkeypatch.setenv("METAFLOW_DEFAULT_METADATA", "local")     # allowlisted: forwarded by name
    monkeypatch.setenv("UNLISTED_VARIABLE", "not-for-pods")      # not allowlisted
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", S3_ENV["METAFLOW_DATASTORE_SYSROOT_S3"])
    job = _job(defs, "KubeFlow")
    assert job.executor_def.name == "metaflow_k8s"
    tags = {node.name: node.tags for node in job.graph.node_defs}
    for name, t in tags.items():
        assert t["metaflow/step"] == name
        if USER_DEFINED_K8S_CONFIG_KEY in t:
            # dagster-k8s's own parsing: validated against USER_DEFINED_K8S_JOB_CONFIG_SCHEMA (raises if not)
            parsed = get_user_defined_k8s_config(t)
            assert parsed == UserDefinedDagsterK8sConfig.from_dict(json.loads(t[USER_DEFINED_K8S_CONFIG_KEY]))
            assert parsed.container_config, name
    assert USER_DEFINED_K8S_CONFIG_KEY not in tags["join"] and USER_DEFINED_K8S_CONFIG_KEY not in tags["end"]

    specs = _k8s_job_specs(job)
    assert {ns for _, ns in specs.values()} == {"flows"}  # @kubernetes(namespace=...) is the executor's
    for name, (spec, _) in specs.items():
        pod = spec["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["dagster", "api", "execute_step"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        forwarded = set(env) - {"DAGSTER_RUN_JOB_NAME", "DAGSTER_RUN_STEP_KEY", "DAGSTER_HOME"}
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"  # dagster-k8s's, not this machine's
        assert "METAFLOW_DEFAULT_METADATA" in forwarded and env["METAFLOW_DEFAULT_METADATA"] == "local"
        assert all(n.startswith(("METAFLOW_", "AWS_", "LANG", "LC_", "TZ", "AZURE_", "GOOGLE_CLOUD")) for n in forwarded), (
            sorted(forwarded))
        text = json.dumps(spec)
        assert secret not in text and "hdr-secret" not in text and "not-for-pods" not in text, name
        assert "AWS_SECRET_ACCESS_KEY" not in forwarded and "METAFLOW_SERVICE_HEADERS" not in forwarded

    start = specs["start"][0]["spec"]["template"]["spec"]["containers"][0]
    # @kubernetes with no values: @resources gives cpu and memory; the image is the executor's.
    assert start["resources"]["requests"] == {"cpu": "3", "memory": "6000M", "ephemeral-storage": "10240M"}
    assert start["image"] == "registry.example/default:1"
    train_pod = specs["train"][0]["spec"]["template"]
    train = train_pod["spec"]["containers"][0]
    assert train["image"] == "registry.example/flows:1"
    assert train["resources"]["requests"] == {"cpu": "4", "memory": "4096M", "ephemeral-storage": "10240M"}
    assert train["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert train["envFrom"] == [{"secretRef": {"name": "aws-creds"}}]
    assert {"name": "datasets", "mountPath": "/data"} in train["volumeMounts"]
    assert {"name": "dhsm", "mountPath": "/dev/shm"} in train["volumeMounts"]
    assert train_pod["spec"]["serviceAccountName"] == "metaflow"
    assert train_pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert train_pod["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in train_pod["spec"]["volumes"]}
    assert volumes["datasets"]["persistentVolumeClaim"] == {"claimName": "datasets"}
    assert volumes["dhsm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "512Mi"}
    assert train_pod["metadata"]["labels"]["team"] == "ml"
    assert train_pod["metadata"]["annotations"]["owner"] == "alice"


def _docker_containers(job):
    """{op name: the body of Docker's create-container request} for each op of ``job``, as docker_executor's
    step handler creates them: dagster-docker builds the executor (its DockerStepHandler) from the executor's
    resolved config; the op's environment is the handler's env_vars (values read here, as on the run worker)
    plus the step's two DAGSTER_RUN_ variables; docker-py turns the container's arguments into the request."""
    import docker
    from dagster import DagsterInstance, InitExecutorContext
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.utils import parse_env_var
    from docker.models.containers import _create_container_args

    with DagsterInstance.ephemeral() as instance:
        executor = job.executor_def.executor_creation_fn(InitExecutorContext(
            job=InMemoryJob(job), executor_def=job.executor_def, executor_config=_execution(job), instance=instance))
    handler = executor._step_handler
    context = handler._container_context
    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.45")  # builds, never connects
    bodies = {}
    for node in job.graph.node_defs:
        env = dict(parse_env_var(v) for v in context.env_vars)
        env.update(DAGSTER_RUN_JOB_NAME=job.name, DAGSTER_RUN_STEP_KEY=node.name)
        args = _create_container_args(dict(
            image=handler._image, command=["dagster", "api", "execute_step"], version=api.api_version, detach=True,
            network=context.networks[0] if context.networks else None, environment=env, **context.container_kwargs))
        args.pop("name", None)
        bodies[node.name] = api.create_container_config(**args)
    return type(handler).__name__, bodies


def test_docker_executor_builds_each_step_container_with_dagster_docker(project, monkeypatch):
    config = {"image": "registry.example/flows:1", "network": "flows", "container_kwargs": {"mem_limit": "2g"}}
    defs, _ = _create(project, "foreach_flow.py", ["--executor", "docker", "--executor-config", json.dumps(config)],
                      top=S3_TOP, **S3_ENV)
    secret = "s3-" + "y" * 24
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)          # allowlisted prefix, but a credential
    monkeypatch.setenv("METAFLOW_DEFAULT_METADATA", "local")     # allowlisted: forwarded by name
    monkeypatch.setenv("UNLISTED_VARIABLE", "not-for-containers")
    monkeypatch.setenv("METAFLOW_DATASTORE_SYSROOT_S3", S3_ENV["METAFLOW_DATASTORE_SYSROOT_S3"])
    job = _job(defs, "ForeachFlow")
    assert job.executor_def.name == "metaflow_docker"
    # The launchpad shows create's values as the defaults of dagster-docker's own executor config.
    fields = job.executor_def.config_schema.config_type.fields
    assert fields["image"].default_value == "registry.example/flows:1"
    assert fields["container_kwargs"].default_value == {"mem_limit": "2g"}
    handler, bodies = _docker_containers(job)
    assert handler == "DockerStepHandler"
    assert set(bodies) == {n.name for n in job.graph.node_defs}
    for name, body in bodies.items():
        assert body["Image"] == "registry.example/flows:1" and body["Cmd"] == ["dagster", "api", "execute_step"]
        assert body["HostConfig"]["Memory"] == 2 * 1024 ** 3 and body["HostConfig"]["NetworkMode"] == "flows"
        env = dict(e.split("=", 1) for e in body["Env"])
        assert env["DAGSTER_RUN_STEP_KEY"] == name and env["DAGSTER_RUN_JOB_NAME"] == "ForeachFlow"
        assert env["METAFLOW_DEFAULT_METADATA"] == "local"
        assert env["METAFLOW_DATASTORE_SYSROOT_S3"] == S3_ENV["METAFLOW_DATASTORE_SYSROOT_S3"]
        forwarded = set(env) - {"DAGSTER_RUN_JOB_NAME", "DAGSTER_RUN_STEP_KEY"}
        assert all(n.startswith(("METAFLOW_", "AWS_", "LANG", "LC_", "TZ", "AZURE_", "GOOGLE_CLOUD")) for n in forwarded), (
            sorted(forwarded))
        text = json.dumps(body)
        assert secret not in text and "not-for-containers" not in text and "AWS_SECRET_ACCESS_KEY" not in env, name
    # Ops share no disk: their outputs go through the Metaflow datastore.
    assert "TokenStore" in type(job.resource_defs["io_manager"].resource_fn(None)).__name__


def test_with_kubernetes_compiles_to_the_k8s_executor(project):
    defs, _ = _create(project, "linear_flow.py", top=S3_TOP + ["--with", "kubernetes:cpu=2,memory=3000"], **S3_ENV)
    os.environ.update(S3_ENV)
    job = _job(defs, "LinearFlow")
    assert job.executor_def.name == "metaflow_k8s"
    specs = _k8s_job_specs(job)
    assert set(specs) == {n.name for n in job.graph.node_defs}
    for spec, _ in specs.values():
        requests = spec["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests["cpu"] == "2" and requests["memory"] == "3000M"


def test_kubernetes_attribute_without_kubernetes_meaning_names_step_and_attribute(project):
    _, res = _create(project, "kube_bad_flow.py", top=S3_TOP, check=False, **S3_ENV)
    assert res.returncode != 0
    assert "kube_bad_flow.py:13: error: step 'end': @kubernetes attribute compute_pool: has no Kubernetes " \
           "meaning under Dagster" in res.stderr, res


def test_kubernetes_needs_the_k8s_executor(project):
    _, res = _create(project, "kube_flow.py", ["--executor", "celery"], top=S3_TOP, check=False, **S3_ENV)
    assert res.returncode != 0
    assert "step 'start': @kubernetes needs the k8s executor, not celery" in res.stderr, res


def test_batch_is_refused_with_the_alternatives(project):
    _, res = _create(project, "batch_flow.py", top=S3_TOP, check=False, **S3_ENV)
    assert res.returncode != 0
    assert ("batch_flow.py:13: error: step 'end': @batch is not supported: no maintained Dagster step executor "
            "runs ops as AWS Batch jobs (dagster-aws has ecs_executor, for ECS tasks, not Batch job queues); use "
            "@kubernetes (create --executor k8s), or run the steps on Celery workers (create --executor celery)"
            ) in res.stderr, res


def test_dagster_aws_has_no_batch_step_executor():
    """What the @batch message says, read from the installed dagster-aws: its only step executor is ECS's."""
    import importlib
    import pkgutil

    import dagster_aws
    from dagster import ExecutorDefinition

    names, executors = [], set()
    for mod in pkgutil.walk_packages(dagster_aws.__path__, "dagster_aws."):
        names.append(mod.name)
        try:
            module = importlib.import_module(mod.name)
        except Exception:  # an integration whose optional dependency is not installed
            continue
        executors.update(k for k, v in vars(module).items() if isinstance(v, ExecutorDefinition))
    assert executors == {"ecs_executor"}, executors
    assert not [n for n in names if "batch" in n.lower()], names
