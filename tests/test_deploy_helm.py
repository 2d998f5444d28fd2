"""The Helm chart in helm/pounce, rendered and linted by Helm's own engine.

``helm-python-sdk`` binds Helm's Go library (v4): values are checked against
values.schema.json, ``lint`` and ``render`` are what ``helm lint`` and ``helm template``
run.  Every rendered manifest is validated against the Kubernetes OpenAPI schemas of the
oldest and newest versions the chart supports (``kubernetes-validate``, strict: unknown
fields are errors), the pounce.toml of the ConfigMap passes ``pounce check``, and the
rendered preStop hook drains a real Pounce running that config, within the rendered
terminationGracePeriodSeconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import ssl
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import _native

from helpers.deploy import CHART_DIR, DEPLOY_DIR, Proc, get, run, short_tmpdir, status, write_toml
from helpers.server import ROOT, both, free_port, pounce_cmd, wait_for

pytestmark = pytest.mark.timeout(120)

KUBE_VERSIONS = ("1.25.0", "1.37.0")  # Chart.yaml kubeVersion ">=1.25.0-0" .. newest schemas
MONITORING = "monitoring.coreos.com/v1"
LB_IDLE_TIMEOUT = 60  # AWS ALB, GCP HTTP(S) LB and nginx-ingress upstream keep-alive

PROFILES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "single-replica": {"replicaCount": 1},
    "hpa": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}},
    "servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "uds": {
        "listen": {"uds": {"enabled": True}, "http": {"hosts": ["0.0.0.0", "::"]}},
        "sidecars": [
            {
                "name": "proxy",
                "image": "docker.io/library/nginx:1.27",
                "volumeMounts": [{"name": "sockets", "mountPath": "/run/pounce-http"}],
            }
        ],
    },
    "tuned": {
        "config": {
            "app": "examples.hello:app",
            "server": {"workers": 4, "worker_mode": "process", "backlog": 4096},
            "http": {"keep_alive_timeout": 90.5, "max_body_size": 0},
            "shutdown": {"drain_delay": 0, "timeout": 12.5},
            "health": {"live_path": "/livez", "ready_path": "/readyz"},
            "metrics": {"path": "/prom"},
        },
        "terminationGraceMarginSeconds": 3,
    },
    "ingress-tls": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"},
            "hosts": [
                {"host": "pounce.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]},
                {"host": "api.example.com", "paths": [{"path": "/v1", "pathType": "Exact"}]},
            ],
            "tls": [{"secretName": "edge-tls", "hosts": ["pounce.example.com"]}],
        },
        "tls": {"enabled": True, "secretName": "web-tls"},
        "config": {"app": "examples.hello:app", "tls": {"minimum_version": "1.3"}},
        "prometheusAnnotations": True,
        "resources": {"requests": {"cpu": "1500m", "memory": "256Mi"}},
    },
}
# Profiles rendered as if the cluster served the Prometheus Operator's API.
API_VERSIONS = {"servicemonitor": [MONITORING], "example-values": [MONITORING]}


def profile_values(name: str) -> dict[str, Any]:
    if name == "example-values":
        return helm.values_from_yaml((DEPLOY_DIR / "kubernetes" / "values.yaml").read_text())
    return PROFILES[name]


ALL_PROFILES = [*PROFILES, "example-values"]


def render(values: dict[str, Any], api_versions: list[str] | None = None) -> dict[str, str]:
    """``helm template web helm/pounce -n prod [--api-versions ...]``: template -> text.

    ``Chart.render`` does not expose ``--api-versions`` (.Capabilities.APIVersions), which
    the library's render call accepts in its options; call it directly for that.
    """
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(values)
        if not api_versions:
            return chart.render(values, name="web", namespace="prod", is_install=True)
        opts = {"name": "web", "namespace": "prod", "is_install": True}
        opts["api_versions"] = api_versions
        raw = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
        manifests: dict[str, str] = json.loads(raw)
        return manifests


def objects(manifests: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every rendered object by kind (the chart renders at most one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert doc["kind"] not in found, doc["kind"]
                found[doc["kind"]] = doc
    return found


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "pounce")


def pounce_toml(objs: dict[str, dict[str, Any]]) -> str:
    text: str = objs["ConfigMap"]["data"]["pounce.toml"]
    return text


# ServiceMonitor is a custom resource: kubernetes-validate has no schema for it.  This is
# the part of the Prometheus Operator's CRD (monitoring.coreos.com/v1) the chart uses.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": MONITORING},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                    "additionalProperties": False,
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|([0-9]+(ms|s|m|h))+)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


# -- lint and schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_helm_lint_is_clean(profile: str) -> None:
    for version in KUBE_VERSIONS:
        report = helm.lint(
            CHART_DIR, profile_values(profile), strict=True, kube_version=f"v{version}"
        )
        # Severity 1 is INFO ("icon is recommended"); 2 WARNING and 3 ERROR fail.
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [] and report["errors"] == [], report


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 3},  # not a value of this chart (replicaCount is)
        {"config": {"app": "x:y", "http": {"keep_alive_timout": 75}}},  # typo
        {"config": {"app": "x:y", "tls": {"certificate": "/c.pem"}}},  # not a Pounce table
        {"config": {"app": "x:y", "listen": [{"port": 80}]}},  # managed by the chart
        {"config": {"app": "x:y", "server": {"workers": "two"}}},
        {"config": {"app": "x:y", "server": {"workers": 0}}},
        {"config": {"app": "x:y", "logging": {"format": "yaml"}}},
        {"listen": {"uds": {"enabled": True, "path": "/run/x.sock", "mode": "660"}}},
        {"autoscaling": {"enabled": True, "minReplica": 2}},
        {"tls": {"enabled": True}},  # no Secret named
        {"tls": {"enabled": True, "secretName": ""}},
        {"ingress": {"enabled": True, "hosts": [{"host": "a.example", "paths": [{"path": "/"}]}]}},
        {"ingress": {"enabled": True, "tls": [{"hosts": ["a.example"]}]}},
        {"ingress": {"enabled": True, "class": "nginx"}},
    ],
    ids=lambda v: json.dumps(v)[:50],
)
def test_schema_rejects_unknown_keys_and_bad_values(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    report = helm.lint(CHART_DIR, values)
    assert report["errors"], report


def test_schema_config_follows_pounce_declarations() -> None:
    """Every key the chart's schema allows in `config` is a Pounce setting of that type.

    ``python helm/gen_values_schema.py`` writes that part from the declarations; a
    setting added to Pounce later is simply not allowed by the chart until it is rerun.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen", ROOT / "helm" / "gen_values_schema.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    shipped = json.loads((CHART_DIR / "values.schema.json").read_text())["properties"]["config"]
    current = gen.config_schema()
    assert shipped["additionalProperties"] is False
    for key, schema in shipped["properties"].items():
        assert key in current["properties"], f"config.{key} is not a Pounce setting"
        if "properties" not in schema:
            assert schema == current["properties"][key], key
            continue
        assert schema["additionalProperties"] is False, key
        for setting, setting_schema in schema["properties"].items():
            declared = current["properties"][key]["properties"]
            assert setting in declared, f"config.{key}.{setting} is not a Pounce setting"
            assert setting_schema == declared[setting], f"config.{key}.{setting}"
    assert not {"listen", "admin", "control"} & set(shipped["properties"])


