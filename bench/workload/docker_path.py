"""Run by bench/peers.py in its servicematrix venv: prints the note on where the docker
backend's tests reach their containers."""

from servicematrix.config import Config
from servicematrix.provision import Worker


def main() -> None:
    worker = Worker(Config(backend="docker", pg=15), "docker", "peerspath", roles=["pg"])
    try:
        host = worker.ready()["pg"].host
    finally:
        worker.close()
    where = "127.0.0.1, a published port" if host == "127.0.0.1" else "its bridge address"
    print(f"servicematrix's docker backend reached its containers at {where} ({host}).")


if __name__ == "__main__":
    main()
