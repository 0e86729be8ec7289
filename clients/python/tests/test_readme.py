"""The README's examples work as written, run as the `backend` user: each ```python block of the
section "Publishing jobs from other services" is run as its own program."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import support

SECTION = "## Publishing jobs from other services"


def readme_python_blocks() -> list[str]:
    text = (support.ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def run_example(code: str, stack, cwd) -> str:
    env = {**support._clean_env(), **stack.backend_env}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"the example failed:\n{done.stdout}\n{done.stderr}\n{stack.logs()}"
    return done.stdout


def test_the_readme_examples_run_as_the_backend_user(stack, tmp_path):
    blocks = readme_python_blocks()
    assert len(blocks) == 2, f"expected the client example and the nats-py one, found {len(blocks)}"
    client_example, raw_example = blocks
    assert "from lightbox_client import Lightbox" in client_example
    assert 'stream="EVENTS"' in raw_example

    (tmp_path / "a.png").write_bytes(support.png(40, 30, seed=7))
    out = run_example(client_example, stack, tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("started"), out
    assert any(line.startswith("succeeded") for line in lines), out
    key, url = lines[-1].split(" ", 1)
    assert key.startswith("outputs/") and key.endswith(".webp"), out
    assert url.startswith(f"{stack.s3.endpoint}/") and "X-Amz-Signature=" in url, out
    with urllib.request.urlopen(url, timeout=30) as response:
        assert support.webp_size(response.read()) == (40, 30)

    # The nats-py example converts the same upload: same parameters, same content-derived key.
    out = run_example(raw_example, stack, tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("started"), out
    assert lines[-1] == f"succeeded ['{key}'] None", out