# -- rendered manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_rendered_manifests_are_valid_kubernetes(profile: str) -> None:
    manifests = render(profile_values(profile), API_VERSIONS.get(profile))
    objs = objects(manifests)
    assert {"ConfigMap", "Deployment", "Service", "ServiceAccount"} <= set(objs)
    for kind, obj in objs.items():
        if kind == "ServiceMonitor":
            jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert manifests["pounce/templates/NOTES.txt"].strip()


def test_validation_is_not_vacuous() -> None:
    objs = objects(render({}))
    deployment = objs["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.fixture(scope="module")
def tls_secret() -> Iterator[dict[str, Path]]:
    """Stand-ins for the kubernetes.io/tls Secret's files (tls.crt, tls.key)."""
    from helpers.tls import issue, make_ca

    tmp = short_tmpdir()
    ca_key, ca_cert, ca_path = make_ca(tmp)
    cert, key = issue(tmp, "server", "localhost", ca_key, ca_cert)
    yield {"certfile": cert, "keyfile": key, "ca_certs": ca_path}
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_rendered_pounce_toml_passes_pounce_check(
    profile: str, tmp_path: Path, tls_secret: dict[str, Path]
) -> None:
    objs = objects(render(profile_values(profile), API_VERSIONS.get(profile)))
    path = tmp_path / "pounce.toml"
    path.write_text(pounce_toml(objs))
    # The Secret's files exist in the pod only: POUNCE_TLS_* point at stand-ins.
    tls = tomllib.loads(pounce_toml(objs)).get("tls", {})
    env = {f"POUNCE_TLS_{k.upper()}": str(v) for k, v in tls_secret.items() if k in tls}
    result = run(pounce_cmd("check", "-c", str(path)), env=env)
    assert result.returncode == 0, both(result) + pounce_toml(objs)


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_deployment_follows_the_daemon(profile: str) -> None:
    values = profile_values(profile)
    objs = objects(render(values, API_VERSIONS.get(profile)))
    config = tomllib.loads(pounce_toml(objs))
    deployment = objs["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    main = container(objs)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}

    # Rollouts never dip below capacity; a new pounce.toml rolls the pods.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    configmap_text = render(values, API_VERSIONS.get(profile))["pounce/templates/configmap.yaml"]
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum == hashlib.sha256(configmap_text.encode()).hexdigest()
    autoscaled = values.get("autoscaling", {}).get("enabled", False)
    assert ("replicas" in deployment["spec"]) is not autoscaled
    assert ("HorizontalPodAutoscaler" in objs) is autoscaled
    replicas = values.get("replicaCount", 2)
    assert ("PodDisruptionBudget" in objs) is (autoscaled or replicas > 1)

    # Listeners: the container ports are the ones in pounce.toml.
    tcp = [entry for entry in config["listen"] if "port" in entry]
    assert tcp and all(entry["port"] == ports["http"] for entry in tcp)
    assert config["admin"]["port"] == ports["admin"]

    # Probes on the supervisor's admin listener, at the configured health paths.  The
    # startup probe waits for the first generation to be ready, for minutes.
    health = config.get("health", {})
    live, ready = health.get("live_path", "/health/live"), health.get("ready_path", "/health/ready")
    for probe, path in (
        ("startupProbe", ready),
        ("livenessProbe", live),
        ("readinessProbe", ready),
    ):
        assert main[probe]["httpGet"] == {"path": path, "port": "admin"}, probe
    startup = main["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120

    # One worker per requested core, unless the values say otherwise.
    requested = values.get("config", {}).get("server", {}).get("workers")
    assert config["server"]["workers"] == requested or cores(main["resources"]["requests"]["cpu"])

    # No Service links: no *_SERVICE_HOST/*_PORT variables (POUNCE_PORT for a Service
    # named pounce) in the environment Pounce reads POUNCE_* settings from.
    assert pod["enableServiceLinks"] is False

    # Termination: the grace period covers drain_delay + shutdown.timeout + margin.
    shutdown = config.get("shutdown", {})
    drain = shutdown.get("drain_delay", 0.0) + shutdown.get("timeout", 30.0)
    margin = values.get("terminationGraceMarginSeconds", 10)
    assert pod["terminationGracePeriodSeconds"] == math.ceil(drain) + margin
    assert pod["terminationGracePeriodSeconds"] >= drain + 1
    hook = main["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:6] == ["pounce", "ctl", "-c", "/etc/pounce/pounce.toml", "drain", "--wait"]
    assert drain <= float(hook[hook.index("--timeout") + 1]) < pod["terminationGracePeriodSeconds"]

    # Keep-alive outlives the load balancer's idle timeout.
    assert config["http"]["keep_alive_timeout"] > LB_IDLE_TIMEOUT

    # Locked down: non-root, read-only root, no capabilities, seccomp; writable emptyDirs
    # only for /tmp, the control socket and the Unix listener.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = main["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in main["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"]
    assert "emptyDir" in mounts[str(Path(config["control"]["socket"]).parent)]
    assert mounts["/etc/pounce"]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    for entry in config["listen"]:
        if "path" in entry:
            assert "emptyDir" in mounts[str(Path(entry["path"]).parent)]
    assert main["resources"]["requests"]

    # TLS: [tls] names the files of the mounted kubernetes.io/tls Secret.
    tls_values = values.get("tls", {})
    assert ("tls" in config) is bool(tls_values.get("enabled"))
    if tls_values.get("enabled"):
        certfile, keyfile = Path(config["tls"]["certfile"]), Path(config["tls"]["keyfile"])
        assert certfile.parent == keyfile.parent
        assert (certfile.name, keyfile.name) == ("tls.crt", "tls.key")
        assert mounts[str(certfile.parent)]["secret"]["secretName"] == tls_values["secretName"]
        assert config["tls"].items() >= values["config"].get("tls", {}).items()

    # Metrics annotations, when asked for, point at the admin port.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    if values.get("prometheusAnnotations"):
        assert annotations["prometheus.io/port"] == str(ports["admin"])
        assert annotations["prometheus.io/path"] == config.get("metrics", {}).get(
            "path", "/metrics"
        )
    else:
        assert not any(k.startswith("prometheus.io/") for k in annotations)

    # The Service reaches both ports; everything carries the standard labels.
    service_ports = {p["name"]: p["targetPort"] for p in objs["Service"]["spec"]["ports"]}
    assert service_ports == {"http": "http", "metrics": "admin"}
    # The Ingress routes every host and path to the Service's http port.
    ingress = values.get("ingress", {})
    assert ("Ingress" in objs) is bool(ingress.get("enabled"))
    if ingress.get("enabled"):
        spec = objs["Ingress"]["spec"]
        assert spec.get("ingressClassName") == ingress.get("className")
        assert spec.get("tls", []) == ingress.get("tls", [])
        assert [r["host"] for r in spec["rules"]] == [h["host"] for h in ingress["hosts"]]
        for rule in spec["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend == {
                    "name": objs["Service"]["metadata"]["name"],
                    "port": {"name": "http"},
                }
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert objs["Service"]["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for obj in objs.values():
        labels = obj["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, (obj["kind"], labels)
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def cores(cpu: str | float) -> int:
    """Kubernetes CPU quantity -> whole cores, rounded up."""
    text = str(cpu)
    return max(1, math.ceil(float(text[:-1]) / 1000 if text.endswith("m") else float(text)))


def test_lists_and_sub_tables_of_config_render_as_toml(tmp_path: Path) -> None:
    values = {
        "config": {
            "app": "examples.hello:app",
            "proxy": {"trusted": ["10.0.0.0/8", "unix"]},
            "limits": {"max_concurrent_requests": 50, "rate": {"requests_per_second": 2.5}},
        }
    }
    text = pounce_toml(objects(render(values)))
    config = tomllib.loads(text)
    assert config["proxy"] == {"trusted": ["10.0.0.0/8", "unix"]}
    assert config["limits"] == {"max_concurrent_requests": 50, "rate": {"requests_per_second": 2.5}}
    path = tmp_path / "pounce.toml"
    path.write_text(text)
    result = run(pounce_cmd("check", "-c", str(path)))
    assert result.returncode == 0, both(result) + text


@pytest.mark.parametrize(
    ("cpu", "workers"), [("500m", 1), ("1", 1), (2, 2), ("1500m", 2), ("2.5", 3), ("4", 4)]
)
def test_workers_follow_the_cpu_request(cpu: str | int, workers: int) -> None:
    values = {"resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}
    config = tomllib.loads(pounce_toml(objects(render(values))))
    assert config["server"]["workers"] == workers


def test_workers_given_in_config_win_over_the_cpu_request() -> None:
    values = {
        "config": {"app": "examples.hello:app", "server": {"workers": 3, "backlog": 512}},
        "resources": {"requests": {"cpu": "1"}},
    }
    config = tomllib.loads(pounce_toml(objects(render(values))))
    assert config["server"] == {"workers": 3, "backlog": 512}
    # No CPU request (null removes the chart's default): Pounce's own default.
    config = tomllib.loads(pounce_toml(objects(render({"resources": {"requests": {"cpu": None}}}))))
    assert "workers" not in config.get("server", {})


def test_defaults_follow_the_docs_advice() -> None:
    """docs/deployment.md: one worker per requested core, probes on the admin port."""
    objs = objects(render({}))
    config = tomllib.loads(pounce_toml(objs))
    main = container(objs)
    assert config["server"]["workers"] == cores(main["resources"]["requests"]["cpu"])
    assert main["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert objs["Deployment"]["spec"]["template"]["spec"]["enableServiceLinks"] is False
    assert "Ingress" not in objs and "tls" not in config


def test_service_monitor_needs_the_api_and_the_switch() -> None:
    on = {"serviceMonitor": {"enabled": True}}
    assert "ServiceMonitor" not in objects(render(on))  # API not served
    assert "ServiceMonitor" not in objects(render({}, [MONITORING]))  # not enabled
    no_metrics = {**on, "config": {"app": "examples.hello:app", "metrics": {"enabled": False}}}
    assert "ServiceMonitor" not in objects(render(no_metrics, [MONITORING]))  # nothing to scrape
    objs = objects(render(on, [MONITORING]))
    monitor = objs["ServiceMonitor"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in objs["Service"]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        objs["Service"]["metadata"]["labels"].items()
    )


def test_example_manifests_are_rendered_from_the_chart() -> None:
    """deploy/kubernetes/pounce.yaml is the chart with deploy/kubernetes/values.yaml."""
    result = run([sys.executable, str(DEPLOY_DIR / "kubernetes" / "render.py"), "--check"])
    assert result.returncode == 0, both(result)
    docs = [d for d in yaml.safe_load_all((DEPLOY_DIR / "kubernetes" / "pounce.yaml").read_text())]
    assert {d["kind"] for d in docs if d} >= {"Deployment", "HorizontalPodAutoscaler"}
    for doc in docs:
        if doc:
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


# -- the pod's termination, played against a real Pounce -------------------------------------


@pytest.mark.slow
def test_prestop_drains_a_live_pounce_within_the_grace_period() -> None:
    """Render with short delays, run Pounce on the ConfigMap's pounce.toml and play the
    kubelet: run the preStop command, then SIGTERM, and time both against
    terminationGracePeriodSeconds."""
    http_port, admin_port = free_port(), free_port()
    values = {
        "config": {
            "app": "apps.deploy_app:app",
            "server": {"workers": 2},
            "http": {"keep_alive_timeout": 75},
            "shutdown": {"drain_delay": 2, "timeout": 5},
        },
        "listen": {"http": {"port": http_port, "hosts": ["127.0.0.1"]}},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "terminationGraceMarginSeconds": 5,
    }
    objs = objects(render(values))
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    hook = container(objs)["lifecycle"]["preStop"]["exec"]["command"]

    tmp = short_tmpdir()
    config = tomllib.loads(pounce_toml(objs))
    config["control"]["socket"] = str(tmp / "pounce.sock")  # the emptyDir at /run/pounce
    cfg = write_toml(tmp / "pounce.toml", config)
    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)))
    prestop: Proc | None = None
    app = f"http://127.0.0.1:{http_port}"
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        assert wait_for(lambda: status(admin + "/health/ready") == 200, 30), server.output
        assert get(app + "/").status_code == 200

        # The kubelet runs the hook (our config path instead of /etc/pounce/pounce.toml).
        assert hook[0] == "pounce"
        argv = pounce_cmd(*[str(cfg) if a == "/etc/pounce/pounce.toml" else a for a in hook[1:]])
        began = time.monotonic()
        prestop = Proc.start(argv)

        # Readiness fails at once, liveness does not, and requests are still served.
        assert wait_for(lambda: status(admin + "/health/ready") == 503, 2), server.output
        assert status(admin + "/health/live") == 200
        slow: dict[str, Any] = {}

        def in_flight() -> None:
            try:
                slow["reply"] = get(app + "/slow?seconds=2", timeout=15)
            except httpx.HTTPError as exc:
                slow["error"] = exc

        thread = threading.Thread(target=in_flight)
        thread.start()
        assert get(app + "/").status_code == 200

        # The hook returns once drained; the request in flight was finished.
        code = prestop.wait_exit(grace)
        hook_done = time.monotonic() - began
        assert code == 0, prestop.output + server.output
        thread.join(15)
        assert "reply" in slow and slow["reply"].status_code == 200, slow
        assert hook_done >= values["config"]["shutdown"]["drain_delay"]

        # Then SIGTERM: the supervisor, already idle, exits cleanly inside the grace period.
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_exit(grace) == 0, server.output
        assert time.monotonic() - began < grace, (time.monotonic() - began, grace)
    finally:
        if prestop is not None:
            prestop.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_startup_probe_waits_for_the_first_generation() -> None:
    """Pounce on the rendered pounce.toml, its app still importing: the liveness path
    already answers 200, the startup probe's path does not until the workers are ready."""
    http_port, admin_port = free_port(), free_port()
    values = {
        "config": {"app": "apps.deploy_slow_import:app"},
        "listen": {"http": {"port": http_port, "hosts": ["127.0.0.1"]}},
        "admin": {"host": "127.0.0.1", "port": admin_port},
    }
    objs = objects(render(values))
    main = container(objs)
    startup, liveness = main["startupProbe"], main["livenessProbe"]
    assert startup["httpGet"]["port"] == liveness["httpGet"]["port"] == "admin"

    tmp = short_tmpdir()
    gate = tmp / "imported"
    config = tomllib.loads(pounce_toml(objs))
    config["control"]["socket"] = str(tmp / "pounce.sock")
    cfg = write_toml(tmp / "pounce.toml", config)
    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)), env={"DEPLOY_IMPORT_GATE": str(gate)})
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        # The supervisor runs, the app is importing: a liveness-based startup probe
        # would pass now and send traffic nowhere.
        assert wait_for(lambda: status(admin + liveness["httpGet"]["path"]) == 200, 30), (
            server.output
        )
        assert status(admin + startup["httpGet"]["path"]) == 503, server.output
        assert status(f"http://127.0.0.1:{http_port}/") != 200

        gate.touch()
        assert wait_for(lambda: status(admin + startup["httpGet"]["path"]) == 200, 30), (
            server.output
        )
        assert get(f"http://127.0.0.1:{http_port}/").status_code == 200
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_tls_values_serve_https_with_plain_probes(tls_secret: dict[str, Path]) -> None:
    """tls.enabled: Pounce on the rendered pounce.toml, the Secret's mount standing in as
    a directory with tls.crt and tls.key, serves HTTPS (HTTP/2 by ALPN) on the http port
    while the probes' paths answer plain HTTP on the admin port."""
    http_port, admin_port = free_port(), free_port()
    values = {
        "tls": {"enabled": True, "secretName": "web-tls"},
        "listen": {"http": {"port": http_port, "hosts": ["127.0.0.1"]}},
        "admin": {"host": "127.0.0.1", "port": admin_port},
    }
    objs = objects(render(values))
    main = container(objs)
    config = tomllib.loads(pounce_toml(objs))
    mount = Path(config["tls"]["certfile"]).parent

    tmp = short_tmpdir()
    secret = tmp / "secret"  # what the kubelet mounts at `mount`
    secret.mkdir()
    shutil.copy(tls_secret["certfile"], secret / "tls.crt")
    shutil.copy(tls_secret["keyfile"], secret / "tls.key")
    for key in ("certfile", "keyfile"):
        config["tls"][key] = str(secret / Path(config["tls"][key]).relative_to(mount))
    config["control"]["socket"] = str(tmp / "pounce.sock")
    cfg = write_toml(tmp / "pounce.toml", config)
    server = Proc.start(pounce_cmd("serve", "-c", str(cfg)))
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = main[probe]["httpGet"]["path"]
            assert wait_for(lambda path=path: status(admin + path) == 200, 30), server.output
        trust = ssl.create_default_context(cafile=str(tls_secret["ca_certs"]))
        reply = get(f"https://127.0.0.1:{http_port}/", verify=trust, http2=True)
        assert reply.status_code == 200, server.output
        assert reply.http_version == "HTTP/2"
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
