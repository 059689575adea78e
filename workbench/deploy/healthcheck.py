"""The container image's ``HEALTHCHECK``: exit 0 when ``/health`` answers 200, else 1.

    python -m workbench.deploy.healthcheck [URL]

The URL defaults to ``$WORKBENCH_HEALTH_URL``, else ``http://127.0.0.1:8080/health`` (the port
the generated manifests pass to ``--http``). Kubernetes ignores an image's HEALTHCHECK and uses
the manifests' probes; Docker and Podman use this.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

__all__ = ["DEFAULT_URL", "check", "main"]

DEFAULT_URL = "http://127.0.0.1:8080/health"


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """``(healthy, why)`` for the health endpoint at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200, f"{url}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else os.environ.get("WORKBENCH_HEALTH_URL", DEFAULT_URL)
    ok, why = check(url)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
