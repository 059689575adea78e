"""Validate generated manifests as a Kubernetes API server would, offline.

* Built-in kinds (StatefulSet, Deployment, Job, Service, Secret): the Kubernetes OpenAPI
  schemas, in their *strict* form (unknown fields are errors, as ``kubectl apply`` with the
  default ``--validate=strict`` makes them), shipped inside the PyPI package
  ``kubernetes-validate``; checked with its ``validate()`` for each Kubernetes version asked.
* Custom resources: the CRDs' schemas vendored in ``schemas/`` (sources and licenses in
  ``schemas/README.md``), checked with ``jsonschema`` after turning them into what the API server
  enforces for a structural schema: a field the schema does not name is an error unless the node
  says ``x-kubernetes-preserve-unknown-fields`` (the server prunes it; strict field validation
  rejects it), ``x-kubernetes-int-or-string`` accepts both; ``metadata`` is checked against the
  Kubernetes ``ObjectMeta`` schema.
* What the schemas cannot say and the API server checks: object names (DNS-1123 subdomains;
  DNS-1035 labels for Services; at most 63 characters where a name becomes a label), label keys
  and values, container port names (IANA service names, at most 15 characters), that probes name a
  declared port and that a workload's selector matches its pod template's labels.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCHEMAS = Path(__file__).parent / "schemas"
#: Kubernetes versions validated against: the oldest upstream-supported minor when this was
#: written and the newest the installed kubernetes-validate knows
K8S_VERSIONS = ("1.31", "latest")

CRD_FILES = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafkatopics.kafka.strimzi.io-0.45.0.crd.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.monitoring.coreos.com_v1.schema.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh_v1alpha1.schema.json",
}

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ManifestError(AssertionError):
    """A manifest an API server would refuse; the message names the object and the field."""


def load_dir(path: Path) -> dict[str, list[dict[str, Any]]]:
    """``{file name: objects}`` of every ``.yaml`` file in ``path``."""
    out = {}
    for f in sorted(path.glob("*.yaml")):
        out[f.name] = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    return out


# -- custom resources ---------------------------------------------------------------------------
def _structural(node: Any) -> Any:
    """A JSON Schema that enforces what the API server enforces for a structural schema."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items()
           if k not in ("description", "example", "title", "default")}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@cache
