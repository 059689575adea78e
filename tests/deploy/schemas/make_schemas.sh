#!/usr/bin/env bash
# Regenerate the vendored CRD schemas of this folder from registry packages (see README.md).
# Needs Java 17, Maven and Python 3.11+; writes into this folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

STRIMZI=0.45.0
for a in api crd-generator crd-annotations; do
  mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy -Dartifact="io.strimzi:$a:$STRIMZI" -DoutputDirectory="$work/jars"
done
java -cp "$work/jars/*" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1alpha1,v1beta1,v1beta2 --storage-version v1beta2 \
  --yaml "io.strimzi.api.kafka.model.topic.KafkaTopic=$here/kafkatopics.kafka.strimzi.io-$STRIMZI.crd.yaml"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "cloudcoil.models.prometheus_operator==0.80.1.0" \
  "cloudcoil.models.keda==2.16.1.0"
"$work/venv/bin/python" - "$here" <<'PY'
import importlib.metadata as md
import json
import sys

import cloudcoil.models.keda.v1alpha1 as keda
import cloudcoil.models.prometheus_operator.v1 as po

out = sys.argv[1]
for model, name, dist in [
    (po.PodMonitor, "podmonitor.monitoring.coreos.com_v1", "cloudcoil.models.prometheus_operator"),
    (keda.ScaledObject, "scaledobject.keda.sh_v1alpha1", "cloudcoil.models.keda"),
]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$comment"] = (f"JSON Schema of {model.__name__} dumped from {dist} {md.version(dist)} "
                          f"(PyPI, Apache-2.0) with pydantic {md.version('pydantic')}; see README.md")
    with open(f"{out}/{name}.schema.json", "w") as f:
        f.write(json.dumps(schema, indent=1, sort_keys=True) + "\n")
PY
sha256sum "$here"/*.yaml "$here"/*.json
