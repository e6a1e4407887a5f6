"""Pulling the images a run is missing: once, with progress a person can see, bounded.

The docker backend never pulls while it is asked whether it can serve; the controller
(or ``python -m servicematrix check``) calls ``pull_missing`` once, before any server starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

PULL_TIMEOUT = 300.0
# How long the engine may stay silent during a pull before we give up.
READ_TIMEOUT = 60
PROGRESS_SECONDS = 2.0
Report = Callable[[str], None]


def registry_of(image: str) -> str:
    """Where ``image`` comes from: its registry host, or Docker Hub."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def missing(client: docker.DockerClient, images: Iterable[str]) -> list[str]:
    import docker.errors

    absent = []
    for image in images:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            absent.append(image)
    return absent


def pull_missing(images: Iterable[str], report: Report) -> str | None:
    """Pull each of ``images`` the engine lacks; None, or why one could not be pulled."""
    import docker

    with closing(docker.from_env(timeout=READ_TIMEOUT)) as client:
        for image in missing(client, images):
            problem = _pull(client, image, report)
            if problem:
                return problem
    return None


def _pull(client: docker.DockerClient, image: str, report: Report) -> str | None:
    import docker.errors
    import requests

    source = _source(client, image)
    repository, _, tag = (
        image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    )
    report(f"pulling {image} from {source}")
    started = last = time.monotonic()
    layers: dict[str, tuple[int, int]] = {}
    try:
        for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                return _failed(image, source, str(event["error"]))
            _count(event, layers)
            now = time.monotonic()
            if now - started > PULL_TIMEOUT:
                return _failed(image, source, f"not done after {PULL_TIMEOUT:.0f} s")
            if now - last >= PROGRESS_SECONDS:
                report(f"pulling {image}: {_megabytes(layers)}, {now - started:.0f} s")
                last = now
    except docker.errors.APIError as exc:
        return _failed(image, source, str(exc.explanation or exc).splitlines()[0])
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return _failed(image, source, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    report(f"pulled {image} ({_megabytes(layers)}) in {time.monotonic() - started:.1f} s")
    return None


def _source(client: docker.DockerClient, image: str) -> str:
    registry = registry_of(image)
    if registry != "docker.io":
        return registry
    mirrors = (client.info().get("RegistryConfig") or {}).get("Mirrors") or []
    return f"docker.io (mirrors: {', '.join(mirrors)})" if mirrors else "docker.io"


def _count(event: dict[str, Any], layers: dict[str, tuple[int, int]]) -> None:
    detail = event.get("progressDetail") or {}
    if event.get("id") and detail.get("total"):
        layers[event["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
    elif event.get("id") and event.get("status") in ("Pull complete", "Already exists"):
        total = layers.get(event["id"], (0, 0))[1]
        layers[event["id"]] = (total, total)


def _megabytes(layers: dict[str, tuple[int, int]]) -> str:
    done = sum(c for c, _ in layers.values()) / 1e6
    total = sum(t for _, t in layers.values()) / 1e6
    return f"{done:.1f} of {total:.1f} MB"


def _failed(image: str, source: str, why: str) -> str:
    return (
        f"could not pull {image} from {source}: {why}; `docker pull {image}` shows more, or set "
        "servicematrix_image_prefix (or servicematrix_pg_image, servicematrix_redis_image) to "
        "a registry that has it"
    )