def _object_meta_schema() -> dict[str, Any]:
    """The strict ``ObjectMeta`` schema of the newest Kubernetes version kubernetes-validate
    ships, with its references resolved against the same definitions file."""
    import importlib.resources

    import kubernetes_validate.utils as kv

    version = kv.latest_version()
    base = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    defs = json.loads((base / f"v{version}-local-strict" / "_definitions.json").read_text())
    # its $id makes the definitions' own "/api/_definitions.json#/$defs/..." references resolve
    return {**defs, "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


@cache
def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    fname = CRD_FILES[(api_version, kind)]
    text = (SCHEMAS / fname).read_text()
    if fname.endswith(".yaml"):
        crd = yaml.safe_load(text)
        version = api_version.split("/")[1]
        (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        if not entry.get("served", False):
            raise ManifestError(f"{kind} {api_version} is not served by {fname}")
        schema = entry["schema"]["openAPIV3Schema"]
    else:
        schema = json.loads(text)
        schema.pop("$comment", None)
    schema = _structural(copy.deepcopy(schema))
    # metadata is checked against ObjectMeta separately (the CRD says only `type: object`)
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def _validate_crd(obj: dict[str, Any]) -> None:
    import jsonschema

    schema = _crd_schema(obj["apiVersion"], obj["kind"])
    where = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    meta = jsonschema.Draft202012Validator(_object_meta_schema())
    errors += sorted(meta.iter_errors(obj.get("metadata", {})), key=lambda e: list(e.path))
    if errors:
        # an error under anyOf (pydantic's "or null") reads best as its most relevant cause
        errors = [jsonschema.exceptions.best_match(e.context) if e.context else e
                  for e in errors]
        lines = [f"  {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                 for e in errors]
        raise ManifestError(f"{where} does not match its CRD schema:\n" + "\n".join(lines))


# -- built-in kinds -----------------------------------------------------------------------------
def _validate_builtin(obj: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    where = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.path))
        raise ManifestError(f"{where} is not a valid {obj['kind']} for Kubernetes "
                            f"{exc.version}: {path}: {exc.message}") from None


# -- what the API server checks beyond the schemas ----------------------------------------------
def _check_labels(where: str, labels: dict[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
            raise ManifestError(f"{where}: label key {key!r} has an invalid prefix")
        if not name or len(name) > 63 or not LABEL_NAME.match(name):
            raise ManifestError(f"{where}: label key {key!r} is invalid")
        if len(value) > 63 or not LABEL_NAME.match(value):
            raise ManifestError(f"{where}: label value {value!r} of {key!r} is invalid")


def _check_pod(where: str, pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    for c in spec.get("initContainers", []) + spec["containers"]:
        if not DNS1123_LABEL.match(c["name"]):
            raise ManifestError(f"{where}: container name {c['name']!r} is not a DNS-1123 label")
        ports = set()
        for p in c.get("ports", []):
            name = p.get("name", "")
            if name and (len(name) > 15 or not IANA_SVC_NAME.match(name)
                         or not re.search("[a-z]", name)):
                raise ManifestError(f"{where}: port name {name!r} is not an IANA service name")
            ports.add(name)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                raise ManifestError(f"{where}: {probe} uses port {port!r}, which container "
                                    f"{c['name']!r} does not declare")
        for env in c.get("env", []):
            if not ENV_NAME.match(env["name"]):
                raise ManifestError(f"{where}: env name {env['name']!r} is invalid")
    _check_labels(where + " pod template", pod.get("metadata", {}).get("labels", {}))


def _check_api_rules(obj: dict[str, Any]) -> None:
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    where = f"{obj['kind']}/{name}"
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise ManifestError(f"{where}: metadata.name is not a DNS-1123 subdomain")
    if obj["kind"] == "Service" and (len(name) > 63 or not DNS1035_LABEL.match(name)):
        raise ManifestError(f"{where}: a Service name must be a DNS-1035 label (<= 63)")
    if obj["kind"] in ("StatefulSet", "Deployment", "Job") and len(name) > 52:
        raise ManifestError(f"{where}: name too long for the labels pods derive from it")
    ns = meta.get("namespace")
    if ns is not None and (len(ns) > 63 or not DNS1123_LABEL.match(ns)):
        raise ManifestError(f"{where}: namespace {ns!r} is not a DNS-1123 label")
    _check_labels(where, meta.get("labels", {}))
    spec = obj.get("spec", {})
    if obj["kind"] in ("StatefulSet", "Deployment", "Job"):
        template = spec["template"]
        _check_pod(where, template)
        selector = spec.get("selector", {}).get("matchLabels")
        labels = template.get("metadata", {}).get("labels", {})
        if selector and any(labels.get(k) != v for k, v in selector.items()):
            raise ManifestError(f"{where}: selector {selector} does not match the pod "
                                f"template's labels {labels}")
        if obj["kind"] == "Job" and template["spec"].get("restartPolicy") not in (
                "Never", "OnFailure"):
            raise ManifestError(f"{where}: a Job's pods need restartPolicy Never or OnFailure")


def validate_object(obj: dict[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> None:
    """Raise :class:`ManifestError` if an API server would refuse ``obj``."""
    for key in ("apiVersion", "kind", "metadata"):
        if key not in obj:
            raise ManifestError(f"object without {key}: {obj!r:.200}")
    _check_api_rules(obj)
    if (obj["apiVersion"], obj["kind"]) in CRD_FILES:
        _validate_crd(obj)
    else:
        for version in versions:
            _validate_builtin(obj, version)


def validate_dir(path: Path, versions: tuple[str, ...] = K8S_VERSIONS) -> int:
    """Validate every object of every ``.yaml`` file in ``path``; return how many."""
    count = 0
    for objects in load_dir(path).values():
        for obj in objects:
            validate_object(obj, versions)
            count += 1
    return count
