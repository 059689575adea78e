"""The generated ``Tiltfile`` runs in a real Starlark interpreter (starlark-rust, through the
PyPI package ``starlark-pyo3``) against recording stand-ins of Tilt's built-ins; the test checks
what it asks Tilt to do: build the image from the project's Dockerfile, create the Secret from
``$WORKBENCH_DRIVER``, apply every manifest (custom resources only where their CRD exists),
port-forward the status page and live-update the pipeline files. Tilt itself is not run here
(no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from workbench._env import in_ci
from workbench.cli import main

from .test_k8s import KAFKA, TARGET

CRDS = ("customresourcedefinition.apiextensions.k8s.io/kafkatopics.kafka.strimzi.io\n"
        "customresourcedefinition.apiextensions.k8s.io/podmonitors.monitoring.coreos.com\n")


@pytest.fixture(autouse=True)
def _at_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)


@pytest.fixture(scope="module")
def starlark() -> Any:
    try:
        import starlark
    except ImportError:
        msg = "starlark-pyo3 is not installed: pip install -e '.[dev]'"
        if in_ci():
            pytest.fail(msg + " (CI=true: not skipping)")
        pytest.skip(msg)
    return starlark


class Tilt:
    """Recording stand-ins for the Tilt built-ins the generated Tiltfile uses."""

    def __init__(self, sl: Any, directory: Path, env: dict[str, str], crds: str) -> None:
        self.sl = sl
        self.dir = directory
        self.env = env
        self.crds = crds
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _record(self, name: str, result: Any = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return result(*args, **kwargs) if callable(result) else result
        return call

    def called(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]

    def run(self) -> None:
        sl = self.sl
        dialect = sl.Dialect.extended()
        dialect.enable_top_level_stmt = True
        glb = sl.Globals.extended_by([sl.LibraryExtension.StructType,
                                      sl.LibraryExtension.Print])
        mod = sl.Module()
        mod.add_callable("_getenv", lambda name, default=None: self.env.get(name, default))
        builtins = {
            "k8s_yaml": None, "k8s_resource": None,
            "sync": lambda src, dest: ("sync", src, dest),
            "port_forward": lambda local, container=None, name=None: (local, container, name),
            "encode_yaml": lambda obj: {"yaml": obj},
            "encode_yaml_stream": lambda objs: {"yaml_stream": objs},
            "decode_yaml_stream": lambda text: list(yaml.safe_load_all(text)),
            "read_file": lambda path: (self.dir / path).read_text(),
            "local": lambda cmd, **_kw: self.crds,
        }
        for name, result in builtins.items():
            mod.add_callable(name, self._record(name, result))
        sl.eval(mod, sl.parse("prelude", "os = struct(getenv = _getenv)\n", dialect), glb)

        def load(module: str) -> Any:
            assert module == "ext://restart_process"
            ext = sl.Module()
            ext.add_callable("docker_build_with_restart",
                             self._record("docker_build_with_restart"))
            return ext.freeze()

        text = (self.dir / "Tiltfile").read_text()
        sl.eval(mod, sl.parse("Tiltfile", text, dialect), glb, sl.FileLoader(load))


def _generate(out: Path, *args: str) -> Path:
    assert main(["deploy", "k8s", TARGET, "--driver", KAFKA, "--image", "reg/shop:dev",
                 "--out", str(out), *args]) == 0
    return out


def test_tiltfile_builds_applies_forwards_and_live_updates(starlark: Any,
                                                          tmp_path: Path) -> None:
    out = _generate(tmp_path / "deploy", "--keda")
    url = "kafka://broker:9092?sasl.password=hunter2"
    tilt = Tilt(starlark, out, {"WORKBENCH_DRIVER": url}, CRDS)
    tilt.run()

    ((ref, context), build), = tilt.called("docker_build_with_restart")
    assert ref == "reg/shop:dev"
    root = (out / context).resolve()
    assert root == Path.cwd().resolve()
    assert (out / build["dockerfile"]).resolve() == root / "Dockerfile"
    assert build["build_args"] == {"PIPELINES": "tests"}
    dockerfile = (root / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tini", "--", "workbench"]' in dockerfile
    assert build["entrypoint"] == ["tini", "--", "workbench"]  # the image's own entrypoint
    ((_, src, dest),) = build["live_update"]
    assert (out / src).resolve() == root / "tests" and dest == "/app/tests"

    applied = [a[0] for a, _ in tilt.called("k8s_yaml")]
    secret = applied[0]["yaml"]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "shop-driver"
    assert secret["stringData"] == {"url": url}
    stream = next(a["yaml_stream"] for a in applied if isinstance(a, dict) and "yaml_stream" in a)
    (sts,) = stream
    assert sts["kind"] == "StatefulSet"
    pod = sts["spec"]["template"]["spec"]
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is False  # live update writes
    files = [a for a in applied if isinstance(a, str)]
    assert files == ["service.yaml", "kafkatopics.yaml", "podmonitor.yaml"]  # no KEDA CRD
    assert all((out / f).exists() for f in files)
    ((name,), res), = tilt.called("k8s_resource")
    assert name == "shop" and res["port_forwards"] == [[8080, 8080, "status page"]]


def test_tiltfile_without_the_driver_url_stops_with_a_message(starlark: Any,
                                                              tmp_path: Path) -> None:
    out = _generate(tmp_path / "deploy")
    tilt = Tilt(starlark, out, {}, "")
    with pytest.raises(starlark.StarlarkError, match="set WORKBENCH_DRIVER"):
        tilt.run()
    assert not tilt.called("k8s_yaml")
